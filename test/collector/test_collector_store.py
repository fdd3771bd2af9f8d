"""Storage, merge and combine of pgof-collector (issue 4): merges are exact
sums, combine replaces the files, the Go collector's directory works as is,
bad files are quarantined, temporary files never count, a kill -9 at any
step of a combine loses and doubles nothing."""
import os
import random
import shutil
import threading
import time

import pytest

from collector_helpers import (PROFILES, SANITIZED, Collector, collector,  # noqa: F401
                               fixture, make_collector, profile_stacks, sum_stacks, totals,
                               wait_for)
from collector_helpers import MERGE_KEY


def submit_all(c, names):
    for n in names:
        st, _, body = c.submit(fixture(n))
        assert st == 204, (n, body)


def test_merge_with_nothing_stored_is_404(collector):
    st, _, body = collector.merge()
    assert (st, body) == (404, b"no profiles stored yet\n")
    st, _, body = collector.merge(combine="true")
    assert st == 404


def test_merge_is_the_exact_sum(collector):
    submit_all(collector, PROFILES)
    st, headers, merged = collector.merge()
    assert st == 200
    assert int(headers["content-length"]) == len(merged)
    assert merged[:2] == b"\x1f\x8b"
    want = sum_stacks(fixture(n) for n in PROFILES)
    assert profile_stacks(merged) == want
    # Twice the same answer (from the cache), and a submit changes it.
    assert collector.merge()[2] == merged
    submit_all(collector, ["fib.pb.gz"])
    again = profile_stacks(collector.merge()[2])
    assert totals(again) == [a + b for a, b in zip(totals(want),
                                                   totals(profile_stacks(fixture("fib.pb.gz"))))]
    assert collector.metric("pgof_merges_total") == 3


@pytest.mark.parametrize("value", [None, "false", "TRUE", "1", "yes", ""])
def test_merge_without_combine_keeps_files(collector, value):
    submit_all(collector, PROFILES[:3])
    st, _, _ = collector.merge(combine=value)
    assert st == 200
    assert len(collector.stored()) == 3


def test_combine_replaces_files(collector):
    submit_all(collector, PROFILES)
    want = sum_stacks(fixture(n) for n in PROFILES)
    st, _, merged = collector.merge(combine="true")
    assert st == 200 and profile_stacks(merged) == want
    files = collector.stored()
    assert len(files) == 1 and files[0].startswith("merged_")
    assert not os.path.exists(os.path.join(collector.dir, "combine.journal"))
    # The merged file is what merge answers; later submits add to it.
    submit_all(collector, ["sha.pb.gz"])
    st, _, merged2 = collector.merge()
    want2 = sum_stacks([fixture(n) for n in PROFILES] + [fixture("sha.pb.gz")])
    assert profile_stacks(merged2) == want2
    assert collector.metric("pgof_combines_total") == 1
    assert collector.metric("pgof_stored_profiles") == 2
    # The byte count follows the combine: the merged file and the new one.
    assert collector.metric("pgof_stored_bytes") == sum(
        os.path.getsize(os.path.join(collector.dir, n)) for n in collector.stored())


def test_profiles_survive_restart(make_collector):
    c = make_collector()
    submit_all(c, PROFILES[:4])
    assert c.stop() == 0
    c.start()
    want = sum_stacks(fixture(n) for n in PROFILES[:4])
    assert profile_stacks(c.merge()[2]) == want
    assert c.metric("pgof_stored_bytes") == sum(
        os.path.getsize(os.path.join(c.dir, n)) for n in c.stored())


def test_profiles_arriving_during_combine_are_kept(collector):
    submit_all(collector, PROFILES)
    results = []

    def submitter():
        for _ in range(6):
            results.append(collector.submit(fixture("fib.pb.gz"))[0])

    t = threading.Thread(target=submitter)
    t.start()
    for _ in range(3):
        assert collector.merge(combine="true")[0] == 200
    t.join()
    assert results == [204] * 6
    want = sum_stacks([fixture(n) for n in PROFILES] + [fixture("fib.pb.gz")] * 6)
    assert profile_stacks(collector.merge()[2]) == want


def test_original_collector_directory(make_collector, tmp_path):
    """Files as the Go collector names them are merged as they are."""
    d = tmp_path / "old"
    d.mkdir()
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "fixtures", "profiles",
                             "fib.pb.gz"), d / "1700000000000_0.pgo")
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "fixtures", "profiles",
                             "mixed.pb.gz"), d / "merged_1700000000001_1.pgo")
    (d / "notes.txt").write_text("not a profile")
    c = make_collector(directory=str(d))
    assert "loaded 2 profile(s)" in c.log()
    submit_all(c, ["sort.pb.gz"])
    want = sum_stacks(fixture(n) for n in ["fib.pb.gz", "mixed.pb.gz", "sort.pb.gz"])
    assert profile_stacks(c.merge()[2]) == want
    names = c.stored()
    assert len(names) == 3
    new = [n for n in names if n not in ("1700000000000_0.pgo", "merged_1700000000001_1.pgo")]
    assert new[0].split("_")[0].isdigit() and new[0].endswith(".pgo")
    assert (d / "notes.txt").exists()


def test_quarantine(make_collector, tmp_path):
    d = tmp_path / "q"
    d.mkdir()
    (d / "1700000000000_0.pgo").write_bytes(fixture("fib.pb.gz"))
    (d / "1700000000001_1.pgo").write_bytes(fixture("garbage.bin", "bad"))
    (d / "1700000000002_2.pgo").write_bytes(fixture("heap.pb.gz", "bad"))
    (d / "1700000000003_3.pgo").write_bytes(fixture("truncated.pb.gz", "bad"))
    c = make_collector(directory=str(d))
    assert sorted(os.listdir(d / "quarantine")) == ["1700000000001_1.pgo",
                                                     "1700000000002_2.pgo",
                                                     "1700000000003_3.pgo"]
    assert c.stored() == ["1700000000000_0.pgo"]
    assert c.log().count("quarantined 17") == 3
    assert c.metric("pgof_quarantined_total") == 3
    st, _, merged = c.merge()
    assert st == 200 and profile_stacks(merged) == profile_stacks(fixture("fib.pb.gz"))


def test_combined_file_larger_than_the_submission_limits_survives_restart(make_collector):
    """PGOF_MAX_PROFILE_BYTES bounds one submission, not the merged file a
    combine writes: at the next start-up that file was quarantined and every
    acknowledged profile in it lost (and since/weight merges skipped it)."""
    # Every fixture inflates to less than 16000 bytes; their sum does not.
    c = make_collector(env={"PGOF_MAX_PROFILE_BYTES": "16000"})
    submit_all(c, PROFILES)
    want = sum_stacks(fixture(n) for n in PROFILES)
    st, _, merged = c.merge(combine="true")
    assert st == 200 and profile_stacks(merged) == want
    assert len(c.stored()) == 1
    assert c.stop() == 0
    c.start()
    assert not os.path.exists(os.path.join(c.dir, "quarantine"))
    assert len(c.stored()) == 1
    st, _, merged = c.merge()
    assert st == 200 and profile_stacks(merged) == want
    st, _, merged = c.request("POST", "/v1/merge?weight=equal",
                              headers={"Authorization": f"Bearer {MERGE_KEY}"})
    assert st == 200, merged
    assert c.metric("pgof_quarantined_total") == 0


def test_temporary_files_are_swept_and_never_count(make_collector, tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    (d / ".pgof-tmp-123-4").write_bytes(fixture("fib.pb.gz"))
    (d / ".pgof-tmp-combine-9").write_bytes(fixture("fib.pb.gz"))
    c = make_collector(directory=str(d))
    assert c.temps() == []
    assert c.merge()[0] == 404


def test_interrupted_upload_leaves_no_file(collector):
    s = collector.socket()
    s.sendall(b"POST /v1/submit HTTP/1.1\r\nAuthorization: Bearer submit-key-0123456789\r\n"
              b"Content-Length: 5000\r\n\r\n" + b"x" * 1000)
    wait_for(lambda: collector.temps() != [], 5, "the upload's temporary file")
    s.close()
    wait_for(lambda: collector.temps() == [], 5, "the temporary file to go")
    assert collector.stored() == []


# ---- crash safety ----------------------------------------------------------

def ledger_check(c, ledger):
    st, _, merged = c.merge()
    if not ledger:
        assert st == 404
        return
    assert st == 200
    assert profile_stacks(merged) == sum_stacks(fixture(n) for n in ledger)
    assert c.temps() == []
    assert not os.path.exists(os.path.join(c.dir, "combine.journal"))


@pytest.mark.parametrize("step", range(1, 11))
def test_kill_during_combine_at_each_step(make_collector, step):
    """PGOF_TEST_CRASH_AT_STEP makes the collector SIGKILL itself right after
    step N of the combine protocol; after a restart the merge is exactly the
    sum of every acknowledged profile."""
    c = make_collector(env={"PGOF_TEST_CRASH_AT_STEP": str(step)})
    ledger = PROFILES[:5]
    submit_all(c, ledger)
    c.combine_until_crash()
    del c.env["PGOF_TEST_CRASH_AT_STEP"]
    c.start()
    ledger_check(c, ledger)
    # And the store goes on working: combine again, then check once more.
    assert c.merge(combine="true")[0] == 200
    ledger_check(c, ledger)


def test_kill_9_at_random_moments_during_combine(make_collector):
    rnd = random.Random(4)
    c = make_collector()
    ledger = []
    rounds = 4 if SANITIZED else 8
    for i in range(rounds):
        names = [rnd.choice(PROFILES) for _ in range(rnd.randint(1, 4))]
        submit_all(c, names)
        ledger += names
        t = threading.Thread(target=lambda: _try(c.merge, "true"))
        t.start()
        time.sleep(rnd.uniform(0, 0.004))
        c.kill9()
        t.join()
        c.start()
        ledger_check(c, ledger)


def _try(f, *a):
    try:
        f(*a)
    except Exception:
        pass
