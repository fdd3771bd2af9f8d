"""Smoke test of the collector benchmark (test/bench/collector.py --quick).

Runs every section for a few seconds against $PGOF_COLLECTOR with the
checked-in fixtures and checks that each table came out with numbers. It
asserts no speed target: `make bench` measures those (docs/performance.md).
Skipped when the benchmark's tools (make setup-bench) are missing.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("wrk", "hyperfine", "go"))
                    or not os.path.isdir("/usr/share/gocode/src/github.com/google/pprof"),
                    reason="benchmark tools missing (make setup-bench)")
def test_bench_quick_runs_and_reports_numbers():
    env = dict(os.environ)
    env.setdefault("PGOF_COLLECTOR", os.path.join(ROOT, "build", "pgof-collector"))
    p = subprocess.run([sys.executable, os.path.join(ROOT, "test", "bench", "collector.py"),
                        "--quick"], cwd=ROOT, env=env, timeout=300,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert p.returncode == 0, p.stdout[-3000:]
    out = p.stdout
    for title in ("Submit throughput", "Merge latency", "Start-up", "Loop responsiveness",
                  "Memory", "Offline merge"):
        assert f"## {title}" in out, out[-3000:]
    m = re.search(r"^\| pgof-collector \| (\d+) \|", out, re.M)
    assert m and int(m.group(1)) > 0, out[-3000:]
    assert re.search(r"^\| 40 \| [\d.]+ ms \|", out, re.M), out[-3000:]
    assert re.search(r"Same-run throughput ratio ours/ref: median [\d.]+x", out), out[-3000:]
    assert re.search(r"^Creating a file before the runs: \d+ µs", out, re.M), out[-3000:]
