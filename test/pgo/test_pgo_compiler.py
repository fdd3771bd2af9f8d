"""Issue 10: the real Go compiler takes the same PGO decisions from a
shape=pgo profile as from the full merge.

test/pgo/prog is a small standard-library program with what PGO acts on (hot
call sites to functions over the default inlining budget, an interface call
with one dominant implementation, cold code). It profiles itself
(-cpuprofile); two such runs plus two fixture profiles with labels are
submitted to the real collector, and `pgof fetch` downloads the full merge
and the shape=pgo one. Then, with Go 1.23 (bookworm-backports; `make
setup-test` installs it, the test is skipped without it):

  - `go tool preprofile` (the compiler's own profile reader, Go 1.23)
    turns each profile into the weighted call-edge list the compiler uses:
    the two must be byte-identical;
  - `go tool compile -pgoprofile` compiles the program's package once with
    each raw profile (two independent compilations, the compiler parsing the
    pprof itself): the PGO decisions printed by -d=pgodebug=1 and -m (the
    CDF hot-call-site threshold, hot-node budgets, hot-budget inlining,
    devirtualisation) must be identical, and present;
  - `go build -pgo` builds the real program with each profile: the same
    decisions again, and both binaries run.

The program's profiles are cached under build/pgo-test, keyed by the
program's source, and Go's build cache lives there too, so only the first
run on a machine pays for compiling the standard library with PGO.
"""
import hashlib
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "collector"))

from collector_helpers import ROOT, fixture, make_collector  # noqa: E402,F401

GO = os.environ.get("PGOF_GO123", "/usr/lib/go-1.23/bin/go")
PROG = os.path.join(HERE, "prog")
WORK = os.path.join(ROOT, "build", "pgo-test")
PGOF = os.path.join(os.environ.get("PGOF_BUILD", os.path.join(ROOT, "build")), "pgof")

pytestmark = pytest.mark.skipif(
    not os.access(GO, os.X_OK),
    reason=f"{GO} missing: PGO needs Go 1.21+ (make setup-test installs golang-1.23-go "
           "from bookworm-backports)")


def go_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "ASAN", "UBSAN"))}
    env.update({"GOCACHE": os.path.join(WORK, "gocache"), "GOPATH": os.path.join(WORK, "gopath"),
                "GOTOOLCHAIN": "local", "GOFLAGS": "", "GOPROXY": "off",
                "HOME": env.get("HOME", WORK)})
    return env


def go(*args, cwd=PROG, timeout=300):
    p = subprocess.run([GO] + list(args), cwd=cwd, env=go_env(), timeout=timeout,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, f"go {' '.join(args)} failed:\n{out}"
    return out


def source_hash():
    h = hashlib.sha256()
    for name in sorted(os.listdir(PROG)):
        with open(os.path.join(PROG, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()[:16]


def program_profiles():
    """Two CPU profiles of the program by itself, cached by its source."""
    d = os.path.join(WORK, "profiles-" + source_hash())
    paths = [os.path.join(d, f"run{i}.pprof") for i in range(2)]
    if all(os.path.exists(p) for p in paths):
        return paths
    os.makedirs(d, exist_ok=True)
    binary = os.path.join(d, "prog")
    go("build", "-o", binary, ".")
    for p in paths:
        subprocess.run([binary, "-cpuprofile", p + ".tmp", "-seconds", "1.5"], check=True,
                       timeout=60, stdout=subprocess.DEVNULL)
        os.rename(p + ".tmp", p)
    return paths


def fetch(c, out, *flags):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGOF_")}
    env["PGOF_MERGE_KEY"] = "merge-key-abcdefghij"
    p = subprocess.run([PGOF, "fetch", "-q", "--url", f"http://{c.host}:{c.port}", "-o", out]
                       + list(flags), env=env, timeout=60, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    assert p.returncode == 0, p.stderr.decode()
    return out


def pgo_lines(out):
    """The PGO decisions in compiler output: every line about PGO, inlining
    or devirtualisation, in order (escape analysis and std lines dropped)."""
    keep = ("hot-", "inlining call", "can inline", "devirtualiz")
    return [line for line in out.splitlines()
            if any(k in line for k in keep) and "/usr/lib/go" not in line]


def test_issue10_compiler_decisions_equal_for_shape_pgo(make_collector, tmp_path):
    runs = program_profiles()
    c = make_collector()
    for path in runs:
        with open(path, "rb") as f:
            assert c.submit(f.read())[0] == 204
    for name in ("labels.pb.gz", "mixed.pb.gz"):
        assert c.submit(fixture(name))[0] == 204
    full = fetch(c, str(tmp_path / "full.pgo"))
    shaped = fetch(c, str(tmp_path / "pgo.pgo"), "--shape", "pgo")
    full_size, shaped_size = os.path.getsize(full), os.path.getsize(shaped)
    assert shaped_size < full_size

    # 1. The compiler's own reading of each profile, serialized.
    pre = []
    for path in (full, shaped):
        go("tool", "preprofile", "-i", path, "-o", path + ".pre")
        with open(path + ".pre", "rb") as f:
            pre.append(f.read())
    assert pre[0] == pre[1], "go tool preprofile reads different call graphs"
    assert pre[0].count(b"\n") > 10

    # 2. Two independent compilations of the package, each parsing its pprof.
    cfg = tmp_path / "importcfg"
    listing = go("list", "-export", "-deps", "-f",
                 "{{if .Export}}packagefile {{.ImportPath}}={{.Export}}{{end}}", ".")
    cfg.write_text(listing)
    decisions = []
    for path in (full, shaped):
        out = go("tool", "compile", "-p", "main", "-importcfg", str(cfg), "-pgoprofile", path,
                 "-d=pgodebug=1", "-m", "-o", str(tmp_path / "main.o"), "main.go")
        decisions.append(pgo_lines(out))
    assert decisions[0] == decisions[1], "\n".join(
        ["full:"] + decisions[0] + ["shape=pgo:"] + decisions[1])
    text = "\n".join(decisions[0])
    for want in ("hot-callsite-thres-from-CDF=", "hot-node enabled increased budget",
                 "hot-budget check allows inlining", "PGO devirtualizing interface call"):
        assert want in text, f"the compiler took no PGO decision '{want}':\n{text}"

    # 3. The real build of the program with each profile.
    built = []
    for i, path in enumerate((full, shaped)):
        binary = str(tmp_path / f"prog{i}")
        out = go("build", "-pgo=" + path, "-gcflags=-d=pgodebug=1 -m", "-o", binary, ".")
        built.append(pgo_lines(out))
        subprocess.run([binary, "-seconds", "0.05"], check=True, timeout=30,
                       stdout=subprocess.DEVNULL)
    assert built[0] == built[1]
    assert "PGO devirtualizing interface call" in "\n".join(built[0])
    with open(os.path.join(WORK, "last-sizes.txt"), "w") as f:
        f.write(f"full {full_size}\nshape=pgo {shaped_size}\n")


def test_issue10_program_profiles_have_start_lines(tmp_path):
    """Go 1.21+ PGO needs Function.start_line; profiles from this Go have it
    (the fixtures from Go 1.19 do not, which is why the program profiles
    itself)."""
    runs = program_profiles()
    dump = os.path.join(os.environ.get("PGOF_BUILD", os.path.join(ROOT, "build")), "pprof-dump")
    if not os.access(dump, os.X_OK):
        dump = os.path.join(ROOT, "build", "pprof-dump")
    out = subprocess.run([dump, "pgo-edges", runs[0]], check=True, timeout=30,
                         stdout=subprocess.PIPE).stdout.decode()
    assert out.rstrip().endswith("start_lines yes")
