"""Issue 10: the merge options on `pgof merge` and `pgof fetch`:
--strip-labels, --shape pgo|full, --weight equal|none, --since DURATION.
The same values and refusals as the collector's POST /v1/merge query.
"""
import json
import os
import subprocess
import time

from pgof_helpers import collector  # noqa: F401 (a fixture)
from pgof_helpers import (BUILD, PROFILES, FakeServer, clean_env, needs_pgof, profile, read,
                          run_pgof)

pytestmark = needs_pgof

ALL = sorted(os.path.join(PROFILES, n) for n in os.listdir(PROFILES) if n.endswith(".pb.gz"))
KEY = "k3y-" + "x" * 20
DAY = 86400


def edges(path):
    return subprocess.run([os.path.join(BUILD, "pprof-dump"), "pgo-edges", path], check=True,
                          timeout=60, stdout=subprocess.PIPE).stdout.decode()


def merge(tmp_path, name, *args):
    out = str(tmp_path / name)
    p = run_pgof(["merge", "-q", "-o", out] + list(args))
    assert p.returncode == 0, p.err
    return out


def test_merge_shape_pgo_and_strip_labels_keep_the_compilers_graph(tmp_path):
    full = merge(tmp_path, "full.pgo", *ALL)
    pgo = merge(tmp_path, "pgo.pgo", "--shape", "pgo", *ALL)
    strip = merge(tmp_path, "strip.pgo", "--strip-labels", *ALL)
    both = merge(tmp_path, "both.pgo", "--shape=pgo", "--strip-labels", *ALL)
    e = edges(full)
    assert e == edges(pgo) == edges(strip) == edges(both)
    assert os.path.getsize(pgo) * 2 < os.path.getsize(full)
    assert read(pgo) == read(both)  # shape=pgo has no labels anyway
    # The shaped profile is still a valid CPU profile for pgof and pprof.
    p = run_pgof(["inspect", pgo])
    assert p.returncode == 0, p.err
    assert b"Go CPU profile" in p.stdout


def test_merge_weight_equal(tmp_path):
    long_ = merge(tmp_path, "long.pgo", *[profile("mixed.pb.gz")] * 10)
    out = merge(tmp_path, "eq.pgo", "--weight", "equal", profile("fib.pb.gz"), long_)
    d = json.loads(run_pgof(["inspect", "--json", out]).stdout)
    # fib (100 samples) and the long one (1950) each contribute 1950.
    assert d["sample_types"][0]["total"] == 2 * 1950
    plain = json.loads(run_pgof(["inspect", "--json", merge(tmp_path, "plain.pgo",
                                                             profile("fib.pb.gz"), long_)]).stdout)
    assert plain["sample_types"][0]["total"] == 100 + 1950


def test_merge_since_by_name_then_mtime(tmp_path):
    now = time.time()
    named = tmp_path / f"{int((now - 10 * DAY) * 1000)}_0.pgo"
    named.write_bytes(read(profile("fib.pb.gz")))
    fresh = tmp_path / f"{int((now - 60) * 1000)}_1.pgo"
    fresh.write_bytes(read(profile("sha.pb.gz")))
    hand = tmp_path / "hand.pgo"
    hand.write_bytes(read(profile("sort.pb.gz")))
    os.utime(hand, (now - 3 * DAY, now - 3 * DAY))
    out = str(tmp_path / "out.pgo")
    p = run_pgof(["merge", "-o", out, "--since", "7d", str(named), str(fresh), str(hand)])
    assert p.returncode == 0, p.err
    assert "left out 1 of 3 file(s) older than --since" in p.err
    want = merge(tmp_path, "want.pgo", str(fresh), str(hand))
    assert edges(out) == edges(want)
    p = run_pgof(["merge", "-o", out, "--since", "1h", str(named), str(hand)])
    assert p.returncode == 1
    assert "no input file is from the last 1h" in p.err


def test_merge_bad_values_are_usage_errors(tmp_path):
    for args, msg in ((["--shape", "tiny"], 'shape="tiny": must be pgo or full'),
                      (["--weight", "fair"], 'weight="fair": must be equal or none'),
                      (["--since", "7"], 'since="7": not a duration')):
        p = run_pgof(["merge", "-o", str(tmp_path / "x.pgo")] + args + ALL[:1])
        assert p.returncode == 2, p.err
        assert msg in p.err
        assert not os.path.exists(tmp_path / "x.pgo")


def test_fetch_sends_the_options_as_the_query(tmp_path):
    with FakeServer([("profile", read(profile("fib.pb.gz")))]) as srv:
        env = clean_env(PGOF_URL=srv.url, PGOF_MERGE_KEY=KEY)
        out = str(tmp_path / "default.pgo")
        p = run_pgof(["fetch", "-q", "-o", out, "--shape", "pgo", "--strip-labels", "--weight",
                      "equal", "--since", "36h"], env=env)
        assert p.returncode == 0, p.err
        p = run_pgof(["fetch", "-q", "-o", out, "--since", "1d12h", "--shape", "full"], env=env)
        assert p.returncode == 0, p.err
        p = run_pgof(["fetch", "-q", "-o", out, "--combine"], env=env)
        assert p.returncode == 0, p.err
        paths = [r["path"] for r in srv.requests]
    assert paths == ["/v1/merge?strip_labels=true&shape=pgo&weight=equal&since=36h",
                     "/v1/merge?since=36h", "/v1/merge?and_combine=true"]


def test_fetch_refuses_what_the_collector_would(tmp_path):
    env = clean_env(PGOF_URL="http://127.0.0.1:9", PGOF_MERGE_KEY=KEY)
    for args, msg in (
            (["--combine", "--shape", "pgo"], "and_combine=true cannot be used with shape=pgo"),
            (["--combine", "--strip-labels"], "cannot be used with strip_labels=true"),
            (["--combine", "--weight", "equal"], "cannot be used with weight=equal"),
            (["--since", "7d", "--combine"], "and_combine=true cannot be used with since"),
            (["--shape", "PGO"], 'shape="PGO": must be pgo or full')):
        p = run_pgof(["fetch", "-o", str(tmp_path / "x.pgo")] + args, env=env)
        assert p.returncode == 2, (args, p.err)
        assert msg in p.err, p.err
    assert not os.path.exists(tmp_path / "x.pgo")


def test_fetch_shape_pgo_from_the_real_collector(tmp_path, collector):
    env = clean_env(PGOF_URL=collector.url, PGOF_MERGE_KEY=collector.merge_key,
                    PGOF_SUBMIT_KEY=collector.submit_key)
    p = run_pgof(["submit", "-q"] + [profile(n) for n in ("labels.pb.gz", "mixed.pb.gz",
                                                          "fib.pb.gz")], env=env)
    assert p.returncode == 0, p.err
    full, pgo = str(tmp_path / "full.pgo"), str(tmp_path / "pgo.pgo")
    assert run_pgof(["fetch", "-q", "-o", full], env=env).returncode == 0
    p = run_pgof(["fetch", "-q", "-o", pgo, "--shape", "pgo"], env=env)
    assert p.returncode == 0, p.err
    assert edges(full) == edges(pgo)
    assert os.path.getsize(pgo) < os.path.getsize(full)
