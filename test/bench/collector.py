#!/usr/bin/python3
"""collector.py: pgof-collector against its peers, in one run (issue 9).

    test/bench/collector.py [--sections submit,merge,...] [--runs N] [--quick]

Loopback only, bounded in time (about 4 minutes with the defaults, once the
profiles are cached, plus at most 4 minutes' wait for file creation). Each section starts fresh servers on free ports with
their own data directories under build/bench/run/ (removed at the end) and
prints a Markdown table; everything also goes to build/bench/collector.md and
build/bench/collector.json.

The peers, all measured in the same run on the same files:
  ref     test/bench/refserver: a Go server doing per request what the Go
          collector pgo-fleet replaces does (google/pprof profile.Parse, the
          CPU check, profile.Write, os.WriteFile; its merge re-reads every
          file and calls profile.Merge). Built with Debian's Go and Debian's
          golang-github-google-pprof-dev in GOPATH mode.
  pprof   `go tool pprof -proto FILES`, run as $(go env GOTOOLDIR)/pprof.

Sections:
  submit   wrk -t2 -c32 -d DURATION, test/bench/submit.lua POSTing one real
           ~20 KB gzip Go CPU profile (10 s of the fixture generator's
           "mixed" workload on one CPU) with a bearer key, ours and ref alternately,
           RUNS runs each: req/s, p50/p99, server CPU s per 1,000 profiles
           (utime+stime from /proc/PID/stat around the run).
  merge    10/100/1,000/10,000 stored profiles: POST /v1/merge latency
           (cached, and fresh: right after one more submit), ref's merge,
           go tool pprof -proto over the same files.
  startup  10,000 stored: time from exec to the first 200 of /v1/merge, the
           load time from the log, /healthz latency meanwhile.
  loop     /healthz p50/p99/max (one request every 10 ms on a keep-alive
           connection) while wrk submits at full rate and combines
           (merge?and_combine=true) run back to back; 3 alternating runs
           per server, medians.
  memory   RSS idle, after loading 10,000, peak (VmHWM, reset through
           /proc/PID/clear_refs) during a merge and a combine.
  offline  build/pgof merge vs go tool pprof -proto on 1,000 files:
           hyperfine wall time, /usr/bin/time -v peak RSS.

Before the submit runs, the time to create a file is probed: after
thousands of files were removed nearby it is several times its usual cost
for minutes, and the runs wait for that to pass (--create-wait, 4 minutes
at most by default; the report says what it was and whether it gave up).

Before each server starts, os.sync() writes out whatever the previous one
left dirty (the reference never fsyncs), so no run pays for another's
writes.

Stored sets: a pool of distinct real profiles from the fixture generator
(cached under build/bench/profiles, shared with merge_engine.sh), copied
round-robin under distinct Go-collector names <ms>_<n>.pgo.

--quick is the smoke mode used by test/bench/test_bench_smoke.py: seconds,
the checked-in fixtures, small sets, one run, no targets asserted.
"""
import argparse
import glob
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "build", "bench")
RUN = os.path.join(OUT, "run", str(os.getpid()))
POOL_DIR = os.path.join(OUT, "profiles")
SUBMIT_PROFILE = os.path.join(OUT, "submit", "mixed-10s-1cpu.pb.gz")
FIXTURES = os.path.join(ROOT, "test", "fixtures", "profiles")
REFSERVER = os.path.join(OUT, "refserver")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SUBMIT_KEY = "bench-submit-key"
MERGE_KEY = "bench-merge-key"
GOENV = dict(os.environ, GOCACHE=os.path.join(ROOT, "build", "gocache"),
             HOME=os.environ.get("HOME", "/tmp"))

report = []      # Markdown lines
results = {}     # for collector.json


def say(line=""):
    print(line, flush=True)
    report.append(line)


def log(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ---- preparation -------------------------------------------------------------

def collector_binary():
    return os.environ.get("PGOF_COLLECTOR", os.path.join(ROOT, "build", "pgof-collector"))


def prepare(pool_size, quick):
    global SUBMIT_PROFILE
    os.makedirs(RUN, exist_ok=True)
    if "PGOF_COLLECTOR" not in os.environ:
        subprocess.run(["make", "--no-print-directory", "-s", "build/pgof-collector",
                        "build/pgof", "build/pprof-dump"], cwd=ROOT, check=True)
    src = os.path.join(ROOT, "test", "bench", "refserver", "main.go")
    if not os.path.exists(REFSERVER) or os.path.getmtime(REFSERVER) < os.path.getmtime(src):
        log("building the Go reference server (GOPATH mode, Debian's google/pprof)")
        env = dict(GOENV, GO111MODULE="off", GOPATH="/usr/share/gocode", GOFLAGS="")
        subprocess.run(["go", "build", "-o", REFSERVER, "./test/bench/refserver"],
                       cwd=ROOT, env=env, check=True)
    if quick:
        # Smoke mode: the checked-in fixtures, nothing to generate.
        fixtures = sorted(glob.glob(os.path.join(FIXTURES, "*.pb.gz")))
        SUBMIT_PROFILE = max(fixtures, key=os.path.getsize)
        return fixtures
    if not os.path.exists(SUBMIT_PROFILE):
        # GOMAXPROCS=1: the profile's size then follows the duration, not
        # the machine's core count or load (15 s on 2 idle cores gave
        # 42 KB, on 2 busy ones 22 KB); 10 s on one CPU is about 20 KB.
        log("generating the submit profile (10 s)")
        d = os.path.join(OUT, "submit")
        subprocess.run(["go", "run", "./test/fixtures/gen/main.go", "-out", d,
                        "-workloads", "mixed", "-d", "10s"], cwd=ROOT,
                       env=dict(GOENV, GOMAXPROCS="1"), check=True)
        os.rename(os.path.join(d, "mixed.pb.gz"), SUBMIT_PROFILE)
    have = pool_files()
    if len(have) < pool_size:
        per = (pool_size + 15) // 16   # 8 workloads x 2 generators in parallel
        log(f"generating {per * 16} pool profiles into {POOL_DIR} (about {per * 8} s)")
        procs = [subprocess.Popen(["go", "run", "./test/fixtures/gen/main.go", "-out",
                                   os.path.join(POOL_DIR, sub), "-n", str(per), "-d", "1s"],
                                  cwd=ROOT, env=GOENV) for sub in ("a", "b")]
        for p in procs:
            if p.wait() != 0:
                sys.exit("profile generation failed")
    # Round-robin over workloads and generator runs (names are
    # DIR/WORKLOAD-NNNN.pb.gz): every workload is equally in the pool, also
    # when merge_engine.sh has cached 1,008.
    def key(path):
        run, name = os.path.basename(os.path.dirname(path)), os.path.basename(path)
        workload, _, num = name.split(".")[0].rpartition("-")
        return (num, run, workload)
    return sorted(pool_files(), key=key)[:max(pool_size, 1)]


def pool_files():
    return sorted(glob.glob(os.path.join(POOL_DIR, "*", "*.pb.gz")))


_seq = [0]


def fresh_dir(tag):
    """A new directory under build/bench/run/. Directories are only removed at
    the end: on ext4 without a journal, creating files right after deleting
    thousands makes inode allocation scan the recently deleted ones."""
    _seq[0] += 1
    d = os.path.join(RUN, f"{tag}-{_seq[0]}")
    os.makedirs(d)
    return d


def creation_us(n=100):
    """Microseconds to create one empty file in a new directory under RUN
    (the files stay until the end, like every other)."""
    d = fresh_dir("create-probe")
    t0 = time.perf_counter()
    for i in range(n):
        os.close(os.open(os.path.join(d, str(i)), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return (time.perf_counter() - t0) / n * 1e6


# Creating a file costs about 10 µs here, but 80-400 µs for minutes after
# thousands of files nearby were removed (a `make test` just before, the
# previous bench's clean-up): ext4 without a journal skips, one buffer
# lookup each, every free inode of the group deleted in the last 60 s, or
# 360 s while its inode-table block is dirty, and each create dirties that
# block again. That is up to half a submit's CPU, charged to whoever
# creates files: the submit runs wait it out (docs/performance.md). A file
# system where creating a file is always slower waits the whole cap once:
# --create-wait 0 skips the wait.
CREATE_SLOW_US = 50


def settle_file_creation(max_wait_s):
    """Probes file creation and, while it costs over CREATE_SLOW_US, waits
    in 15-s steps up to max_wait_s. Returns (µs per file, seconds waited,
    whether it gave up at the cap)."""
    waited, cost = 0, creation_us()
    while cost > CREATE_SLOW_US and waited < max_wait_s:
        log(f"creating a file costs {cost:.0f} µs (over {CREATE_SLOW_US}; usually files removed "
            f"nearby in the last minutes): waiting, {waited} of at most {max_wait_s} s")
        time.sleep(15)
        waited += 15
        cost = creation_us()
    gave_up = cost > CREATE_SLOW_US and max_wait_s > 0
    if gave_up:
        log(f"gave up waiting after {waited} s: creating a file still costs {cost:.0f} µs "
            f"(files removed nearby, or a slow file system)")
    return cost, waited, gave_up


def make_store(pool, n, tag):
    d = fresh_dir(f"{tag}-{n}")
    base = 1764000000000
    for i in range(n):
        shutil.copyfile(pool[i % len(pool)], os.path.join(d, f"{base + i}_{i}.pgo"))
    return d


def keyfiles():
    sk, mk = os.path.join(RUN, "submit_keys"), os.path.join(RUN, "merge_keys")
    for path, key in ((sk, SUBMIT_KEY), (mk, MERGE_KEY)):
        with open(path, "w") as f:
            f.write(key + "\n")
        os.chmod(path, 0o600)
    return sk, mk


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- servers -------------------------------------------------------------------

class Server:
    def __init__(self, kind, directory, log_level="warn"):
        # Every server starts with nothing waiting for the disk: the
        # reference never fsyncs, so after its run tens of MB it wrote are
        # still dirty, and the next server's first fsyncs could
        # write them out for it.
        os.sync()
        self.kind = kind
        self.dir = directory
        self.port = free_port()
        sk, mk = keyfiles()
        env = dict(os.environ, PGOF_BIND_ADDRESS=f"127.0.0.1:{self.port}",
                   PGOF_DIRECTORY=directory, PGOF_SUBMIT_AUTH_KEYS_FILE=sk,
                   PGOF_MERGE_AUTH_KEYS_FILE=mk, PGOF_LOG_LEVEL=log_level)
        self.log_path = os.path.join(RUN, f"{kind}-{self.port}.log")
        binary = collector_binary() if kind == "ours" else REFSERVER
        self.t_exec = time.monotonic()
        self.proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log_path, "w"))
        self.pid = self.proc.pid

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_healthy(self, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {open(self.log_path).read()[-500:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    c.close()
                    return time.monotonic()
            except OSError:
                time.sleep(0.002)
        raise RuntimeError(f"{self.kind} did not answer /healthz")

    def wait_loaded(self, timeout=120):
        """Ours: until /metrics says the store is loaded."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            c.request("GET", "/metrics")
            body = c.getresponse().read().decode()
            c.close()
            if re.search(r"^pgof_store_ready 1$", body, re.M):
                return
            time.sleep(0.01)
        raise RuntimeError("store not loaded")

    def cpu_seconds(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status_kb(self, field):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def reset_peak(self):
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.kind == "ours" and self.proc.returncode not in (0, -15):
            raise RuntimeError(f"collector exited with {self.proc.returncode}")


def post(conn, path, key, body=None):
    """One request on a keep-alive connection; returns (status, body bytes, seconds)."""
    headers = {"Authorization": f"Bearer {key}"}
    if body is not None:
        headers["Content-Type"] = "application/octet-stream"
    t0 = time.perf_counter()
    conn.request("POST", path, body=body if body is not None else b"", headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, data, time.perf_counter() - t0


def connect(srv, timeout=600):
    return http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)


def run_wrk(srv, seconds, threads=2, conns=32):
    env = dict(os.environ, BENCH_PROFILE=SUBMIT_PROFILE, BENCH_KEY=SUBMIT_KEY)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s",
                          "-s", os.path.join(ROOT, "test", "bench", "submit.lua"),
                          srv.url("/v1/submit")], env=env, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    m = re.search(r"^BENCH (.*)$", out, re.M)
    if m is None:
        raise RuntimeError(f"wrk printed no BENCH line:\n{out}")
    r = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def count_profiles(d):
    return sum(1 for n in os.listdir(d) if n.endswith(".pgo") and not n.startswith("."))


# ---- sections ------------------------------------------------------------------

def section_submit(args):
    say("## Submit throughput")
    say()
    create_us, waited, gave_up = settle_file_creation(args.create_wait)
    rows = {"ours": [], "ref": []}
    for run in range(args.runs):
        for kind in ("ours", "ref"):
            d = fresh_dir(f"submit-{kind}")
            srv = Server(kind, d)
            try:
                srv.wait_healthy()
                if kind == "ours":
                    srv.wait_loaded()
                c0 = srv.cpu_seconds()
                r = run_wrk(srv, args.duration)
                c1 = srv.cpu_seconds()
            finally:
                srv.stop()
            ok = r["requests"] - r["status"]
            r["cpu_per_1000"] = (c1 - c0) / max(ok, 1) * 1000
            r["stored"] = count_profiles(d)
            if r["status"] or r["errors"] or r["stored"] < ok:
                raise RuntimeError(f"{kind}: {r['status']} non-2xx answers, {r['errors']} "
                                   f"socket errors, {r['stored']} files for {ok} answers")
            rows[kind].append(r)
            log(f"submit run {run + 1} {kind}: {r['rps']:.0f} req/s p50 {r['p50_us'] / 1000:.1f} ms "
                f"p99 {r['p99_us'] / 1000:.1f} ms, {r['cpu_per_1000']:.2f} CPU s/1000")
    ratios = [o["rps"] / f["rps"] for o, f in zip(rows["ours"], rows["ref"])]
    say(f"wrk -t2 -c32 -d{args.duration}s, {os.path.getsize(SUBMIT_PROFILE):,} byte gzip profile, "
        f"{args.runs} alternating runs, medians:")
    say()
    say("| server | req/s | p50 | p99 | CPU s per 1,000 profiles | stored durably |")
    say("|---|---|---|---|---|---|")
    for kind, name in (("ours", "pgof-collector"), ("ref", "Go reference (google/pprof)")):
        rs = rows[kind]
        say(f"| {name} | {median([r['rps'] for r in rs]):.0f} | "
            f"{median([r['p50_us'] for r in rs]) / 1000:.1f} ms | "
            f"{median([r['p99_us'] for r in rs]) / 1000:.1f} ms | "
            f"{median([r['cpu_per_1000'] for r in rs]):.2f} | "
            f"{'yes (fsync, rename, dir fsync)' if kind == 'ours' else 'no (WriteFile, no fsync)'} |")
    say()
    say(f"Same-run throughput ratio ours/ref: median {median(ratios):.1f}x "
        f"(runs: {', '.join(f'{x:.1f}' for x in ratios)}). "
        f"Targets: >= 3,000/s, >= 5x, p99 < 20 ms.")
    say()
    if gave_up:
        wait_note = (f", still over {CREATE_SLOW_US} µs after the {waited}-s wait gave up "
                     f"(files removed nearby, or a slow file system): these runs paid for it")
    elif waited:
        wait_note = f", after waiting {waited} s for it to fall under {CREATE_SLOW_US} µs"
    else:
        wait_note = ""
    say(f"Creating a file before the runs: {create_us:.0f} µs{wait_note}.")
    say()
    results["submit"] = {"rows": rows, "ratios": ratios, "create_us": create_us,
                         "create_wait_s": waited}


def time_pprof(files, cwd, runs):
    pprof = os.path.join(subprocess.run(["go", "env", "GOTOOLDIR"], env=GOENV, check=True,
                                        stdout=subprocess.PIPE, text=True).stdout.strip(), "pprof")
    env = dict(GOENV, PPROF_TMPDIR=os.path.join(RUN, "pproftmp"))
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([pprof, "-proto"] + files, cwd=cwd, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ts.append(time.perf_counter() - t0)
    return ts


def section_merge(args, pool):
    say("## Merge latency")
    say()
    rows = []
    body = open(SUBMIT_PROFILE, "rb").read()
    for n in args.sizes:
        d = make_store(pool, n, "merge")
        files = sorted(os.listdir(d))
        reps = args.merge_reps
        slow_reps = 3 if n <= 1000 else 1
        if args.quick:
            slow_reps = 1
        srv = Server("ours", d)
        try:
            srv.wait_healthy()
            srv.wait_loaded()
            c = connect(srv)
            st, data, first = post(c, "/v1/merge", MERGE_KEY)
            assert st == 200, st
            merged_bytes = len(data)
            cached = [post(c, "/v1/merge", MERGE_KEY)[2] for _ in range(reps)]
            # The first submit of the bench profile adds its stacks to the
            # aggregate (new samples, locations, strings): that merge encodes
            # more than one after a submit that only changes values.
            st, _, _ = post(c, "/v1/submit", SUBMIT_KEY, body)
            assert st == 204, st
            st, _, fresh_new = post(c, "/v1/merge", MERGE_KEY)
            assert st == 200, st
            fresh = []
            for _ in range(reps):
                st, _, _ = post(c, "/v1/submit", SUBMIT_KEY, body)
                assert st == 204, st
                st, data, t = post(c, "/v1/merge", MERGE_KEY)
                assert st == 200, st
                fresh.append(t)
            c.close()
        finally:
            srv.stop()
        # The reference merges the same files (a copy: ours added some).
        dref = fresh_dir(f"merge-ref-{n}")
        for f in files:
            shutil.copyfile(os.path.join(d, f), os.path.join(dref, f))
        ref = Server("ref", dref)
        try:
            ref.wait_healthy()
            c = connect(ref)
            ref.reset_peak()
            ref_t = []
            for _ in range(slow_reps):
                st, _, t = post(c, "/v1/merge", MERGE_KEY)
                assert st == 200, st
                ref_t.append(t)
            ref_hwm = ref.status_kb("VmHWM")
            c.close()
        finally:
            ref.stop()
        pp = time_pprof(files, dref, slow_reps)
        row = {"n": n, "first": first, "cached": median(cached), "fresh": median(fresh),
               "fresh_new": fresh_new,
               "ref": median(ref_t), "pprof": median(pp), "ref_hwm_kb": ref_hwm,
               "merged_bytes": merged_bytes}
        rows.append(row)
        log(f"merge n={n}: ours first {first * 1000:.1f} ms, cached {row['cached'] * 1000:.2f} ms, "
            f"fresh {row['fresh'] * 1000:.1f} ms; ref {row['ref'] * 1000:.0f} ms; "
            f"pprof {row['pprof'] * 1000:.0f} ms")
    say(f"POST /v1/merge on a keep-alive connection, ours: medians of {args.merge_reps} (cached: "
        "repeated merges; fresh: each right after one more accepted submit of the bench "
        "profile, so the aggregate is encoded again; new stacks: the one merge after that "
        "profile's first submit, which added its stacks). ref and go tool pprof -proto: median "
        "of 3 runs (1 at 10,000).")
    say()
    say("| stored | ours cached | ours fresh | ours fresh, new stacks | ours first after load "
        "| ref merge | go tool pprof -proto | pprof / ours fresh | ref / ours fresh | merged gzip |")
    say("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        say(f"| {r['n']:,} | {r['cached'] * 1000:.2f} ms | {r['fresh'] * 1000:.1f} ms | "
            f"{r['fresh_new'] * 1000:.1f} ms | "
            f"{r['first'] * 1000:.1f} ms | {r['ref'] * 1000:.0f} ms | {r['pprof'] * 1000:.0f} ms | "
            f"{r['pprof'] / r['fresh']:.0f}x | {r['ref'] / r['fresh']:.0f}x | "
            f"{r['merged_bytes'] / 1024:.0f} KiB |")
    say()
    if len(rows) > 1:
        lo, hi = rows[0], rows[-1]
        say(f"Fresh merge at {hi['n']:,} / at {lo['n']:,}: {hi['fresh'] / lo['fresh']:.1f}x "
            f"(cached: {hi['cached'] / lo['cached']:.1f}x; new stacks: "
            f"{hi['fresh_new'] / lo['fresh_new']:.1f}x). Target: within 2x. "
            f"ref peak RSS during its merge at {hi['n']:,}: {hi['ref_hwm_kb'] / 1024:.0f} MiB.")
        say()
    results["merge"] = rows


def section_startup(args, pool):
    say("## Start-up")
    say()
    n = args.big
    d = make_store(pool, n, "startup")
    srv = Server("ours", d, log_level="info")
    lat, merge_done = [], {}
    try:
        t_healthy = srv.wait_healthy()

        def merger():
            c = connect(srv)
            st, _, _ = post(c, "/v1/merge", MERGE_KEY)
            merge_done["t"] = time.monotonic()
            merge_done["status"] = st
            c.close()
        th = threading.Thread(target=merger)
        th.start()
        c = connect(srv, timeout=10)
        while th.is_alive():
            t0 = time.perf_counter()
            c.request("GET", "/healthz")
            c.getresponse().read()
            lat.append(time.perf_counter() - t0)
            time.sleep(0.005)
        th.join()
        c.close()
    finally:
        srv.stop()
    text = open(srv.log_path).read()
    m = re.search(r"store: loaded (\d+) profile", text)
    lat.sort()
    row = {"n": n, "healthy": t_healthy - srv.t_exec, "merge": merge_done["t"] - srv.t_exec,
           "status": merge_done["status"], "healthz_n": len(lat),
           "healthz_p50": lat[len(lat) // 2] if lat else 0,
           "healthz_p99": lat[int(len(lat) * 0.99)] if lat else 0,
           "healthz_max": lat[-1] if lat else 0, "loaded": int(m.group(1)) if m else -1}
    say(f"{n:,} stored profiles; time from exec; /healthz polled every 5 ms on a keep-alive "
        "connection while the aggregate is rebuilt on the threadpool.")
    say()
    say("| first /healthz 200 | first /v1/merge 200 | /healthz answers during load | "
        "/healthz p50 | p99 | max |")
    say("|---|---|---|---|---|---|")
    say(f"| {row['healthy'] * 1000:.0f} ms | {row['merge'] * 1000:.0f} ms | {row['healthz_n']} | "
        f"{row['healthz_p50'] * 1000:.2f} ms | {row['healthz_p99'] * 1000:.2f} ms | "
        f"{row['healthz_max'] * 1000:.2f} ms |")
    say()
    say(f"(The reference has no start-up work; its first merge at {n:,} is its merge latency "
        "in the table above.)")
    say()
    results["startup"] = row


def loop_run(args, pool, kind):
    """One loop-responsiveness run against a fresh server of kind."""
    d = make_store(pool, args.loop_stored, f"loop-{kind}")
    srv = Server(kind, d)
    lat, combines, stop = [], [], threading.Event()
    try:
        srv.wait_healthy()
        if kind == "ours":
            srv.wait_loaded()
        wrk_result = {}
        wt = threading.Thread(target=lambda: wrk_result.update(run_wrk(srv, args.duration)))

        def combiner():
            c = connect(srv)
            while not stop.is_set():
                st, _, t = post(c, "/v1/merge?and_combine=true", MERGE_KEY)
                combines.append((st, t))
            c.close()
        ct = threading.Thread(target=combiner)
        wt.start()
        time.sleep(0.2)
        ct.start()
        c = connect(srv, timeout=30)
        while wt.is_alive():
            t0 = time.perf_counter()
            c.request("GET", "/healthz")
            c.getresponse().read()
            lat.append(time.perf_counter() - t0)
            time.sleep(0.01)
        stop.set()
        ct.join()
        c.close()
    finally:
        stop.set()
        srv.stop()
    lat.sort()
    return {"p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)],
            "max": lat[-1], "n": len(lat), "rps": wrk_result.get("rps", 0),
            "combines": sum(1 for s, _ in combines if s == 200),
            "combine_ms": median([t for s, t in combines if s == 200]) * 1000}


def section_loop(args, pool):
    say("## Loop responsiveness")
    say()
    runs = {"ours": [], "ref": []}
    for run in range(args.loop_runs):
        for kind in ("ours", "ref"):
            r = loop_run(args, pool, kind)
            runs[kind].append(r)
            log(f"loop run {run + 1} {kind}: healthz p99 {r['p99'] * 1000:.2f} ms, "
                f"{r['combines']} combines, {r['rps']:.0f} submits/s")
    say(f"{args.loop_stored:,} profiles stored at the start; wrk -t2 -c32 -d{args.duration}s "
        "submitting; combines back to back on another connection; /healthz every 10 ms; "
        f"{args.loop_runs} alternating runs, medians.")
    say()
    say("| server | /healthz p50 | p99 | max | samples | submits/s meanwhile | "
        "combines (median ms) | p99 per run |")
    say("|---|---|---|---|---|---|---|---|")
    rows = {}
    for kind, name in (("ours", "pgof-collector"), ("ref", "Go reference")):
        rs = runs[kind]
        r = rows[kind] = {k: median([x[k] for x in rs]) for k in rs[0]}
        per_run = ", ".join(f"{x['p99'] * 1000:.1f}" for x in rs)
        say(f"| {name} | {r['p50'] * 1000:.2f} ms | {r['p99'] * 1000:.2f} ms | "
            f"{r['max'] * 1000:.2f} ms | {r['n']:.0f} | {r['rps']:.0f} | "
            f"{r['combines']:.0f} ({r['combine_ms']:.0f}) | "
            f"{per_run} |")
    say()
    say("Target: /healthz p99 under 5 ms.")
    say()
    results["loop"] = {"medians": rows, "runs": runs}


def section_memory(args, pool):
    say("## Memory")
    say()
    n = args.big
    rows = {}
    body = open(SUBMIT_PROFILE, "rb").read()
    for kind in ("ours", "ref"):
        # Idle: an empty directory.
        srv = Server(kind, fresh_dir(f"mem-idle-{kind}"))
        try:
            srv.wait_healthy()
            if kind == "ours":
                srv.wait_loaded()
            time.sleep(0.3)
            idle = srv.status_kb("VmRSS")
        finally:
            srv.stop()
        d = make_store(pool, n, f"mem-{kind}")
        srv = Server(kind, d)
        try:
            srv.wait_healthy()
            if kind == "ours":
                srv.wait_loaded()
            loaded_hwm = srv.status_kb("VmHWM")
            loaded = srv.status_kb("VmRSS")
            c = connect(srv)
            if kind == "ours":
                post(c, "/v1/submit", SUBMIT_KEY, body)  # so the merge encodes
            srv.reset_peak()
            st, data, _ = post(c, "/v1/merge", MERGE_KEY)
            assert st == 200
            merge_peak = srv.status_kb("VmHWM")
            srv.reset_peak()
            st, _, _ = post(c, "/v1/merge?and_combine=true", MERGE_KEY)
            assert st == 200
            combine_peak = srv.status_kb("VmHWM")
            after = srv.status_kb("VmRSS")
            c.close()
        finally:
            srv.stop()
        rows[kind] = {"idle": idle, "loaded": loaded, "load_peak": loaded_hwm,
                      "merge_peak": merge_peak, "combine_peak": combine_peak, "after": after,
                      "merged_bytes": len(data)}
        log(f"memory {kind}: {rows[kind]}")
    say(f"KiB of RSS (/proc/PID/status). Peaks are VmHWM after resetting it through "
        f"/proc/PID/clear_refs just before the request. {n:,} stored profiles "
        f"({sum(os.path.getsize(pool[i % len(pool)]) for i in range(n)) / 1e6:.0f} MB of gzip).")
    say()
    say("| server | idle (empty dir) | after loading | peak while loading | peak during merge "
        "| peak during combine | merged gzip |")
    say("|---|---|---|---|---|---|---|")
    for kind, name in (("ours", "pgof-collector"), ("ref", "Go reference")):
        r = rows[kind]
        say(f"| {name} | {r['idle'] / 1024:.1f} MiB | {r['loaded'] / 1024:.1f} MiB | "
            f"{r['load_peak'] / 1024:.1f} MiB | {r['merge_peak'] / 1024:.1f} MiB | "
            f"{r['combine_peak'] / 1024:.1f} MiB | {r['merged_bytes'] / 1024:.0f} KiB |")
    say()
    say("Target: idle under 10 MB; peak proportional to the merged profile, not to the inputs.")
    say()
    results["memory"] = rows


def section_offline(args, pool):
    say("## Offline merge")
    say()
    n = args.offline_n
    everything = pool if args.quick else pool_files()
    if len(everything) >= n:
        files = everything[:n]
        src = "distinct profiles"
    else:
        d = make_store(pool, n, "offline")
        files = [os.path.join(d, f) for f in sorted(os.listdir(d))]
        src = f"copies of {len(pool)} distinct profiles"
    pprof = os.path.join(subprocess.run(["go", "env", "GOTOOLDIR"], env=GOENV, check=True,
                                        stdout=subprocess.PIPE, text=True).stdout.strip(), "pprof")
    listfile = os.path.join(RUN, "offline-files.txt")
    with open(listfile, "w") as f:
        f.write(" ".join(files))
    out_ours = os.path.join(RUN, "offline-ours.pgo")
    out_pprof = os.path.join(RUN, "offline-pprof.pb.gz")
    env = dict(GOENV, FILES=" ".join(files), PPROF_TMPDIR=os.path.join(RUN, "pproftmp"))
    hf = os.path.join(RUN, "offline-hyperfine.json")
    pgof = os.path.join(ROOT, "build", "pgof")
    runs = 2 if args.quick else 10
    subprocess.run(["hyperfine", "--style", "basic", "--warmup", "1", "--runs", str(runs),
                    "--export-json", hf,
                    "-n", "pgof", f"{pgof} merge -q -o {out_ours} $FILES",
                    "-n", "pprof", f"{pprof} -proto $FILES > {out_pprof} 2>/dev/null"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    res = {r["command"]: r for r in json.load(open(hf))["results"]}

    def rss(cmd, **kw):
        p = subprocess.run(["/usr/bin/time", "-v"] + cmd, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, **kw)
        return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    rss_ours = rss([pgof, "merge", "-q", "-o", out_ours] + files)
    rss_pprof = rss([pprof, "-proto", "-output", out_pprof] + files)
    o, p = res["pgof"], res["pprof"]
    say(f"{n:,} {src}; hyperfine, 1 warm-up + {runs} runs; peak RSS from /usr/bin/time -v.")
    say()
    say("| command | wall median | wall min | CPU (user+sys, mean) | peak RSS |")
    say("|---|---|---|---|---|")
    say(f"| pgof merge | {o['median'] * 1000:.0f} ms | {o['min'] * 1000:.0f} ms | "
        f"{(o['user'] + o['system']) * 1000:.0f} ms | {rss_ours / 1024:.1f} MiB |")
    say(f"| go tool pprof -proto | {p['median'] * 1000:.0f} ms | {p['min'] * 1000:.0f} ms | "
        f"{(p['user'] + p['system']) * 1000:.0f} ms | {rss_pprof / 1024:.1f} MiB |")
    say()
    say(f"Ratios: {p['median'] / o['median']:.1f}x faster (median wall), "
        f"{p['min'] / o['min']:.1f}x (best), {rss_ours / rss_pprof:.2f} of the peak memory. "
        "Targets: 10x, 1/4.")
    say()
    results["offline"] = {"ours": o, "pprof": p, "rss_ours": rss_ours, "rss_pprof": rss_pprof}


def main():
    # SIGTERM (make interrupted, a timeout) runs the finally blocks that stop
    # the servers and remove build/bench/run/<pid>.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sections", default="submit,merge,startup,loop,memory,offline")
    ap.add_argument("--runs", type=int, default=5, help="submit runs per server")
    ap.add_argument("--duration", type=int, default=10, help="wrk seconds")
    ap.add_argument("--pool", type=int, default=256, help="distinct profiles to copy from")
    ap.add_argument("--quick", action="store_true", help="smoke mode: seconds, small sets")
    ap.add_argument("--keep", action="store_true", help="keep build/bench/run/")
    ap.add_argument("--create-wait", type=int, default=240, metavar="S",
                    help="most seconds to wait for file creation to cost under "
                         f"{CREATE_SLOW_US} µs before the submit runs (0: do not wait)")
    args = ap.parse_args()
    args.sizes = [10, 100, 1000, 10000]
    args.big = 10000
    args.merge_reps = 9
    args.loop_stored = 1000
    args.loop_runs = 3
    args.offline_n = 1000
    if args.quick:
        args.runs, args.duration, args.pool, args.create_wait = 1, 1, 16, 0
        args.sizes, args.big, args.merge_reps, args.loop_stored, args.offline_n = \
            [10, 40], 40, 3, 20, 20
        args.loop_runs = 1
    sections = args.sections.split(",")
    pool = prepare(args.pool, args.quick)
    t0 = time.monotonic()
    say("# pgof-collector benchmark")
    say()
    say(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, "
        f"{open('/etc/debian_version').read().strip() if os.path.exists('/etc/debian_version') else ''} "
        f"Debian, {subprocess.run(['go', 'version'], stdout=subprocess.PIPE, text=True).stdout.strip()}; "
        f"collector {collector_binary()}; pool of {len(pool)} distinct profiles.")
    say()
    try:
        for s in sections:
            {"submit": lambda: section_submit(args),
             "merge": lambda: section_merge(args, pool),
             "startup": lambda: section_startup(args, pool),
             "loop": lambda: section_loop(args, pool),
             "memory": lambda: section_memory(args, pool),
             "offline": lambda: section_offline(args, pool)}[s]()
    finally:
        if not args.keep:
            shutil.rmtree(RUN, ignore_errors=True)
    say(f"(took {time.monotonic() - t0:.0f} s)")
    suffix = "-quick" if args.quick else ""
    with open(os.path.join(OUT, f"collector{suffix}.md"), "w") as f:
        f.write("\n".join(report) + "\n")
    with open(os.path.join(OUT, f"collector{suffix}.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
