#!/usr/bin/python3
"""make docker-rootfs-check: the image's runtime stage, without Docker.

Builds what docker/Dockerfile's runtime stage builds, in a chroot:
  1. a Debian bookworm minbase root made by debootstrap (bookworm-slim is a
     minbase root with documentation removed), from the Debian archive that
     this machine's apt sources name;
  2. the runtime stage's RUN lines, replayed as they are (apt-get install of
     the runtime packages, the pgof user, /data and /secret);
  3. its COPY of the two binaries (from build/, the plain build) and its ENV;
then, as the image's USER, runs the ENTRYPOINT, the HEALTHCHECK command, a
submit and a merge from outside the root, and a SIGTERM stop. Success means
the binaries run with only the packages the Dockerfile installs.

Needs root and the debootstrap package (the Makefile target installs it),
and reaches the Debian archive. With --no-prepare it only uses a root made
earlier, and exits 3 when there is none or it is stale (the test suite
runs it that way). The root is kept under build/rootfs/ and
reused while the runtime stage's RUN lines are unchanged. Takes minutes the
first time, so it is not part of `make test`.
"""
import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import deploy_helpers as h  # noqa: E402
import dockerfile_model as dm  # noqa: E402

SUITE = "bookworm"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(msg):
    print(f"rootfs-check: {msg}", flush=True)


def debian_mirror():
    """The URI of the first apt source that serves SUITE's main component."""
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            for stanza in re.split(r"\n\s*\n", f.read()):
                fields = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.split()
                if ("deb" in fields.get("types", []) and SUITE in fields.get("suites", [])
                        and "main" in fields.get("components", []) and fields.get("uris")):
                    return fields["uris"][0]
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        try:
            with open(path) as f:
                for line in f:
                    words = line.split("#", 1)[0].split()
                    words = [w for w in words if not w.startswith("[")]
                    if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE \
                            and "main" in words[3:]:
                        return words[1]
        except OSError:
            pass
    raise SystemExit(f"rootfs-check: no apt source for {SUITE} main on this machine")


def run(cmd, **kw):
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def chroot(root, script, env=None):
    e = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8"}
    e.update(env or {})
    run(["chroot", root, "/bin/sh", "-ec", script], env=e)


def mounted(path):
    with open("/proc/mounts") as f:
        return any(line.split()[1] == path for line in f)


def prepare_root(root, mirror, runtime_runs, may_build=True):
    key = hashlib.sha256("\n".join([mirror] + runtime_runs).encode()).hexdigest()[:16]
    marker = os.path.join(root, ".pgof-rootfs-" + key)
    if os.path.exists(marker):
        log(f"reusing {root}")
        return
    if not may_build:
        log(f"{root} is missing or stale and --no-prepare was given")
        sys.exit(3)
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(os.path.dirname(root), exist_ok=True)
    run(["debootstrap", "--variant=minbase", SUITE, root, mirror])
    shutil.copy("/etc/resolv.conf", os.path.join(root, "etc", "resolv.conf"))
    proc = os.path.join(root, "proc")
    run(["mount", "-t", "proc", "proc", proc])
    try:
        for script in runtime_runs:
            chroot(root, script, env={"DEBIAN_FRONTEND": "noninteractive"})
    finally:
        run(["umount", proc])
    open(marker, "w").close()


def main():
    if os.geteuid() != 0:
        raise SystemExit("rootfs-check: needs root (debootstrap, chroot)")
    if not shutil.which("debootstrap"):
        raise SystemExit("rootfs-check: debootstrap is not installed (apt-get install debootstrap)")
    stages = dm.parse()
    final = stages[-1]
    runs = final.all("RUN")
    env = final.env()
    user = final.last("USER")
    _, health = dm.healthcheck(final.last("HEALTHCHECK"))
    entry = dm.exec_form(final.last("ENTRYPOINT"))
    copies = final.all("COPY")

    build = os.path.join(h.ROOT, "build")
    root = os.path.join(build, "rootfs", SUITE + "-minbase")
    prepare_root(root, debian_mirror(), runs, may_build="--no-prepare" not in sys.argv[1:])

    # COPY --from=build /out/a /out/b DEST/
    for c in copies:
        words = c.split()
        dest = words[-1]
        for src in words[1:-1]:
            name = os.path.basename(src)
            target = os.path.join(root, dest.lstrip("/"), name)
            shutil.copy2(os.path.join(build, name), target)
            os.chmod(target, 0o755)
            log(f"copied build/{name} to {dest}{name}")

    uid, _, gid = user.partition(":")
    uid, gid = int(uid), int(gid or uid)
    for var, key in (("PGOF_SUBMIT_AUTH_KEYS_FILE", h.SUBMIT_KEY),
                     ("PGOF_MERGE_AUTH_KEYS_FILE", h.MERGE_KEY)):
        path = os.path.join(root, env[var].lstrip("/"))
        with open(path, "w") as f:
            f.write(key + "\n")
        os.chown(path, uid, gid)
        os.chmod(path, 0o400)
    data = os.path.join(root, env["PGOF_DIRECTORY"].lstrip("/"))
    for name in os.listdir(data):
        p = os.path.join(data, name)
        shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)

    results = []

    def check(name, ok, detail=""):
        results.append(ok)
        log(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""))

    # ldd inside the root: every library resolves there.
    for c in copies:
        for src in c.split()[1:-1]:
            path = os.path.join(c.split()[-1], os.path.basename(src))
            p = subprocess.run(["chroot", root, "ldd", path], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env={"PATH": PATH})
            out = p.stdout.decode()
            check(f"ldd {path} in the root", p.returncode == 0 and "not found" not in out, out)

    port = h.free_port()
    run_env = {"PATH": PATH}
    run_env.update(env)
    # The only change to the image's environment: a free port for ":8080".
    run_env["PGOF_BIND_ADDRESS"] = re.sub(r":8080$", f":{port}", env["PGOF_BIND_ADDRESS"])
    userspec = f"--userspec={uid}:{gid}"
    collector = subprocess.Popen(["chroot", userspec, root] + entry, env=run_env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def healthy():
            if collector.poll() is not None:
                raise SystemExit("rootfs-check: collector exited: "
                                 + collector.stdout.read().decode())
            # Docker runs the check with the container's environment.
            p = subprocess.run(["chroot", userspec, root] + health, env=run_env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            return p.returncode == 0

        try:
            h.wait_for(healthy, 15, "the HEALTHCHECK command to pass")
            check("HEALTHCHECK " + " ".join(health) + " as " + user, True)
        except AssertionError as e:
            check("HEALTHCHECK as " + user, False, str(e))

        status, _, body = h.request(port, "POST", "/v1/submit", body=h.fixture("fib.pb.gz"),
                                    headers=h.bearer(h.SUBMIT_KEY))
        check("submit stored under /data as the image user", status == 204, f"{status} {body}")
        owners = {os.stat(os.path.join(data, n)).st_uid for n in os.listdir(data)
                  if n.endswith(".pgo")}
        check("stored profile owned by the image user", owners == {uid}, str(owners))
        status, _, body = h.request(port, "POST", "/v1/merge", headers=h.bearer(h.MERGE_KEY))
        check("merge", status == 200 and b"main.fib" in h.profile_strings(body), str(status))
    finally:
        collector.send_signal(signal.SIGTERM)
        try:
            rc = collector.wait(timeout=20)
        except subprocess.TimeoutExpired:
            collector.kill()
            rc = collector.wait()
        out = collector.stdout.read().decode("utf-8", "replace")
    check("SIGTERM stops the collector with status 0", rc == 0, out[-2000:])

    passed = sum(results)
    print(f"rootfs-check: {passed} passed, {len(results) - passed} failed")
    sys.exit(0 if passed == len(results) else 1)


if __name__ == "__main__":
    main()
