#!/usr/bin/python3
"""Stress run with a ledger (issue 5, item 1): loopback only, bounded in time.

For --seconds, --clients submitter threads send marked real profiles (see
ledger.py) in every shape a fleet produces: fixed length, chunked in random
pieces, raw protobuf, slow (the body trickles in pieces), on fresh or
keep-alive connections, and some cut off mid-body (never acknowledged, so
never allowed in a merge); a few send an invalid profile (400). Merger
threads ask for merges and combines at random moments and check each answer
against the ledger at that instant: every profile acknowledged before the
request was sent is in it exactly once, and nothing else but profiles still
in flight. A prober times GET /healthz throughout. At the end the merge must
equal the ledger exactly, stack by stack, before and after a final combine
and after a restart; no temporary file may be left.

    test/stress/stress.py --seconds 180 --clients 48     # make stress
The short run in make test is test/stress/test_stress.py.
Prints a report (requests by kind and status, errors by kind, ledger
mismatches, healthz latency, peak RSS of the collector) and exits 1 when an
invariant broke.
"""
import argparse
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ledger as L  # noqa: E402
from collector_helpers import (MERGE_KEY, SANITIZED, SLOW, SUBMIT_KEY, Collector,  # noqa: E402
                               chunked, read_response)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = Counter()   # (kind, status)
        self.errors = Counter()     # kind of error
        self.problems = []          # invariant violations (each fails the run)
        self.healthz_ms = []
        self.merges_checked = 0

    def count(self, kind, status):
        with self.lock:
            self.requests[(kind, status)] += 1

    def error(self, kind):
        with self.lock:
            self.errors[kind] += 1

    def problem(self, what):
        with self.lock:
            self.problems.append(what)


def head(path, key, extra=b""):
    return (f"POST {path} HTTP/1.1\r\nHost: stress\r\nAuthorization: Bearer {key}\r\n"
            .encode() + extra)


def submitter(c, fx, ledger, stats, stop, seed):
    """One client: a stream of submissions in random shapes."""
    rnd = random.Random(seed)
    sock, buf = None, b""
    while not stop.is_set():
        name = rnd.choice(fx.names)
        kind = rnd.choices(["fixed", "chunked", "raw", "slow", "cut", "bad"],
                           [40, 25, 10, 10, 10, 5])[0]
        ident = ledger.new(name)
        body = fx.marked(name, ident, gz=kind != "raw")
        if kind == "bad":
            body = body[:len(body) // 2]  # a truncated gzip stream: 400
        if kind == "chunked":
            data = chunked(body, rnd.choice([7, 100, 1000, 4096]))
            req = head("/v1/submit", SUBMIT_KEY, b"Transfer-Encoding: chunked\r\n\r\n") + data
        else:
            req = head("/v1/submit", SUBMIT_KEY, b"Content-Length: %d\r\n\r\n" % len(body)) + body
        sent_all = False
        try:
            if sock is None or kind in ("cut", "slow") or rnd.random() < 0.3:
                if sock is not None:
                    sock.close()
                sock, buf = None, b""
                sock = c.socket(timeout=60)
            if kind != "cut":
                # In flight from the first byte: the server may store it
                # before this thread runs again.
                ledger.sent(ident)
            if kind == "cut":
                # Head and part of the body, then away: never acknowledged.
                sock.sendall(req[:rnd.randrange(len(req) - len(body), len(req) - 1)])
                if rnd.random() < 0.5:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                sock.close()
                sock = None
                ledger.outcome(ident, 499)
                stats.count("submit-cut", "-")
                continue
            if kind == "slow":
                pieces = rnd.randint(3, 8)
                step = len(req) // pieces + 1
                for i in range(0, len(req), step):
                    sock.sendall(req[i:i + step])
                    time.sleep(rnd.uniform(0.005, 0.05))
            else:
                sock.sendall(req)
            sent_all = True
            status, headers, rbody, buf = read_response(sock, buf)
        except (OSError, AssertionError) as e:
            stats.error(f"submit-{kind}: {type(e).__name__}")
            ledger.outcome(ident, None if sent_all else 499)
            if sock is not None:
                sock.close()
            sock = None
            time.sleep(0.01)  # the collector may be restarting
            continue
        ledger.outcome(ident, status)
        stats.count(f"submit-{kind}", status)
        want = 400 if kind == "bad" else 204
        if status != want:
            stats.problem(f"submit-{kind} answered {status}: {rbody[:200]!r}")
        if headers.get("connection") == "close":
            sock.close()
            sock = None
    if sock is not None:
        sock.close()


def merger(c, ledger, stats, stop, seed, pause):
    rnd = random.Random(seed)
    while not stop.wait(rnd.uniform(*pause)):
        combine = rnd.random() < 0.4
        kind = "combine" if combine else "merge"
        must, _ = ledger.snapshot()
        try:
            status, _, data = c.request(
                "POST", "/v1/merge" + ("?and_combine=true" if combine else ""),
                headers={"Authorization": f"Bearer {MERGE_KEY}"}, timeout=120)
        except OSError as e:
            stats.error(f"{kind}: {type(e).__name__}")
            continue
        acked, maybe = ledger.snapshot()
        stats.count(kind, status)
        if status == 404 and not must:
            continue
        if status != 200:
            stats.problem(f"{kind} answered {status}: {data[:200]!r}")
            continue
        # Acknowledged before we asked: must be there. Acknowledged or in
        # flight by the time the answer came: may be there.
        for p in L.check_merge(ledger, data, must, (acked | maybe) - must):
            stats.problem(f"mid-run {kind}: {p}")
        with stats.lock:
            stats.merges_checked += 1


def prober(c, stats, stop):
    while not stop.wait(0.1):
        t0 = time.monotonic()
        try:
            status, _, _ = c.request("GET", "/healthz", timeout=30)
        except OSError as e:
            stats.error(f"healthz: {type(e).__name__}")
            continue
        ms = (time.monotonic() - t0) * 1000
        with stats.lock:
            stats.healthz_ms.append(ms)
        if status != 200:
            stats.problem(f"healthz answered {status}")


def peak_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def final_check(c, ledger, stats, label):
    status, _, data = c.merge()
    if status != 200:
        stats.problem(f"{label}: merge answered {status}")
        return None
    for p in L.check_merge(ledger, data, ledger.acked, ledger.unknown):
        stats.problem(f"{label}: {p}")
    return data


def run(tmp, seconds, clients, mergers=2, seed=1, env=None):
    """Runs the stress; returns the report dict (report['problems'] empty when
    every invariant held)."""
    fx = L.Fixtures()
    ledger = L.Ledger(fx)
    stats = Stats()
    c = Collector(tmp, env=env).start()
    stop = threading.Event()
    threads = [threading.Thread(target=submitter, args=(c, fx, ledger, stats, stop, seed * 1000 + i))
               for i in range(clients)]
    threads += [threading.Thread(target=merger, args=(c, ledger, stats, stop, seed * 2000 + i,
                                                      (0.2, 1.5)))
                for i in range(mergers)]
    threads.append(threading.Thread(target=prober, args=(c, stats, stop)))
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(120 * SLOW)
    elapsed = time.monotonic() - t0
    hung = sum(t.is_alive() for t in threads)
    if hung:
        stats.problem(f"{hung} client thread(s) still running after the end")
    rss = peak_rss_kb(c.proc.pid)
    before = final_check(c, ledger, stats, "final merge")
    status, _, _ = c.merge(combine="true")
    if status != 200:
        stats.problem(f"final combine answered {status}")
    after = final_check(c, ledger, stats, "merge after the final combine")
    if before is not None and after is not None and L.split_merge(before) != L.split_merge(after):
        stats.problem("the merge changed across the final combine")
    if len(c.stored()) != 1:
        stats.problem(f"{len(c.stored())} stored files after the final combine")
    rc = c.stop()
    if rc != 0:
        stats.problem(f"collector exit status {rc} after SIGTERM")
    if c.temps():
        stats.problem(f"temporary files left after shutdown: {c.temps()}")
    c.start()
    final_check(c, ledger, stats, "merge after a restart")
    rc = c.stop()
    if rc != 0:
        stats.problem(f"collector exit status {rc} after the second SIGTERM")
    try:
        c.check_clean()
    except AssertionError as e:
        stats.problem(str(e)[:3000])
    hz = sorted(stats.healthz_ms) or [0.0]
    reqs = sum(stats.requests.values())
    return {
        "seconds": round(elapsed, 1),
        "submit_clients": clients,
        "merge_clients": mergers,
        "requests": reqs,
        "requests_per_second": round(reqs / elapsed, 1),
        "by_kind_status": {f"{k} {s}": n for (k, s), n in sorted(stats.requests.items(),
                                                                  key=str)},
        "acknowledged": len(ledger.acked),
        "refused": len(ledger.refused),
        "unknown_outcome": len(ledger.unknown),
        "mid_run_merges_checked": stats.merges_checked,
        "errors_by_kind": dict(stats.errors),
        "healthz_probes": len(stats.healthz_ms),
        "healthz_ms_p50": round(hz[len(hz) // 2], 1),
        "healthz_ms_p99": round(hz[min(len(hz) - 1, int(len(hz) * 0.99))], 1),
        "healthz_ms_max": round(hz[-1], 1),
        "peak_rss_kb": rss,
        "sanitized": SANITIZED,
        "invariant_violations": len(stats.problems),
        "problems": stats.problems[:20],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--clients", type=int, default=48)
    ap.add_argument("--mergers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pgof-stress-") as tmp:
        rep = run(tmp, args.seconds, args.clients, args.mergers, args.seed)
    rep["seed"] = args.seed
    print(json.dumps(rep, indent=2))
    print(f"stress: {rep['requests']} requests from {args.clients} submit + {args.mergers} merge "
          f"clients in {rep['seconds']}s, {rep['acknowledged']} profiles acknowledged, "
          f"{rep['invariant_violations']} ledger mismatches or other violations, peak RSS {rep['peak_rss_kb']} KiB, "
          f"healthz p99 {rep['healthz_ms_p99']} ms")
    sys.exit(1 if rep["problems"] else 0)


if __name__ == "__main__":
    main()
