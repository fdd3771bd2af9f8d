#!/usr/bin/python3
"""The test runner behind `make test` and `make fuzz`.

It runs, in order, each suite that was built:
  1. every cmocka unit-test binary under build/test/ (plain build),
  2. the same binaries under build/asan/test/ (ASan + UBSan),
  3. the pytest integration suite against build/pgof-collector,
  4. the same suite against build/asan/pgof-collector (leak checks on),
  5. each libFuzzer target under build/fuzz/ for a short time,
and ends with one summary line, "summary: N passed, N failed".

A suite's binaries are found on disk, so a module that adds test/<mod>/
test_*.c is run without editing this file. Every child process gets a
timeout; a sanitizer report anywhere fails its suite.
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "ThreadSanitizer", "UndefinedBehaviorSanitizer")


class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []

    def add(self, name, passed, failed, why=""):
        self.passed += passed
        self.failed += failed
        if failed:
            self.failures.append(f"{name}: {why}" if why else name)


def run(cmd, timeout, env=None):
    """Runs cmd, returns (exit status or None on timeout, combined output)."""
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        return None, out


def has_sanitizer_report(out):
    return any(m in out for m in SANITIZER_MARKS)


def unit_suite(tally, build, label):
    bins = sorted(b for b in glob.glob(os.path.join(ROOT, build, "test", "*", "test_*"))
                  if os.access(b, os.X_OK) and not b.endswith(".d"))
    env = dict(os.environ, PGOF_FIXTURES=os.path.join(ROOT, "test", "fixtures"),
               ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    for b in bins:
        name = f"{label} {os.path.relpath(b, ROOT)}"
        t0 = time.monotonic()
        rc, out = run([b], timeout=300, env=env)
        passed = sum(int(n) for n in re.findall(r"\[  PASSED  \] (\d+) test", out))
        failed = sum(int(n) for n in re.findall(r"\[  FAILED  \] (\d+) test", out))
        bad = rc != 0 or has_sanitizer_report(out)
        if bad and failed == 0:
            failed = 1
        status = "ok" if not bad else ("TIMEOUT" if rc is None else "FAIL")
        print(f"  {status:7} {name}: {passed} passed, {failed} failed "
              f"({time.monotonic() - t0:.1f}s)", flush=True)
        if bad:
            print(indent(tail(out)), flush=True)
        tally.add(name, passed, failed, "see output above")


def pytest_suite(tally, binary, label, extra_env):
    if not os.path.exists(os.path.join(ROOT, binary)):
        print(f"  skip    {label}: {binary} not built", flush=True)
        return
    env = dict(os.environ, PGOF_COLLECTOR=os.path.join(ROOT, binary),
               PGOF_BUILD=os.path.join(ROOT, os.path.dirname(binary)),
               PYTHONDONTWRITEBYTECODE="1", **extra_env)
    t0 = time.monotonic()
    rc, out = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   "-o", "console_output_style=classic", "test"],
                  timeout=900, env=env)
    m_pass = re.findall(r"(\d+) passed", out)
    m_fail = re.findall(r"(\d+) failed", out)
    m_err = re.findall(r"(\d+) error", out)
    passed = int(m_pass[-1]) if m_pass else 0
    failed = (int(m_fail[-1]) if m_fail else 0) + (int(m_err[-1]) if m_err else 0)
    if rc == 5:  # pytest: no tests collected
        print(f"  skip    {label}: no integration tests yet", flush=True)
        return
    if rc not in (0, None) and failed == 0:
        failed = 1
    if rc is None:
        failed = max(failed, 1)
    status = "ok" if failed == 0 else ("TIMEOUT" if rc is None else "FAIL")
    print(f"  {status:7} {label}: {passed} passed, {failed} failed "
          f"({time.monotonic() - t0:.1f}s)", flush=True)
    if failed:
        print(indent(tail(out, 80)), flush=True)
    tally.add(label, passed, failed, "see output above")


def fuzz_suite(tally, seconds):
    targets = sorted(glob.glob(os.path.join(ROOT, "build", "fuzz", "fuzz_*")))
    targets = [t for t in targets if os.access(t, os.X_OK) and not t.endswith(".d")]
    for t in targets:
        name = os.path.basename(t)
        seeds = os.path.join(ROOT, "test", "fuzz", "corpus", name.replace("fuzz_", ""))
        work = os.path.join(ROOT, "build", "fuzz", "corpus-" + name)
        os.makedirs(work, exist_ok=True)
        artifacts = os.path.join(ROOT, "build", "fuzz", "crash-" + name) + os.sep
        os.makedirs(artifacts, exist_ok=True)
        cmd = [t, f"-max_total_time={seconds}", "-max_len=65536", "-rss_limit_mb=2048",
               "-timeout=10", f"-artifact_prefix={artifacts}", "-print_final_stats=1", work]
        if os.path.isdir(seeds):
            cmd.append(seeds)
        t0 = time.monotonic()
        rc, out = run(cmd, timeout=seconds + 120,
                      env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
        execs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", out)
        ok = rc == 0
        print(f"  {'ok' if ok else 'FAIL':7} fuzz {name}: "
              f"{execs[-1] if execs else '?'} executions, {'no finding' if ok else 'FINDING'} "
              f"({time.monotonic() - t0:.0f}s)", flush=True)
        if not ok:
            print(indent(tail(out, 60)), flush=True)
        tally.add(f"fuzz {name}", 1 if ok else 0, 0 if ok else 1, "crash input under " + artifacts)


def tail(out, n=40):
    lines = out.rstrip().splitlines()
    return "\n".join(lines[-n:])


def indent(s):
    return "\n".join("      | " + line for line in s.splitlines())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fuzz-only", action="store_true")
    ap.add_argument("--fuzz-seconds", type=int, default=20)
    args = ap.parse_args()
    tally = Tally()
    t0 = time.monotonic()
    if args.fuzz_only:
        fuzz_suite(tally, args.fuzz_seconds)
    else:
        print("unit tests", flush=True)
        unit_suite(tally, "build", "unit")
        unit_suite(tally, "build/asan", "unit+asan")
        print("integration tests", flush=True)
        pytest_suite(tally, "build/pgof-collector", "integration", {})
        pytest_suite(tally, "build/asan/pgof-collector", "integration+asan",
                     {"PGOF_SANITIZED": "1",
                      "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
                      "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"})
        print("fuzzing", flush=True)
        fuzz_suite(tally, args.fuzz_seconds)
    for f in tally.failures:
        print(f"failed: {f}")
    print(f"took {time.monotonic() - t0:.0f}s")
    # The closing line has exactly this shape so CI and people can read it.
    print(f"summary: {tally.passed} passed, {tally.failed} failed")
    sys.exit(1 if tally.failed else 0)


if __name__ == "__main__":
    main()
