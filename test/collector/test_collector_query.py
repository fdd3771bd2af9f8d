"""Issue 10: merge options on POST /v1/merge (strip_labels, shape, weight,
since), their refusals with and_combine, and PGOF_RETENTION, against the
real collector. Ages are controlled by pre-populating the data directory with
files named <unix ms>_<counter>.pgo, as the collector names them.
"""
import os
import subprocess
import time

import pytest

from collector_helpers import (MERGE_KEY, PROFILES, ROOT, fixture, make_collector,  # noqa: F401
                               collector, profile_stacks, sum_stacks, totals, wait_for)

BUILD = os.environ.get("PGOF_BUILD", os.path.join(ROOT, "build"))
DAY = 86400 * 1000


def post(c, query):
    return c.request("POST", "/v1/merge" + query,
                     headers={"Authorization": f"Bearer {MERGE_KEY}"})


def edges(data, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(data)
    dump = os.path.join(BUILD, "pprof-dump")
    return subprocess.run([dump, "pgo-edges", str(path)], check=True, timeout=60,
                          stdout=subprocess.PIPE).stdout.decode()


def now_ms():
    return int(time.time() * 1000)


def populate(tmp_path, ages):
    """A data directory with one fixture per (name, age in ms)."""
    d = tmp_path / "profiles"
    d.mkdir()
    t = now_ms()
    for i, (name, age) in enumerate(ages):
        (d / f"{t - age}_{i}.pgo").write_bytes(fixture(name))
    return str(d)


@pytest.mark.parametrize("query,reason", [
    ("?shape=x", 'shape="x": must be pgo or full'),
    ("?shape=", 'shape="": must be pgo or full'),
    ("?weight=heavy", 'weight="heavy": must be equal or none'),
    ("?strip_labels=yes", 'strip_labels="yes": must be true or false'),
    ("?since=7", 'since="7": not a duration'),
    ("?since=-1d", 'since="-1d": not a duration'),
    ("?since=0d", 'since="0d": not a duration'),
    ("?since=%zz", "since: the value is not valid URL encoding"),
    ("?and_combine=true&shape=pgo", "and_combine=true cannot be used with shape=pgo"),
    ("?and_combine=true&strip_labels=true",
     "and_combine=true cannot be used with strip_labels=true"),
    ("?and_combine=true&weight=equal", "and_combine=true cannot be used with weight=equal"),
    ("?and_combine=true&since=7d", "and_combine=true cannot be used with since"),
])
def test_bad_options_are_400_with_a_reason(collector, query, reason):
    assert collector.submit(fixture("fib.pb.gz"))[0] == 204
    st, h, body = post(collector, query)
    assert st == 400, (st, body)
    assert body.decode().startswith(reason), body
    assert body.endswith(b"\n") and body.count(b"\n") == 1
    # Nothing was combined or lost.
    assert len(collector.stored()) == 1


def test_defaults_and_unknown_keys_are_accepted(collector):
    for n in ("fib.pb.gz", "labels.pb.gz"):
        assert collector.submit(fixture(n))[0] == 204
    _, _, plain = post(collector, "")
    for q in ("?shape=full&weight=none&strip_labels=false", "?foo=bar", "?shape=full&shape=x",
              "?and_combine=nope&shape=full"):
        st, _, body = post(collector, q)
        assert st == 200, (q, body)
        assert profile_stacks(body) == profile_stacks(plain)
    # Percent-encoding is decoded; the first of repeated keys wins.
    st, _, enc = post(collector, "?%73hape=%70go")
    st2, _, pgo = post(collector, "?shape=pgo")
    assert st == st2 == 200 and enc == pgo
    # and_combine with explicit defaults still combines.
    st, _, body = post(collector, "?and_combine=true&shape=full&weight=none")
    assert st == 200 and len(collector.stored()) == 1
    assert collector.stored()[0].startswith("merged_")


def test_shape_pgo_keeps_the_compilers_graph(collector, tmp_path):
    names = PROFILES + ["labels.pb.gz", "mixed.pb.gz"]
    for n in names:
        assert collector.submit(fixture(n))[0] == 204
    st, _, full = post(collector, "")
    st2, h, pgo = post(collector, "?shape=pgo")
    st3, _, stripped = post(collector, "?strip_labels=true")
    assert st == st2 == st3 == 200
    assert h["content-type"] == "application/octet-stream"
    assert len(pgo) < len(full) / 2
    e = edges(full, tmp_path, "full.pgo")
    assert e == edges(pgo, tmp_path, "pgo.pgo")
    assert e == edges(stripped, tmp_path, "strip.pgo")
    assert "edge " in e
    # Same totals, far fewer stacks (two locations each: test_shape.c).
    assert totals(profile_stacks(pgo)) == totals(profile_stacks(full))
    assert len(profile_stacks(pgo)) < len(profile_stacks(full))
    # strip_labels: the same stacks and values as the plain merge.
    assert profile_stacks(stripped) == profile_stacks(full)
    assert b"handler" in __import__("gzip").decompress(full)
    assert b"handler" not in __import__("gzip").decompress(stripped)


def test_answers_are_cached_until_the_files_change(collector):
    assert collector.submit(fixture("fib.pb.gz"))[0] == 204
    _, _, a = post(collector, "?shape=pgo")
    _, _, b = post(collector, "?shape=pgo")
    assert a == b
    assert collector.submit(fixture("sha.pb.gz"))[0] == 204
    _, _, c = post(collector, "?shape=pgo")
    assert c != a
    want = sum_stacks([fixture("fib.pb.gz"), fixture("sha.pb.gz")])
    assert totals(profile_stacks(c)) == totals(want)


def test_weight_equal_two_profiles_of_very_different_lengths(collector, tmp_path):
    short = fixture("fib.pb.gz")
    # A long profile: mixed.pb.gz merged ten times by pgof (11.6 s of CPU).
    long_path = tmp_path / "long.pb.gz"
    subprocess.run([os.path.join(BUILD, "pgof"), "merge", "-q", "-o", str(long_path)]
                   + [os.path.join(ROOT, "test", "fixtures", "profiles", "mixed.pb.gz")] * 10,
                   check=True, timeout=60)
    long_ = long_path.read_bytes()
    ts, tl = totals(profile_stacks(short)), totals(profile_stacks(long_))
    assert tl[0] > 10 * ts[0]
    assert collector.submit(short)[0] == 204
    assert collector.submit(long_)[0] == 204
    st, _, plain = post(collector, "")
    st2, _, eq = post(collector, "?weight=equal")
    assert st == st2 == 200
    assert totals(profile_stacks(plain)) == [a + b for a, b in zip(ts, tl)]
    # Each profile contributes exactly the larger total of samples/count.
    got = profile_stacks(eq)
    assert totals(got)[0] == 2 * tl[0]
    fib_stacks = {k for k in profile_stacks(short)}
    long_stacks = {k for k in profile_stacks(long_)}
    only_fib = fib_stacks - long_stacks
    assert only_fib
    share_fib = sum(got[k][0] for k in got if k in only_fib)
    share_fib_plain = sum(profile_stacks(short)[k][0] for k in only_fib)
    # fib's own stacks are scaled by tl/ts (within one per sample of rounding).
    factor = tl[0] / ts[0]
    assert abs(share_fib - share_fib_plain * factor) <= len(only_fib)
    # The cpu value follows the same factor.
    assert abs(totals(got)[1] - (tl[1] + ts[1] * factor)) <= 1 + len(got)


def test_since_uses_the_stored_time_in_file_names(make_collector, tmp_path):
    d = populate(tmp_path, [("fib.pb.gz", 10 * DAY), ("sha.pb.gz", 2 * DAY),
                            ("sort.pb.gz", 3600 * 1000), ("json.pb.gz", 60 * 1000)])
    # A combined file counts as of its combine's time.
    t = now_ms()
    (tmp_path / "profiles" / f"merged_{t - 5 * DAY}_9.pgo").write_bytes(fixture("regexp.pb.gz"))
    c = make_collector(directory=d)
    cases = {
        "": ["fib.pb.gz", "sha.pb.gz", "sort.pb.gz", "json.pb.gz", "regexp.pb.gz"],
        "?since=7d": ["sha.pb.gz", "sort.pb.gz", "json.pb.gz", "regexp.pb.gz"],
        "?since=36h": ["sort.pb.gz", "json.pb.gz"],
        "?since=90m": ["sort.pb.gz", "json.pb.gz"],
        "?since=30m": ["json.pb.gz"],
        "?since=1w": ["sha.pb.gz", "sort.pb.gz", "json.pb.gz", "regexp.pb.gz"],
        "?since=1d1h": ["sort.pb.gz", "json.pb.gz"],
    }
    for q, names in cases.items():
        st, _, body = post(c, q)
        assert st == 200, (q, body)
        assert profile_stacks(body) == sum_stacks(fixture(n) for n in names), q
    st, _, body = post(c, "?since=10s")
    assert st == 404 and body == b"no profiles stored within the last 10s\n"
    # since composes with shape and weight.
    st, _, body = post(c, "?since=36h&shape=pgo&weight=equal")
    assert st == 200
    assert totals(profile_stacks(body))[0] == 2 * max(
        totals(profile_stacks(fixture(n)))[0] for n in ("sort.pb.gz", "json.pb.gz"))
    # Nothing was removed: since only selects.
    assert len(c.stored()) == 5


def test_retention_removes_expired_profiles_at_start(make_collector, tmp_path):
    d = populate(tmp_path, [("fib.pb.gz", 40 * DAY), ("sha.pb.gz", 31 * DAY),
                            ("sort.pb.gz", 29 * DAY), ("json.pb.gz", DAY)])
    c = make_collector(env={"PGOF_RETENTION": "30d"}, directory=d)
    wait_for(lambda: "retention: removed 2 profile(s) stored more than 30d ago" in c.log(), 10,
             "the retention to run")
    assert len(c.stored()) == 2
    st, _, body = post(c, "")
    assert st == 200
    assert profile_stacks(body) == sum_stacks(fixture(n) for n in ("sort.pb.gz", "json.pb.gz"))
    assert "retention=30d" in c.log()
    assert c.metric("pgof_stored_profiles") == 2
    assert c.metric("pgof_stored_bytes") == sum(
        os.path.getsize(os.path.join(c.dir, n)) for n in c.stored())


def test_retention_runs_on_a_schedule(make_collector):
    c = make_collector(env={"PGOF_RETENTION": "2s"})
    assert c.submit(fixture("fib.pb.gz"))[0] == 204
    assert post(c, "")[0] == 200
    # Checked every second (a tenth of the retention, at least 1 s).
    wait_for(lambda: not c.stored(), 10, "the profile to expire")
    st, _, body = post(c, "")
    assert st == 404, body
    assert c.submit(fixture("sha.pb.gz"))[0] == 204
    st, _, body = post(c, "")
    assert st == 200 and profile_stacks(body) == profile_stacks(fixture("sha.pb.gz"))


def test_retention_off_by_default_and_bad_values_stop_start_up(make_collector, tmp_path):
    d = populate(tmp_path, [("fib.pb.gz", 3650 * DAY)])
    c = make_collector(directory=d)
    assert "retention=off" in c.log()
    assert len(c.stored()) == 1
    c.stop()
    bad = make_collector(env={"PGOF_RETENTION": "30 days"}, start=False)
    p = subprocess.run([os.environ.get("PGOF_COLLECTOR", os.path.join(BUILD, "pgof-collector"))],
                       env=bad.env, timeout=20, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 1
    assert b'PGOF_RETENTION="30 days": must be off or a duration' in p.stderr
