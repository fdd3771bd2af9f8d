"""A directory fsync that fails after a profile was renamed into place.

The client is told its profile was not stored (500), so it will retry; the
profile must then be counted once, from the retry, never also from the file
the failed attempt left behind. An LD_PRELOAD shim (shim/fail_dir_fsync.c)
makes directory fsyncs fail while a flag file exists.
"""
import os
import subprocess

import pytest

from collector_helpers import (SANITIZED, fixture, make_collector,  # noqa: F401
                               profile_stacks, sum_stacks, totals)

HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.skipif(
    SANITIZED, reason="an LD_PRELOAD shim cannot come before the ASan runtime")


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shim") / "fail_dir_fsync.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", out,
                    os.path.join(HERE, "shim", "fail_dir_fsync.c"), "-ldl"], check=True)
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
