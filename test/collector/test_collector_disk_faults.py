"""Disk faults in the middle of the store's protocols, made by an LD_PRELOAD
shim (shim/faults.c) while a flag file exists: a directory fsync that fails
after a rename, and an input that cannot be removed after a combine
committed. In both the rule is the ledger's: every profile answered 204 is
counted exactly once, never twice. And an upload whose bytes cannot be
written is answered like one whose file cannot be created.
"""
import os
import subprocess

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
