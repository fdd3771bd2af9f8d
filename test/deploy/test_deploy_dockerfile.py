"""docker/Dockerfile and .dockerignore: the image contract (issue 8).

No Docker engine runs here, so these tests read the Dockerfile and check
what can be checked without one:
  - the original image's contract: ENV values, EXPOSE 8080, VOLUME /data,
    an interval-1m/timeout-5s HEALTHCHECK, plus our non-root USER;
  - the HEALTHCHECK's exact argv, run against a real collector;
  - the ENTRYPOINT's exact argv, started as PID 1 of a new PID namespace
    (as in a container) and stopped with SIGTERM, as `docker stop` does;
  - that every shared library of the built binaries comes from a package
    the runtime stage installs (or that bookworm-slim has);
  - that the .dockerignore'd build context builds with the Makefile.
`make docker-rootfs-check` (test/deploy/rootfs_check.py) goes further and
runs the binaries in a debootstrapped bookworm root.
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

import deploy_helpers as h
import dockerfile_model as dm

ORIGINAL_ENV = {
    "PGOF_BIND_ADDRESS": ":8080",
    "PGOF_DIRECTORY": "/data",
    "PGOF_SUBMIT_AUTH_KEYS_FILE": "/secret/submit_keys",
    "PGOF_MERGE_AUTH_KEYS_FILE": "/secret/merge_keys",
}
RUNTIME_ALLOWED = {"libuv1", "zlib1g", "libcurl4", "ca-certificates"}


@pytest.fixture(scope="module")
def stages():
    return dm.parse()


@pytest.fixture(scope="module")
def final(stages):
    return stages[-1]


def makefile_var(name):
    with open(os.path.join(h.ROOT, "Makefile")) as f:
        text = f.read().replace("\\\n", " ")
    m = re.search(rf"^{name}\s*:?=\s*(.*)$", text, re.M)
    assert m, f"Makefile has no {name}"
    return m.group(1).split()


def test_multi_stage_on_bookworm_slim(stages, final):
    assert len(stages) >= 2
    for s in stages:
        assert s.image == "debian:bookworm-slim", s.image
    assert final.name is None or final.name != stages[0].name
    # The build stage builds with the project's Makefile.
    assert any(re.search(r"\bmake\b", run) for run in stages[0].all("RUN"))
    # The runtime stage gets the binaries from the build stage only.
    copies = final.all("COPY")
    assert copies and all(c.startswith(f"--from={stages[0].name} ") for c in copies), copies


def build_stage_make_targets(stage):
    """The targets of the build stage's `make` command."""
    for run in stage.all("RUN"):
        for cmd in re.split(r"&&|;|\|\|", run):
            words = cmd.split()
            if words and words[0] == "make":
                return [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    raise AssertionError("the build stage runs no make")


def link_packages():
    """Debian packages holding the libraries the collector and pgof link
    with (the -l flags of LIBS_COLLECTOR and LIBS_CLI in the Makefile)."""
    pkgs = set()
    for var in ("LIBS_COLLECTOR", "LIBS_CLI"):
        for flag in makefile_var(var):
            if not flag.startswith("-l"):
                continue
            so = subprocess.run(["cc", f"-print-file-name=lib{flag[2:]}.so"],
                                stdout=subprocess.PIPE, check=True).stdout.decode().strip()
            pkg = package_of(os.path.normpath(so))
            assert pkg, f"no package ships {so} (for {flag})"
            pkgs.add(pkg)
    return pkgs


def test_build_stage_builds_the_shipped_programs(stages, final):
    targets = build_stage_make_targets(stages[0])
    assert sorted(targets) == ["build/pgof", "build/pgof-collector"], targets


def test_build_stage_installs_what_the_programs_need(stages):
    """Compiler, make, libc headers and the -dev package of every library
    the two programs link with; every one also listed in BUILD_PKGS."""
    if not shutil.which("dpkg"):
        pytest.skip("not a Debian system")
    installed = set(stages[0].apt_packages())
    needed = {"gcc", "make", "libc6-dev"} | link_packages()
    assert needed <= installed, needed - installed
    assert installed <= set(makefile_var("BUILD_PKGS")), installed - set(makefile_var("BUILD_PKGS"))


def test_runtime_stage_installs_only_runtime_libraries(final):
    pkgs = set(final.apt_packages())
    assert pkgs == RUNTIME_ALLOWED, pkgs
    assert not any(p.endswith("-dev") or p in ("curl", "wget", "gcc", "make") for p in pkgs)
    for run in final.all("RUN"):
        if "apt-get install" in run:
            assert "--no-install-recommends" in run
            assert "rm -rf /var/lib/apt/lists" in run


def test_original_environment_contract(final):
    assert final.env() == ORIGINAL_ENV


def test_expose_and_volume(final):
    assert final.all("EXPOSE") == ["8080"]
    assert [dm.exec_form(v) for v in final.all("VOLUME")] == [["/data"]]
    # VOLUME comes after /data got its owner: a new volume copies it.
    kws = [kw for kw, _ in final.instructions]
    owner = max(i for i, (kw, arg) in enumerate(final.instructions)
                if kw == "RUN" and "/data" in arg)
    assert owner < kws.index("VOLUME")


def test_runs_as_non_root_user(final):
    user = final.last("USER")
    assert user, "no USER in the runtime stage"
    uid, _, gid = user.partition(":")
    assert uid not in ("0", "root") and gid not in ("0", "root")
    assert uid.isdigit(), "use a numeric uid so runAsNonRoot can check it"
    created = " ".join(final.all("RUN"))
    assert re.search(rf"useradd\b.*--uid {uid}\b", created), "USER's uid is never created"
    assert re.search(rf"install -d -o {uid} -g {gid or uid}\b.*\s/data\b", created), \
        "/data is not owned by the USER"


def test_healthcheck_contract(final):
    opts, argv = dm.healthcheck(final.last("HEALTHCHECK"))
    assert opts.get("interval") == "1m" and opts.get("timeout") == "5s", opts
    assert argv is not None, "HEALTHCHECK must use the exec form (no shell, no curl)"
    assert os.path.basename(argv[0]) == "pgof" and argv[1] == "healthcheck", argv
    # No URL: pgof derives it from PGOF_BIND_ADDRESS, so it follows the port.
    assert not [a for a in argv if "://" in a], argv
    # pgof's own limit ends the check before Docker's timeout does.
    if "--timeout" in argv:
        assert float(argv[argv.index("--timeout") + 1]) < 5
    assert not any(re.search(r"\b(curl|wget)\b", arg) for _, arg in final.instructions)


def image_path_to_build(path):
    """Maps a path the Dockerfile copies a binary to onto our build dir."""
    name = os.path.basename(path)
    assert name in ("pgof", "pgof-collector"), path
    return os.path.join(h.build_dir(), name)


def test_healthcheck_command_works(final, tmp_path):
    """The HEALTHCHECK argv, run with the image's environment (only the
    port of PGOF_BIND_ADDRESS changed), passes against the collector
    running with that same environment, and fails in time without it."""
    _, argv = dm.healthcheck(final.last("HEALTHCHECK"))
    pgof = image_path_to_build(argv[0])
    if not os.access(pgof, os.X_OK):
        pytest.skip(f"{pgof} is not built yet (pgof healthcheck, issue 6)")
    c = h.Collector(str(tmp_path))
    bind = re.sub(r":8080$", f":{c.port}", final.env()["PGOF_BIND_ADDRESS"])
    assert bind == f":{c.port}"
    c.env["PGOF_BIND_ADDRESS"] = bind
    env = dict(os.environ, **final.env())
    env["PGOF_BIND_ADDRESS"] = bind
    env.pop("PGOF_URL", None)
    cmd = [pgof] + argv[1:]
    c.start()
    try:
        p = subprocess.run(cmd, env=env, timeout=30,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert p.returncode == 0, p.stdout.decode()
    finally:
        assert c.stop() == 0
        c.check_clean()
    # And it fails, within Docker's 5 s timeout, once the collector is gone.
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, timeout=30,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.returncode == 1, p.stdout.decode()
    assert time.monotonic() - t0 < 5


def test_entrypoint_is_exec_form_collector(final):
    entry = final.last("ENTRYPOINT")
    cmd = final.last("CMD")
    argv = dm.exec_form(entry) if entry else dm.exec_form(cmd)
    assert argv, "ENTRYPOINT/CMD must be exec form so the collector is PID 1"
    assert os.path.basename(argv[0]) == "pgof-collector" and len(argv) == 1, argv
    assert final.last("STOPSIGNAL") in (None, "SIGTERM")


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def test_sigterm_stops_collector_as_pid_1(final, tmp_path):
    """`docker stop` sends SIGTERM to PID 1 of the container's PID
    namespace, where the kernel drops signals the process has no handler
    for. Run the ENTRYPOINT as PID 1 of a new PID namespace and check that
    SIGTERM still stops it cleanly (exit 0) within the grace time."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a PID namespace")
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], stderr=subprocess.PIPE)
    if probe.returncode != 0:
        pytest.skip("cannot create a PID namespace here: " + probe.stderr.decode().strip())
    c = h.Collector(str(tmp_path))
    c.start(argv_prefix=["unshare", "--pid", "--fork", "--kill-child"])
    kids = h.wait_for(lambda: children(c.proc.pid), 5, "unshare's child")
    inner = kids[0]
    with open(f"/proc/{inner}/status") as f:
        nspid = [l for l in f if l.startswith("NSpid:")][0].split()
    assert nspid[-1] == "1", f"collector is not PID 1 in its namespace: {nspid}"
    os.kill(inner, signal.SIGTERM)
    try:
        c.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        c.stop(signal.SIGKILL)
        pytest.fail("collector as PID 1 ignored SIGTERM:\n" + c.log())
    c.stop()
    # unshare --fork exits with its child's status.
    assert c.proc.returncode == 0, c.log()
    c.check_clean()


# ---- shared libraries vs the runtime stage's packages ------------------------

def installed_packages():
    """{name: (essential, [dependency groups], [provides])} of dpkg's database."""
    fmt = "${Package}\t${Essential}\t${Pre-Depends}\t${Depends}\t${Provides}\t${db:Status-Abbrev}\n"
    out = subprocess.run(["dpkg-query", "-W", "-f=" + fmt], stdout=subprocess.PIPE,
                         check=True).stdout.decode()
    pkgs, provides = {}, {}
    for line in out.splitlines():
        name, essential, pre, dep, prov, status = line.split("\t")
        if not status.startswith("ii"):
            continue
        groups = []
        for group in filter(None, (g.strip() for g in f"{pre},{dep}".split(","))):
            groups.append([re.split(r"[\s(:]", alt.strip())[0] for alt in group.split("|")])
        pkgs[name] = (essential == "yes", groups)
        for p in filter(None, (x.strip() for x in prov.split(","))):
            provides.setdefault(re.split(r"[\s(]", p)[0], []).append(name)
    return pkgs, provides


def dependency_closure(roots, pkgs, provides):
    """Packages apt installs for roots: for each dependency group, the first
    alternative that is installed here (apt's choice), through Provides."""
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in pkgs and name in provides:
            todo.extend(provides[name][:1])
            continue
        seen.add(name)
        for group in pkgs.get(name, (False, []))[1]:
            choice = next((a for a in group if a in pkgs or a in provides), None)
            if choice:
                todo.append(choice)
    return seen


def package_of(path):
    p = subprocess.run(["dpkg", "-S", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        # usrmerge: dpkg knows /lib/x86_64-linux-gnu/..., ldd says /usr/lib/...
        alt = path[4:] if path.startswith("/usr/") else "/usr" + path
        p = subprocess.run(["dpkg", "-S", alt], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        return None
    return p.stdout.decode().split(":")[0].split(",")[0].strip()


def shared_libraries(binary):
    out = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, check=True).stdout.decode()
    libs = []
    for line in out.splitlines():
        line = line.strip()
        if "not found" in line:
            raise AssertionError(f"{binary}: {line}")
        m = re.search(r"=>\s*(/\S+)", line) or re.match(r"(/\S+)", line)
        if m:
            libs.append(os.path.realpath(m.group(1)))
    return libs


@pytest.mark.parametrize("name", ["pgof-collector", "pgof"])
def test_shared_libraries_come_from_runtime_packages(final, name):
    if h.sanitized():
        pytest.skip("the image ships the plain build; the ASan build links libasan")
    binary = os.path.join(h.build_dir(), name)
    if not os.access(binary, os.X_OK):
        pytest.skip(f"{binary} is not built yet")
    if not shutil.which("dpkg-query"):
        pytest.skip("not a Debian system")
    pkgs, provides = installed_packages()
    essential = {n for n, (ess, _) in pkgs.items() if ess}
    closure = dependency_closure(set(final.apt_packages()) | essential, pkgs, provides)
    missing = []
    for lib in shared_libraries(binary):
        pkg = package_of(lib)
        if pkg is None or pkg not in closure:
            missing.append(f"{lib} ({pkg or 'no package'})")
    assert not missing, (f"{name} needs libraries the runtime stage does not install: "
                         + ", ".join(missing))


# ---- build context -----------------------------------------------------------

def test_context_excludes_local_state():
    files = dm.build_context()
    tops = {f.split("/")[0] for f in files}
    for bad in (".git", "build", "dev", "profiles", "test", "docs"):
        assert bad not in tops, f"{bad}/ is sent to the Docker daemon"
    assert "Makefile" in files
    assert not [f for f in files if f.endswith((".o", ".a", ".pgo"))]


def test_context_builds_with_makefile(tmp_path):
    """Copies exactly the build context (as .dockerignore leaves it) and runs
    the build stage's make there: proves the image build has every file it
    needs."""
    if h.sanitized():
        pytest.skip("the plain run already builds the context once")
    ctx = tmp_path / "src"
    for rel in dm.build_context():
        dst = ctx / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(h.ROOT, rel), dst)
    # -O0: this checks that no file is missing, not the code (which the
    # plain build already compiled with the image's flags); it halves the time.
    targets = build_stage_make_targets(dm.parse()[0])
    p = subprocess.run(["make", f"-j{os.cpu_count() or 2}", "CFLAGS=-O0"] + targets, cwd=ctx,
                       timeout=600,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.returncode == 0, p.stdout.decode()[-3000:]
    for target in targets:
        assert os.access(ctx / target, os.X_OK), target


def test_runtime_root_when_prepared():
    """Runs test/deploy/rootfs_check.py (the binaries in a bookworm minbase
    root built from the runtime stage's RUN lines, as the image's user)
    when `make docker-rootfs-check` has already prepared that root: the
    check then takes seconds. Preparing it needs the Debian archive and
    half a minute, so `make test` does not do it."""
    if h.sanitized():
        pytest.skip("the image ships the plain build")
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    root = os.path.join(h.ROOT, "build", "rootfs", "bookworm-minbase")
    if not glob.glob(os.path.join(root, ".pgof-rootfs-*")):
        pytest.skip("no prepared root: run `make docker-rootfs-check` once")
    script = os.path.join(h.ROOT, "test", "deploy", "rootfs_check.py")
    p = subprocess.run([sys.executable, script, "--no-prepare"], timeout=120,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.decode()
    if p.returncode == 3:
        pytest.skip("the prepared root is stale (the runtime stage changed): "
                    "run `make docker-rootfs-check`")
    assert p.returncode == 0, out[-3000:]
