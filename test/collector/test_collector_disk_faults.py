"""Disk faults in the middle of the store's protocols, made by an LD_PRELOAD
shim (shim/faults.c) while a flag file exists: a directory fsync that fails
after a rename, and an input that cannot be removed after a combine
committed. In both the rule is the ledger's: every profile answered 204 is
counted exactly once, never twice. And an upload whose bytes cannot be
written is answered like one whose file cannot be created.
"""
import os
import subprocess
import time

import pytest

from collector_helpers import (SANITIZED, fixture, make_collector,  # noqa: F401
                               profile_stacks, sum_stacks, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.skipif(
    SANITIZED, reason="an LD_PRELOAD shim cannot come before the ASan runtime")


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shim") / "faults.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", out,
                    os.path.join(HERE, "shim", "faults.c"), "-ldl"], check=True)
    return out


def test_failed_dir_fsync_leaves_nothing_to_count_twice(make_collector, tmp_path, shim):
    flag = str(tmp_path / "fail-dir-fsync")
    c = make_collector(env={"LD_PRELOAD": shim, "PGOF_TEST_FAIL_DIR_FSYNC": flag})
    body = fixture("fib.pb.gz")

    assert c.submit(body)[0] == 204
    open(flag, "w").close()
    status, _, reason = c.submit(body)
    assert status == 500, reason
    assert b"fsync" in reason
    # The failed attempt's file is gone, so nothing but the first profile
    # is stored, and no temporary file is left.
    assert len(c.stored()) == 1, c.stored()
    assert c.temps() == []

    os.unlink(flag)
    assert c.submit(body)[0] == 204  # the client's retry
    status, _, merged = c.merge()
    assert status == 200
    assert profile_stacks(merged) == sum_stacks([body, body])

    # And after a restart, which reloads the directory, still exactly two.
    c.stop()
    c.start()
    status, _, merged = c.merge()
    assert status == 200
    assert profile_stacks(merged) == sum_stacks([body, body])


def test_combine_input_that_cannot_be_removed_is_never_counted_twice(make_collector, tmp_path,
                                                                      shim):
    """A combine commits (its merged file is in place) and the collector dies
    before removing the inputs. At restart the inputs cannot be removed: the
    collector must not count them beside the merged file. It refuses merges
    with 503 and the reason, still stores submissions, and once the inputs
    can be removed it finishes the combine and the merge is exact."""
    flag = str(tmp_path / "fail-unlink")
    a, b, c_ = fixture("fib.pb.gz"), fixture("sha.pb.gz"), fixture("sort.pb.gz")
    c = make_collector(env={"PGOF_TEST_CRASH_AT_STEP": "6"})
    assert c.submit(a)[0] == 204
    assert c.submit(b)[0] == 204
    c.combine_until_crash()
    assert "combine.journal" in os.listdir(c.dir)

    del c.env["PGOF_TEST_CRASH_AT_STEP"]
    c.env.update({"LD_PRELOAD": shim, "PGOF_TEST_FAIL_UNLINK": flag})
    open(flag, "w").close()
    c.start(wait_ready=False)
    wait_for(lambda: "cannot finish the interrupted combine" in c.log(), 20,
             "the failed journal replay")
    status, _, reason = c.merge()
    assert status == 503, reason
    assert b"cannot finish the interrupted combine" in reason
    assert c.submit(c_)[0] == 204  # storing goes on

    os.unlink(flag)
    status, _, merged = c.merge()
    assert status == 200, merged
    assert profile_stacks(merged) == sum_stacks([a, b, c_])
    assert "combine.journal" not in os.listdir(c.dir)


@pytest.mark.parametrize("err,status", [("ENOMEM", 503), ("ENOSPC", 507), ("EIO", 500)])
@pytest.mark.parametrize("size", ["buffered", "streamed"])
def test_upload_write_failure_status(make_collector, tmp_path, shim, err, status, size):
    """Writing an upload's bytes fails: out of memory is overload (503 with
    Retry-After, try again), a full disk 507, anything else 500 -- the same
    answers as when creating the file fails. A body that fits the upload's
    64 KiB buffer is written by the submit job; a bigger one streams to the
    file as it arrives. Nothing is stored or left behind; once writes work
    again the same client is served."""
    flag = str(tmp_path / "fail-write")
    c = make_collector(env={"LD_PRELOAD": shim, "PGOF_TEST_FAIL_UPLOAD_WRITE": flag,
                            "PGOF_TEST_FAIL_UPLOAD_WRITE_ERRNO": err})
    body = fixture("fib.pb.gz") if size == "buffered" else os.urandom(300 * 1024)
    open(flag, "w").close()
    got, headers, reason = c.submit(body)
    assert got == status, (got, reason)
    assert b"cannot store the upload" in reason, reason
    assert headers.get("retry-after") == ("1" if status == 503 else None), headers
    wait_for(lambda: c.temps() == [], 10, "the temporary file to go")
    assert c.stored() == []
    os.unlink(flag)
    assert c.submit(fixture("fib.pb.gz"))[0] == 204


def test_sync_modes_store_durably(make_collector, tmp_path):
    """PGOF_SYNC=auto (the default) makes a group commit's files durable with
    one syncfs; PGOF_SYNC=fsync with one fsync per file and never calls
    syncfs. Both store every profile and merge to the exact sum."""
    bodies = [fixture(n) for n in ("fib.pb.gz", "sha.pb.gz", "labels.pb.gz")]
    for mode, batch in (("auto", 1), ("fsync", 0)):
        c = make_collector(env={"PGOF_SYNC": mode}, directory=str(tmp_path / mode))
        assert c.metric("pgof_store_sync_batch") == batch
        for b in bodies:
            assert c.submit(b)[0] == 204
        assert len(c.stored()) == len(bodies)
        syncs = c.metric("pgof_store_syncfs_total")
        assert (syncs >= 1) if batch else (syncs == 0), (mode, syncs)
        assert profile_stacks(c.merge()[2]) == sum_stacks(bodies)
        assert f"sync={mode}" in c.log()
        c.stop()


def test_bad_sync_setting_refused(make_collector):
    c = make_collector(env={"PGOF_SYNC": "sometimes"}, start=False)
    with pytest.raises(AssertionError) as e:
        c.start()
    assert 'PGOF_SYNC="sometimes": must be auto or fsync' in str(e.value)


def test_failed_syncfs_stores_nothing(make_collector, tmp_path, shim):
    """The group commit's syncfs fails: the submissions it was to make
    durable are answered 500 before any is renamed into place, nothing is
    stored or left behind, and the next submission, once syncfs works, is
    stored and counted once."""
    flag = str(tmp_path / "fail-syncfs")
    c = make_collector(env={"LD_PRELOAD": shim, "PGOF_TEST_FAIL_SYNCFS": flag})
    body = fixture("fib.pb.gz")
    assert c.submit(body)[0] == 204
    open(flag, "w").close()
    status, _, reason = c.submit(body)
    assert status == 500, reason
    assert reason.startswith(b"cannot store the profile: syncfs:"), reason
    assert len(c.stored()) == 1
    wait_for(lambda: c.temps() == [], 10, "the temporary file to go")
    assert "syncfs of" in c.log()
    os.unlink(flag)
    assert c.submit(body)[0] == 204
    assert profile_stacks(c.merge()[2]) == sum_stacks([body, body])


def test_failed_write_out_stores_nothing(make_collector, tmp_path, shim):
    """A submission's own data cannot be written out (sync_file_range fails
    on its file): that submission alone gets 500, with the reason."""
    flag = str(tmp_path / "fail-write-out")
    c = make_collector(env={"LD_PRELOAD": shim, "PGOF_TEST_FAIL_WRITE_OUT": flag})
    body = fixture("sha.pb.gz")
    open(flag, "w").close()
    status, _, reason = c.submit(body)
    assert status == 500, reason
    assert b"write-out" in reason, reason
    wait_for(lambda: c.temps() == [], 10, "the temporary file to go")
    assert c.stored() == []
    os.unlink(flag)
    assert c.submit(body)[0] == 204
    assert len(c.stored()) == 1


def test_slow_syncfs_falls_back_to_fsync_then_returns(make_collector, tmp_path, shim):
    """A syncfs slower than the threshold (here 100 ms, made 300 ms by the
    shim) means other files on the filesystem are being written: the store
    fsyncs each profile instead, without calling syncfs, until the back-off
    ends (here 1 s), then uses syncfs again. Every submission is stored."""
    flag = str(tmp_path / "slow-syncfs")
    c = make_collector(env={"LD_PRELOAD": shim, "PGOF_TEST_SLOW_SYNCFS": flag,
                            "PGOF_TEST_SYNCFS_SLOW_MS": "100",
                            "PGOF_TEST_SYNCFS_BACKOFF_MS": "1000"})
    body = fixture("json.pb.gz")
    open(flag, "w").close()
    assert c.submit(body)[0] == 204
    assert c.metric("pgof_store_syncfs_slow_total") == 1
    assert c.metric("pgof_store_sync_batch") == 0
    wait_for(lambda: "syncfs took" in c.log(), 10, "the warning")
    os.unlink(flag)
    syncs = c.metric("pgof_store_syncfs_total")
    for _ in range(3):
        assert c.submit(body)[0] == 204
    assert c.metric("pgof_store_syncfs_total") == syncs  # fsync'd, one by one
    time.sleep(1.1)
    assert c.submit(body)[0] == 204  # the back-off is over: the switch back
    assert c.submit(body)[0] == 204  # and this one is synced with syncfs
    assert c.metric("pgof_store_sync_batch") == 1
    assert c.metric("pgof_store_syncfs_total") > syncs
    assert "back to one syncfs per group commit" in c.log()
    assert len(c.stored()) == 6
    assert profile_stacks(c.merge()[2]) == sum_stacks([body] * 6)
