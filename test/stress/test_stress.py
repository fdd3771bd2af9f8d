"""The short stress run in make test (issue 5): see stress.py. About 20 s
against the plain collector, 10 s against the ASan one; `make stress` runs
the long one."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import stress  # noqa: E402
from collector_helpers import SANITIZED  # noqa: E402


def test_stress_ledger_holds(tmp_path):
    seconds = 10 if SANITIZED else 20
    rep = stress.run(str(tmp_path), seconds=seconds, clients=16, mergers=2, seed=5)
    print(json.dumps(rep, indent=2))
    assert rep["problems"] == [], json.dumps(rep, indent=2)
    assert rep["acknowledged"] > 50, rep
    assert rep["mid_run_merges_checked"] >= 3, rep
    assert rep["unknown_outcome"] == 0, rep
    assert not rep["errors_by_kind"], rep
