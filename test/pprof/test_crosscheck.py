"""Cross-check of the pprof engine's merge against the reference implementation.

Go's toolchain ships google/pprof as `go tool pprof`. For several sets of the
real fixtures, `go tool pprof -proto a b c > ref.pb.gz` and our merge
(`pprof-dump merge`, the engine's test driver) must agree:
  1. `go tool pprof -traces` prints the same header totals and the same
     stacks with the same values for both files (compared as multisets);
  2. our own strict decoder lists the same symbolic stacks with the same
     values for both files (`pprof-dump samples`).
Our output must also be readable by pprof at all, which (1) proves.
"""
import collections
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "test", "fixtures", "profiles")
BUILD = os.environ.get("PGOF_BUILD", os.path.join(ROOT, "build"))
DUMP = os.path.join(BUILD, "pprof-dump")
GO = shutil.which("go") or "/usr/bin/go"

pytestmark = [
    pytest.mark.skipif(not os.access(DUMP, os.X_OK), reason="build/pprof-dump not built"),
    pytest.mark.skipif(not os.access(GO, os.X_OK), reason="go not installed"),
]

SETS = {
    "all": ["compress", "fib", "json", "labels", "mixed", "regexp", "sha", "sort"],
    "two": ["fib", "sha"],
    "labels-twice": ["labels", "mixed", "labels"],
    "raw-and-gzip": ["sort", "sort-raw"],
    "one": ["json"],
}


def fixture(name):
    return os.path.join(FIX, name + (".pb" if name.endswith("-raw") else ".pb.gz"))


def go_env(tmp):
    cache = os.path.join(ROOT, "build", "gocache")
    os.makedirs(cache, exist_ok=True)
    return dict(os.environ, GOCACHE=cache, HOME=str(tmp), PPROF_TMPDIR=str(tmp),
                GOFLAGS="-mod=mod", GOTOOLCHAIN="local")


def run(cmd, env=None, timeout=300):
    p = subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0, f"{cmd} failed: {p.stderr.decode(errors='replace')}"
    return p.stdout.decode("utf-8", "replace")


def traces(path, env):
    """Header lines (minus File) and the multiset of (value, stack) blocks."""
    out = run([GO, "tool", "pprof", "-traces", path], env=env)
    head, _, body = out.partition("-----------+")
    header = [ln for ln in head.splitlines() if ln and not ln.startswith("File:")]
    blocks = collections.Counter()
    for blk in body.split("-----------+-------------------------------------------------------"):
        lines = [ln.rstrip() for ln in blk.strip("\n").splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith("---")]
        if lines:
            blocks["\n".join(lines)] += 1
    return header, blocks


@pytest.mark.parametrize("name", sorted(SETS))
def test_merge_matches_go_tool_pprof(tmp_path, name):
    env = go_env(tmp_path)
    files = [fixture(f) for f in SETS[name]]
    ours = str(tmp_path / "ours.pb.gz")
    ref = str(tmp_path / "ref.pb.gz")
    run([DUMP, "merge", "-o", ours] + files)
    with open(ref, "wb") as f:
        p = subprocess.run([GO, "tool", "pprof", "-proto"] + files, cwd=ROOT, env=env,
                           stdout=f, stderr=subprocess.PIPE, timeout=300)
        assert p.returncode == 0, p.stderr.decode(errors="replace")

    our_head, our_blocks = traces(ours, env)
    ref_head, ref_blocks = traces(ref, env)
    assert our_head == ref_head
    assert any("Total samples" in ln for ln in our_head)
    assert our_blocks == ref_blocks
    assert sum(our_blocks.values()) > 0

    our_rows = run([DUMP, "samples", ours])
    ref_rows = run([DUMP, "samples", ref])
    assert our_rows == ref_rows
    assert our_rows.count("\n") > 0


def test_incompatible_refused(tmp_path):
    bad = os.path.join(ROOT, "test", "fixtures", "bad", "heap.pb.gz")
    p = subprocess.run([DUMP, "merge", "-o", str(tmp_path / "x.pb.gz"), fixture("fib"), bad],
                       cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 1
    assert b"incompatible profiles: period type space/bytes" in p.stderr
