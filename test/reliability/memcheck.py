#!/usr/bin/python3
"""make memcheck (issue 5, item 5): build/pgof-collector under valgrind
(memcheck, --leak-check=full, --error-exitcode) through a short workload:
submits in every shape (fixed length, chunked, raw protobuf, 100-continue,
refused, cut off mid-body), hostile requests from the catalogue, merges, a
combine, a key reload (SIGHUP), then SIGTERM. Fails when valgrind reports
any error or a definite/indirect leak, or the collector does not exit 0.

    test/reliability/memcheck.py [path/to/pgof-collector]
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "stress"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "collector"))

import ledger as L  # noqa: E402
import test_hostile as H  # noqa: E402
from collector_helpers import ROOT, Collector, chunked, wait_for  # noqa: E402

VALGRIND = ["valgrind", "--tool=memcheck", "--leak-check=full",
            "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
            "--error-exitcode=99", "--track-fds=no", "--num-callers=30"]


def main():
    # Absolute: the collector runs in its scratch directory.
    binary = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(
        ROOT, "build", "pgof-collector")
    with tempfile.TemporaryDirectory(prefix="pgof-memcheck-") as tmp:
        c = Collector(tmp, env=H.ENV)
        c.runs = 1
        c.log_path = os.path.join(tmp, "collector-1.log")
        c._log = open(c.log_path, "wb")
        c.proc = subprocess.Popen(VALGRIND + [binary], env=c.env, stdout=subprocess.DEVNULL,
                                  stderr=c._log, cwd=tmp)
        c.host, c.port = wait_for(lambda: c._listening(), 120, "the collector to listen")
        wait_for(lambda: "store: loaded" in c.log(), 120, "the store to load")
        fx = L.Fixtures()
        ledger = L.Ledger(fx)
        n = 0
        t0 = time.monotonic()
        for i, name in enumerate(fx.names * 4):
            ident = ledger.new(name)
            body = fx.marked(name, ident, gz=i % 3 != 2)
            hdrs = {"Transfer-Encoding": "chunked"} if i % 2 else {}
            if i % 4 == 3:
                hdrs["Expect"] = "100-continue"
            st, _, b = c.submit(chunked(body) if hdrs.get("Transfer-Encoding") else body,
                                headers=hdrs)
            ledger.outcome(ident, st)
            assert st == 204, (st, b)
            n += 1
        for name, req, status, body in H.CATALOGUE[:30]:
            st, _, got = H.answer(c, req)
            assert (st, got) == (status, body), (name, st, got)
            n += 1
        for name, body, status, _ in [("bomb", H._bomb(), 413, None),
                                      ("truncated", fx.marked("fib.pb.gz", 0)[:-20], 400, None)]:
            assert c.submit(body)[0] == status, name
            n += 1
        s = c.socket()
        s.sendall(b"POST /v1/submit HTTP/1.1\r\n" + H.A + b"Content-Length: 5000\r\n\r\nxx")
        s.close()
        for combine in (None, "true", None):
            st, _, data = c.merge(combine=combine)
            assert st == 200 and L.check_merge(ledger, data, ledger.acked, set()) == []
            n += 1
        c.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "keys: reloaded" in c.log(), 60, "the key reload")
        c.proc.send_signal(signal.SIGTERM)
        rc = c.proc.wait(120)
        c._log.close()
        log = c.log()
        m = re.search(r"ERROR SUMMARY: (\d+) errors", log)
        leaks = re.findall(r"(definitely|indirectly) lost: ([\d,]+) bytes", log)
        print(f"memcheck: {n} requests in {time.monotonic() - t0:.0f}s under valgrind; "
              f"exit status {rc}; valgrind errors: {m.group(1) if m else '?'}; "
              f"leaks: {leaks or 'none'}")
        if rc != 0 or not m or m.group(1) != "0":
            print("\n".join(line for line in log.splitlines() if line.startswith("==")))
            sys.exit(1)


if __name__ == "__main__":
    main()
