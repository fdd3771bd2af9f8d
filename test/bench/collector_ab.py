#!/usr/bin/python3
"""collector_ab.py: the same collector benchmark for two or more collector
binaries, alternating them in one run (no Go reference), to measure a change.

    test/bench/collector_ab.py --bins old=/tmp/old,new=build/pgof-collector \
        [--sections submit,loop] [--runs 3] [--duration 8] \
        [--env 'new:UV_THREADPOOL_SIZE=2;K=V|old:K=V']

Each run starts a fresh server per binary through collector.py's own code
(Server, run_wrk, make_store): the submit section is collector.py's (wrk
-t2 -c32, CPU s per 1,000 from /proc), the loop section is collector.py's
loop-responsiveness run (1,000 stored, wrk submitting, combines back to
back, /healthz every 10 ms). Prints every run, then medians per binary.
--env sets extra environment variables for one binary's servers.
"""
import sys, os, time, threading, statistics, shutil, signal
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import collector as C
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
import argparse
ap = argparse.ArgumentParser()
ap.add_argument("--bins", required=True)  # name=path,name=path
ap.add_argument("--sections", default="submit,loop")
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--duration", type=int, default=10)
ap.add_argument("--env", default="")  # name:K=V;K=V|...
a = ap.parse_args()
bins = [b.split("=", 1) for b in a.bins.split(",")]
extra = {}
for part in filter(None, a.env.split("|")):
    n, kvs = part.split(":", 1)
    extra[n] = dict(kv.split("=", 1) for kv in kvs.split(";"))
pool = C.prepare(256, False) if "loop" in a.sections else None
os.makedirs(C.RUN, exist_ok=True)
res = {n: {"submit": [], "loop": []} for n, _ in bins}

def server(name, path, d):
    os.environ["PGOF_COLLECTOR"] = path
    saved = dict(os.environ)
    os.environ.update(extra.get(name, {}))
    try:
        return C.Server("ours", d)
    finally:
        os.environ.clear(); os.environ.update(saved)

def submit(name, path):
    d = C.fresh_dir("s-" + name)
    srv = server(name, path, d)
    try:
        srv.wait_healthy(); srv.wait_loaded()
        c0 = srv.cpu_seconds(); r = C.run_wrk(srv, a.duration); c1 = srv.cpu_seconds()
    finally:
        srv.stop()
    ok = r["requests"] - r["status"]
    r["cpu"] = (c1 - c0) / max(ok, 1) * 1000
    assert not r["status"] and not r["errors"] and C.count_profiles(d) >= ok, r
    return r

def loop(name, path):
    d = C.make_store(pool, 1000, "l-" + name)
    srv = server(name, path, d)
    lat, combines, stop = [], [], threading.Event()
    try:
        srv.wait_healthy(); srv.wait_loaded()
        wr = {}
        wt = threading.Thread(target=lambda: wr.update(C.run_wrk(srv, a.duration)))
        def combiner():
            c = C.connect(srv)
            while not stop.is_set():
                st, _, t = C.post(c, "/v1/merge?and_combine=true", C.MERGE_KEY)
                combines.append((st, t))
            c.close()
        ct = threading.Thread(target=combiner)
        wt.start(); time.sleep(0.2); ct.start()
        c = C.connect(srv, timeout=30)
        while wt.is_alive():
            t0 = time.perf_counter(); c.request("GET", "/healthz"); c.getresponse().read()
            lat.append(time.perf_counter() - t0); time.sleep(0.01)
        stop.set(); ct.join(); c.close()
    finally:
        stop.set(); srv.stop()
    lat.sort()
    return {"p50": lat[len(lat)//2]*1000, "p99": lat[int(len(lat)*0.99)]*1000, "max": lat[-1]*1000,
            "rps": wr.get("rps", 0), "combines": sum(1 for s, _ in combines if s == 200)}

try:
    if "submit" in a.sections:
        us, waited, gave_up = C.settle_file_creation(240)
        print(f"creating a file: {us:.0f} µs (waited {waited} s"
              f"{', gave up: still slow' if gave_up else ''})", flush=True)
    for run in range(a.runs):
        for sec in a.sections.split(","):
            for n, p in bins:
                r = submit(n, p) if sec == "submit" else loop(n, p)
                res[n][sec].append(r)
                if sec == "submit":
                    print(f"run{run} submit {n}: {r['rps']:.0f} req/s p50 {r['p50_us']/1000:.1f} p99 {r['p99_us']/1000:.1f} ms cpu/1000 {r['cpu']:.3f}  load {os.getloadavg()[0]:.1f}", flush=True)
                else:
                    print(f"run{run} loop {n}: healthz p50 {r['p50']:.2f} p99 {r['p99']:.2f} max {r['max']:.1f} ms, {r['rps']:.0f} submits/s, {r['combines']} combines  load {os.getloadavg()[0]:.1f}", flush=True)
finally:
    shutil.rmtree(C.RUN, ignore_errors=True)
med = statistics.median
for n, _ in bins:
    s, l = res[n]["submit"], res[n]["loop"]
    if s:
        print(f"MEDIAN submit {n}: {med([r['rps'] for r in s]):.0f} req/s p50 {med([r['p50_us'] for r in s])/1000:.1f} p99 {med([r['p99_us'] for r in s])/1000:.1f} ms cpu/1000 {med([r['cpu'] for r in s]):.3f}")
    if l:
        print(f"MEDIAN loop {n}: healthz p50 {med([r['p50'] for r in l]):.2f} p99 {med([r['p99'] for r in l]):.2f} max {med([r['max'] for r in l]):.1f} ms, {med([r['rps'] for r in l]):.0f} submits/s, {med([r['combines'] for r in l])} combines")
