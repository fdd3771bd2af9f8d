"""Operations of pgof-collector (issue 4): configuration and start-up errors,
bind addresses, key reload by SIGHUP, logging, graceful shutdown."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from collector_helpers import (BINARY, MERGE_KEY, SANITIZED, SLOW, SUBMIT_KEY,  # noqa: F401
                               Collector, collector, fixture, make_collector, read_response,
                               wait_for)


def run_expect_fail(tmp_path, env):
    base = Collector(tmp_path).env
    base.update(env)
    p = subprocess.run([BINARY], env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30 * SLOW, cwd=str(tmp_path))
    err = p.stderr.decode()
    lines = [l for l in err.splitlines() if l.strip()]
    return p.returncode, lines


@pytest.mark.parametrize("var,value,needle", [
    ("PGOF_SUBMIT_AUTH_KEYS_FILE", "/nonexistent/keys", "No such file"),
    ("PGOF_MERGE_AUTH_KEYS_FILE", "/nonexistent/keys", "No such file"),
    ("PGOF_BIND_ADDRESS", "nonsense", "host:port"),
    ("PGOF_BIND_ADDRESS", "127.0.0.1:99999", "bad port"),
    ("PGOF_BIND_ADDRESS", "::1:8080", "brackets"),
    ("PGOF_MAX_BODY_BYTES", "lots", "not a size"),
    ("PGOF_MAX_BODY_BYTES", "1", "between"),
    ("PGOF_IDLE_TIMEOUT", "-3", "seconds"),
    ("PGOF_REQUEST_TIMEOUT", "soon", "seconds"),
    ("PGOF_MAX_CONNECTIONS", "0", "between"),
    ("PGOF_LOG_LEVEL", "loud", "PGOF_LOG_LEVEL"),
    ("PGOF_METRICS_AUTH", "maybe", "none or merge"),
    ("PGOF_WORKER_THREADS", "0", "from 1 to 1024"),
    ("PGOF_WORKER_THREADS", "many", "from 1 to 1024"),
    ("PGOF_WORKER_NICE", "20", "from 0 to 19"),
])
def test_bad_configuration_is_one_line_and_exit_1(tmp_path, var, value, needle):
    rc, lines = run_expect_fail(tmp_path, {var: value})
    assert rc == 1
    assert len(lines) == 1, lines
    assert var in lines[0] and needle in lines[0], lines[0]


def test_empty_key_file_and_unusable_directory(tmp_path):
    empty = tmp_path / "empty_keys"
    empty.write_text("# only a comment\n\n   \n")
    rc, lines = run_expect_fail(tmp_path, {"PGOF_SUBMIT_AUTH_KEYS_FILE": str(empty)})
    assert rc == 1 and len(lines) == 1
    assert "PGOF_SUBMIT_AUTH_KEYS_FILE" in lines[0] and "no key" in lines[0]
    f = tmp_path / "a_file"
    f.write_text("x")
    rc, lines = run_expect_fail(tmp_path, {"PGOF_DIRECTORY": str(f)})
    assert rc == 1 and len(lines) == 1 and "PGOF_DIRECTORY" in lines[0]
    rc, lines = run_expect_fail(tmp_path, {"PGOF_DIRECTORY": str(f / "sub")})
    assert rc == 1 and len(lines) == 1 and "PGOF_DIRECTORY" in lines[0]


def test_port_in_use(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        rc, lines = run_expect_fail(tmp_path,
                                    {"PGOF_BIND_ADDRESS": f"127.0.0.1:{s.getsockname()[1]}"})
    finally:
        s.close()
    assert rc == 1 and len(lines) == 1
    assert "PGOF_BIND_ADDRESS" in lines[0] and "address already in use" in lines[0]


def test_directory_is_created(make_collector, tmp_path):
    d = tmp_path / "a" / "b" / "c"
    c = make_collector(directory=str(d))
    assert d.is_dir()
    assert c.submit(fixture("fib.pb.gz"))[0] == 204


def test_startup_log_has_effective_config(collector):
    log = collector.log()
    assert "pgof-collector started" in log
    for k in ("bind=127.0.0.1:0", "max_body=", "idle_timeout=", "directory=", "malloc_arenas="):
        assert k in log
    assert SUBMIT_KEY not in log and MERGE_KEY not in log


def _threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def _cpus():
    """The CPUs the collector counts (config_cpus): affinity, cgroup quota."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        if quota != "max":
            cpus = min(cpus, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return min(16, cpus)


@pytest.mark.parametrize("env,want", [
    ({"PGOF_WORKER_THREADS": "6", "UV_THREADPOOL_SIZE": "2"}, 6),
    ({"PGOF_WORKER_THREADS": "", "UV_THREADPOOL_SIZE": "3"}, 3),
    ({"PGOF_WORKER_THREADS": "", "UV_THREADPOOL_SIZE": ""}, None),
])
def test_worker_threads_size_the_threadpool(make_collector, env, want):
    """PGOF_WORKER_THREADS sets libuv's threadpool (the load at start-up
    already ran on it, so every thread exists); unset, UV_THREADPOOL_SIZE
    stands; with neither, 4 per CPU. The process is the loop thread plus
    the pool."""
    if want is None:
        want = 4 * _cpus()
    c = make_collector(env=env)
    assert f"worker_threads={want}" in c.log()
    assert c.submit(fixture("fib.pb.gz"))[0] == 204
    assert _threads(c.proc.pid) == 1 + want


def _nices(pid):
    """The nice value of each of the process's threads (field 19 of stat)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            out[int(tid)] = int(f.read().rsplit(")", 1)[1].split()[16])
    return out


@pytest.mark.parametrize("value,delta", [(None, 5), ("0", 0), ("12", 12)])
def test_worker_nice(make_collector, value, delta):
    """Worker threads that ran a job of ours run PGOF_WORKER_NICE (5 by
    default) nicer than the process; the loop thread keeps the process's."""
    env = {"PGOF_WORKER_THREADS": "2"}
    if value is not None:
        env["PGOF_WORKER_NICE"] = value
    c = make_collector(env=env)
    assert f"worker_nice={delta}" in c.log()
    body = fixture("fib.pb.gz")
    threads = [threading.Thread(target=c.submit, args=(body,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    nices = _nices(c.proc.pid)
    base = nices.pop(c.proc.pid)
    assert set(nices.values()) <= {base, min(19, base + delta)}, nices
    assert min(19, base + delta) in nices.values(), nices


def _arena_heaps(pid):
    """glibc's heaps of non-main malloc arenas: an anonymous rw-p mapping that
    starts on a 64 MiB boundary and, with the PROT_NONE rest of its
    reservation right after it, spans exactly 64 MiB (glibc 2.36's heap size
    on 64 bits; an arena grown past one heap would count twice, and named
    mappings or huge-page heaps would not count)."""
    maps = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            maps.append((lo, hi, fields[1], len(fields) == 5))
    size = 64 << 20
    n = 0
    for i, (lo, hi, perms, anon) in enumerate(maps):
        if not anon or perms != "rw-p" or lo % size:
            continue
        end = hi
        if i + 1 < len(maps) and maps[i + 1][0] == hi and maps[i + 1][2] == "---p":
            end = maps[i + 1][1]
        n += end - lo == size
    return n


@pytest.mark.skipif(SANITIZED, reason="ASan's allocator has no glibc arenas")
@pytest.mark.parametrize("operator", [None, "MALLOC_ARENA_MAX=8",
                                      "GLIBC_TUNABLES=glibc.malloc.arena_max=8"])
def test_pool_threads_share_one_malloc_arena_per_cpu(make_collector, operator):
    """On 2 CPUs, eight pool threads that decoded, merged and encoded share
    the second of 2 malloc arenas (the main one has no 64 MiB heap), instead
    of each warming a heap of its own; the log says so. An operator's limit
    stands."""
    c = make_collector(env={"PGOF_WORKER_THREADS": "8"}, start=False)
    for k in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES"):
        c.env.pop(k, None)
    if operator:
        k, v = operator.split("=", 1)
        c.env[k] = v
    # The collector counts the CPUs it may run on: two, whatever the machine.
    mask = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(mask)[:2])
    try:
        c.start()
    finally:
        os.sched_setaffinity(0, mask)
    bodies = [fixture(n) for n in ("fib.pb.gz", "mixed.pb.gz", "sort.pb.gz", "json.pb.gz")]
    for _ in range(4):
        threads = [threading.Thread(target=c.submit, args=(bodies[i % 4],)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert c.merge()[0] == 200
    assert len(c.stored()) == 64
    heaps = _arena_heaps(c.proc.pid)
    if operator:
        assert "malloc_arenas=environment" in c.log()
        assert heaps >= 2, heaps
    else:
        assert "malloc_arenas=2" in c.log()
        assert heaps == 1, heaps


def test_bind_ipv6_loopback(make_collector):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    c = make_collector(env={"PGOF_BIND_ADDRESS": "[::1]:0"})
    assert c.host == "::1"
    s = socket.create_connection(("::1", c.port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
    st, _, body, _ = read_response(s)
    assert (st, body) == (200, b"OK")
    s.close()
    assert "listening on [::1]:" in c.log()


def test_bind_every_interface(make_collector):
    c = make_collector(env={"PGOF_BIND_ADDRESS": ":0"})
    s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
    st, _, body, _ = read_response(s)
    assert (st, body) == (200, b"OK")
    s.close()


def test_request_log_line(collector):
    collector.submit(fixture("fib.pb.gz"))
    # A hostile target is logged escaped and cut, never raw.
    collector.raw(b"GET /\xff\"" + b"a" * 400 + b" HTTP/1.1\r\nConnection: close\r\n\r\n")
    log = collector.log()
    assert '"GET /\\xff\\x22aaa' in log and 'aaa..." status=404' in log
    line = [l for l in log.splitlines() if '"POST /v1/submit"' in l][0]
    assert re.search(r"peer=127\.0\.0\.1:\d+ \"POST /v1/submit\" status=204 bytes_in=\d+ "
                     r"bytes_out=0 ms=\d+", line), line
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info ", line)


# ---- SIGHUP -----------------------------------------------------------------

def test_sighup_reloads_keys(collector):
    Collector.write_keys(collector.submit_keys_file, ["new-submit-key"])
    collector.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: collector.log().count("keys: reloaded") == 2, 10, "the reload")
    assert collector.submit(fixture("fib.pb.gz"), key="new-submit-key")[0] == 204
    assert collector.submit(fixture("fib.pb.gz"), key=SUBMIT_KEY)[0] == 403
    assert collector.merge()[0] == 200
    assert "new-submit-key" not in collector.log()


def test_sighup_with_broken_file_keeps_old_keys(collector):
    os.unlink(collector.submit_keys_file)
    with open(collector.merge_keys_file, "w") as f:
        f.write("# nothing\n")
    collector.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: collector.log().count("keeping the 1 old key(s)") == 2, 10, "the reload")
    assert collector.submit(fixture("fib.pb.gz"))[0] == 204
    assert collector.merge()[0] == 200
    _, _, m = collector.request("GET", "/metrics")
    assert b'pgof_key_reloads_total{result="error"} 2' in m


# ---- shutdown ---------------------------------------------------------------

def test_sigterm_finishes_inflight_upload(collector):
    data = fixture("mixed.pb.gz")
    s = collector.socket()
    s.sendall(b"POST /v1/submit HTTP/1.1\r\nAuthorization: Bearer " + SUBMIT_KEY.encode() +
              b"\r\nContent-Length: %d\r\n\r\n" % len(data) + data[:1000])
    wait_for(lambda: collector.temps() != [], 5, "the upload to start")
    collector.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "no longer accepting" in collector.log(), 5, "the shutdown to begin")
    # New connections are refused now.
    with pytest.raises(OSError):
        socket.create_connection((collector.host, collector.port), timeout=2).recv(1)
        raise OSError("accepted")
    s.sendall(data[1000:])
    st, h, _, _ = read_response(s)
    assert st == 204 and h["connection"] == "close"
    s.close()
    assert collector.proc.wait(10 * SLOW) == 0
    assert collector.temps() == []
    assert len(collector.stored()) == 1
    assert "shutdown: done" in collector.log()


def test_sigterm_cuts_stuck_upload_after_grace(make_collector):
    c = make_collector(env={"PGOF_SHUTDOWN_GRACE": "0.5"})
    s = c.socket()
    s.sendall(b"POST /v1/submit HTTP/1.1\r\nAuthorization: Bearer " + SUBMIT_KEY.encode() +
              b"\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100)
    wait_for(lambda: c.temps() != [], 5, "the upload to start")
    t0 = time.monotonic()
    idle = c.socket()  # an idle keep-alive connection is closed at once
    assert c.stop(signal.SIGINT) == 0
    assert time.monotonic() - t0 < 5 * SLOW
    assert c.temps() == []
    assert "grace time over" in c.log()
    s.close()
    idle.close()
