"""pgof merge: an offline drop-in for `go tool pprof -proto a b > out`. Issue 6.

Profiles are compared through go tool pprof itself: -traces lists every
sample's labels, stack (by function name) and value, which we sum per
(labels, stack); two profiles with equal sums are the same to every pprof
view and to the Go compiler.
"""
import os
import subprocess

from pgof_helpers import (BAD, GO, PROFILES, clean_env, collector, go_env, go_traces,  # noqa: F401
                          is_gzip, needs_go, needs_pgof, profile, read, run_pgof)

pytestmark = needs_pgof

INPUTS = [profile(n) for n in ("fib.pb.gz", "sort-raw.pb", "labels.pb.gz", "mixed.pb.gz")]


def go_merge(paths, out):
    with open(out, "wb") as f:
        p = subprocess.run([GO, "tool", "pprof", "-proto"] + list(paths), env=go_env(),
                           stdout=f, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr.decode()


@needs_go
def test_merge_equals_go_tool_pprof_proto(tmp_path):
    ours, theirs = tmp_path / "ours.pgo", tmp_path / "theirs.pgo"
    p = run_pgof(["merge", "-o", str(ours)] + INPUTS)
    assert p.returncode == 0, p.err
    assert is_gzip(read(ours))
    go_merge(INPUTS, theirs)
    a, b = go_traces(str(ours)), go_traces(str(theirs))
    assert a == b
    assert sum(a.values()) == sum(sum(go_traces(i).values()) for i in INPUTS)


def test_merge_to_stdout_and_dash(tmp_path):
    out = tmp_path / "o.pgo"
    p = run_pgof(["merge", "-o", str(out), profile("fib.pb.gz")])
    assert p.returncode == 0, p.err
    p2 = run_pgof(["merge", profile("fib.pb.gz")])  # stdout is a pipe here
    p3 = run_pgof(["merge", "-q", "-o", "-", profile("fib.pb.gz")])
    assert p2.returncode == 0 and p3.returncode == 0
    assert p2.stdout == p3.stdout == read(out)
    assert p3.err == ""


def test_merge_refuses_incompatible_inputs_and_writes_nothing(tmp_path):
    out = tmp_path / "o.pgo"
    out.write_bytes(b"old")
    cases = [("heap.pb.gz", "incompatible"), ("truncated.pb.gz", "gzip"),
             ("empty.pb", "empty"), ("garbage.bin", "")]
    for name, why in cases:
        bad = os.path.join(BAD, name)
        p = run_pgof(["merge", "-o", str(out), profile("fib.pb.gz"), bad])
        assert p.returncode == 1, name
        assert f"{bad}: " in p.err and why in p.err, p.err
        assert read(out) == b"old"
    assert os.listdir(tmp_path) == ["o.pgo"]


def test_merge_cpu_flag():
    heap = os.path.join(BAD, "heap.pb.gz")
    p = run_pgof(["merge", "-o", "-", heap])
    assert p.returncode == 0, p.err  # like go tool pprof: any valid profile
    p = run_pgof(["merge", "--cpu", "-o", "-", heap])
    assert p.returncode == 1 and "not a CPU profile" in p.err


def test_merge_usage(tmp_path):
    assert run_pgof(["merge", "-o", str(tmp_path / "x")]).returncode == 2
    assert run_pgof(["merge", "--nope", profile("fib.pb.gz")]).returncode == 2
    p = run_pgof(["merge", "-o", str(tmp_path / "x"), "/nonexistent"])
    assert p.returncode == 1 and "/nonexistent: cannot open" in p.err


@needs_go
def test_merge_equals_the_collectors_merge(collector, tmp_path):
    files = [profile(n) for n in ("fib.pb.gz", "sort.pb.gz", "labels.pb.gz")]
    env = clean_env(PGOF_URL=collector.url, PGOF_SUBMIT_KEY=collector.submit_key,
                    PGOF_MERGE_KEY=collector.merge_key)
    p = run_pgof(["submit", "--retries", "0", "--timeout", "5"] + files, env=env)
    assert p.returncode == 0, p.err
    fetched, merged = tmp_path / "fetched.pgo", tmp_path / "merged.pgo"
    p = run_pgof(["fetch", "--retries", "0", "--timeout", "5", "-o", str(fetched)], env=env)
    assert p.returncode == 0, p.err
    p = run_pgof(["merge", "-o", str(merged)] + files)
    assert p.returncode == 0, p.err
    assert go_traces(str(fetched)) == go_traces(str(merged))
