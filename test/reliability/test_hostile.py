"""Hostile input catalogue (issue 5, item 3): each input with the exact answer
the collector must give. After every input /healthz must still answer fast,
and at the end the collector exits 0 on SIGTERM with no sanitizer report
(so nothing crashed, hung or leaked). docs/reliability.md lists the
catalogue; count it with `pytest --collect-only -q test/reliability`."""
import gzip
import os
import socket
import sys
import time
import zlib

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "stress"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "collector"))

import ledger as L  # noqa: E402
from collector_helpers import (SANITIZED, SLOW, SUBMIT_KEY, Collector,  # noqa: E402,F401
                               make_collector, parse_responses, pb_field, pb_varint,
                               profile_stacks, read_all, wait_for)

A = f"Authorization: Bearer {SUBMIT_KEY}\r\n".encode()
SUB = b"POST /v1/submit HTTP/1.1\r\nHost: x\r\n" + A
ENV = {"PGOF_MAX_BODY_BYTES": "64K", "PGOF_MAX_PROFILE_BYTES": "1M"}


@pytest.fixture(scope="module")
def coll(tmp_path_factory):
    c = Collector(tmp_path_factory.mktemp("hostile"), env=ENV).start()
    yield c
    assert c.stop() == 0, c.log()[-3000:]
    c.check_clean()


def healthz_ms(c):
    t0 = time.monotonic()
    st, _, body = c.request("GET", "/healthz", timeout=5)
    assert (st, body) == (200, b"OK")
    return (time.monotonic() - t0) * 1000


def answer(c, data, shut=False):
    resp = c.raw(data, timeout=10, shut=shut)
    assert resp, "no answer"
    (status, headers, body), = parse_responses(resp)[:1]
    return status, headers, body


# (name, request bytes, status, body) -- every error body is one line.
CATALOGUE = [
    ("headers-too-large", b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
     431, b"request head too large\n"),
    ("too-many-headers", b"GET /healthz HTTP/1.1\r\n" +
     b"".join(b"X-H%d: 1\r\n" % i for i in range(101)) + b"\r\n",
     431, b"too many request headers\n"),
    ("request-line-1mb", b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\n\r\n",
     431, b"request head too large\n"),
    ("target-over-2048", b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\n\r\n",
     414, b"request target too long\n"),
    ("body-over-limit-declared", SUB + b"Content-Length: 70000\r\n\r\n",
     413, b"request body of 70000 bytes is larger than the limit of 65536 bytes\n"),
    ("body-over-limit-chunked", SUB + b"Transfer-Encoding: chunked\r\n\r\n" +
     (b"8000\r\n" + b"\x1f" * 0x8000 + b"\r\n") * 3 + b"0\r\n\r\n",
     413, b"request body larger than the limit of 65536 bytes\n"),
    ("chunk-size-not-hex", SUB + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
     400, b"bad request: Invalid character in chunk size\n"),
    ("chunk-size-negative", SUB + b"Transfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n",
     400, b"bad request: Invalid character in chunk size\n"),
    ("chunk-size-overflow", SUB + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
     400, b"bad request: Chunk size overflow\n"),
    ("chunk-data-without-crlf", SUB + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
     400, b"bad request: Invalid character in chunk size\n"),
    ("content-length-negative", SUB + b"Content-Length: -1\r\n\r\n",
     400, b"bad request: Invalid character in Content-Length\n"),
    ("content-length-overflow", SUB + b"Content-Length: 99999999999999999999999\r\n\r\n",
     400, b"bad request: Content-Length overflow\n"),
    ("content-length-twice-different", SUB + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
     400, b"bad request: Duplicate Content-Length\n"),
    ("content-length-twice-same", SUB + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
     400, b"bad request: Duplicate Content-Length\n"),
    ("content-length-list", SUB + b"Content-Length: 3, 3\r\n\r\nabc",
     400, b"bad request: Invalid character in Content-Length\n"),
    ("cl-and-te", SUB + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     400, b"bad request: Content-Length can't be present with Transfer-Encoding\n"),
    ("te-and-cl", SUB + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
     400, b"bad request: Content-Length can't be present with Transfer-Encoding\n"),
    ("te-chunked-twice", SUB + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", 400, b"bad request: Invalid `Transfer-Encoding` header value\n"),
    ("te-gzip-chunked", SUB + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
     501, b"unsupported Transfer-Encoding (only chunked)\n"),
    ("te-chunked-gzip", SUB + b"Transfer-Encoding: chunked, gzip\r\n\r\nabc",
     400, b"bad request: Invalid `Transfer-Encoding` header value\n"),
    ("te-gzip", SUB + b"Transfer-Encoding: gzip\r\n\r\nabc",
     501, b"unsupported Transfer-Encoding (only chunked)\n"),
    ("te-in-http-1.0", b"POST /v1/submit HTTP/1.0\r\n" + A +
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     400, b"bad request: Transfer-Encoding in an HTTP/1.0 request\n"),
    ("te-with-space-before-colon", SUB + b"Transfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n"
     b"abc", 400, b"bad request: Invalid header field char\n"),
    ("space-before-colon", b"GET /healthz HTTP/1.1\r\nX-A : x\r\n\r\n",
     400, b"bad request: white space in a header name\n"),
    ("obs-fold", b"GET /healthz HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n",
     400, b"bad request: Unexpected whitespace after header value\n"),
    ("bare-lf", b"GET /healthz HTTP/1.1\nHost: x\n\n",
     400, b"bad request: Invalid header value char\n"),
    ("nul-in-header", b"GET /healthz HTTP/1.1\r\nX-A: a\0b\r\n\r\n",
     400, b"bad request: Invalid header value char\n"),
    ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
     400, b"bad request: Pause on PRI/Upgrade\n"),
    ("http-version-2.1", b"GET /healthz HTTP/2.1\r\n\r\n",
     400, b"bad request: Invalid HTTP version\n"),
    ("http-0.9", b"GET /healthz\r\n\r\n", 505, b"only HTTP/1.0 and HTTP/1.1 are supported\n"),
    ("target-not-utf8", b"GET /\xff\xfe\x80 HTTP/1.1\r\n\r\n", 404, b"not found\n"),
    ("auth-basic", b"POST /v1/submit HTTP/1.1\r\nAuthorization: Basic dTpw\r\n"
     b"Content-Length: 0\r\n\r\n", 401, b"malformed Authorization header (want: Bearer <key>)\n"),
    ("auth-token-scheme", b"POST /v1/submit HTTP/1.1\r\nAuthorization: Token " +
     SUBMIT_KEY.encode() + b"\r\nContent-Length: 0\r\n\r\n",
     401, b"malformed Authorization header (want: Bearer <key>)\n"),
    ("auth-bearer-no-key", b"POST /v1/submit HTTP/1.1\r\nAuthorization: Bearer\r\n"
     b"Content-Length: 0\r\n\r\n", 401, b"malformed Authorization header (want: Bearer <key>)\n"),
    ("auth-bearer-space-only", b"POST /v1/submit HTTP/1.1\r\nAuthorization: Bearer \r\n"
     b"Content-Length: 0\r\n\r\n", 401, b"malformed Authorization header (want: Bearer <key>)\n"),
    ("auth-twice", SUB + A + b"Content-Length: 0\r\n\r\n",
     401, b"more than one Authorization header\n"),
    ("auth-key-10kb", b"POST /v1/submit HTTP/1.1\r\nAuthorization: Bearer " + b"k" * 10000 +
     b"\r\nContent-Length: 0\r\n\r\n", 403, b"key not accepted\n"),
    ("auth-key-60kb", b"POST /v1/submit HTTP/1.1\r\nAuthorization: Bearer " + b"k" * 60000 +
     b"\r\nContent-Length: 0\r\n\r\n", 403, b"key not accepted\n"),
    ("auth-key-prefix", b"POST /v1/submit HTTP/1.1\r\nAuthorization: Bearer " +
     SUBMIT_KEY.encode()[:-1] + b"\r\nContent-Length: 0\r\n\r\n", 403, b"key not accepted\n"),
    ("auth-key-longer", b"POST /v1/submit HTTP/1.1\r\nAuthorization: Bearer " +
     SUBMIT_KEY.encode() + b"x\r\nContent-Length: 0\r\n\r\n", 403, b"key not accepted\n"),
    ("auth-key-not-utf8", b"POST /v1/submit HTTP/1.1\r\nAuthorization: Bearer \xff\xfe\x80\r\n"
     b"Content-Length: 0\r\n\r\n", 403, b"key not accepted\n"),
]


@pytest.mark.parametrize("name,req,status,body", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_catalogue(coll, name, req, status, body):
    st, headers, got = answer(coll, req)
    assert (st, got) == (status, body), (name, st, got)
    assert headers.get("connection") == "close"
    if st == 401:
        assert headers["www-authenticate"] == "Bearer"
    assert coll.stored() == []
    assert healthz_ms(coll) < 200 * SLOW
    assert SUBMIT_KEY not in coll.log()


# ---- bodies that are valid HTTP but hostile profiles ----------------------------

# Short names: the bodies below are dense byte-building expressions.
_v = pb_varint
_f = pb_field


def cpu_head():
    strings = [b"", b"samples", b"count", b"cpu", b"nanoseconds", b"main.f"]
    head = b"".join(_f(6, 2, s) for s in strings)
    head += _f(1, 2, _f(1, 0, 1) + _f(2, 0, 2)) + _f(1, 2, _f(1, 0, 3) + _f(2, 0, 4))
    head += _f(11, 2, _f(1, 0, 3) + _f(2, 0, 4)) + _f(12, 0, 10_000_000)
    head += _f(4, 2, _f(1, 0, 1) + _f(4, 2, _f(1, 0, 1))) + _f(5, 2, _f(1, 0, 1) + _f(2, 0, 5))
    return head


def ten_million_samples():
    """A valid CPU profile with 10,000,000 samples, as a ~230 KB gzip."""
    sample = _f(2, 2, _f(1, 2, _v(1)) + _f(2, 2, _v(1) + _v(10_000_000)))
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = z.compress(cpu_head())
    block = sample * 100_000
    for _ in range(100):
        out += z.compress(block)
    return out + z.flush()


def test_ten_million_samples_refused_by_the_memory_limit(tmp_path):
    # PGOF_MAX_PROFILE_MEMORY (64M by default) bounds what one profile's
    # decoded tables may take: this one would need ~500 MB.
    if SANITIZED:
        pytest.skip("over 40 s under ASan (0.4 s plain); the plain run covers it")
    c = Collector(tmp_path).start()
    body = ten_million_samples()
    assert len(body) < 300_000
    t0 = time.monotonic()
    st, _, got = c.submit(body)
    took = time.monotonic() - t0
    assert st == 413, got
    assert got.startswith(b"sample at byte ") and got.endswith(b" passes the memory limit\n"), got
    assert took < 10 * SLOW, took
    with open(f"/proc/{c.proc.pid}/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    if not SANITIZED:
        assert hwm < 200_000, f"peak RSS {hwm} KiB"
    assert c.stored() == []
    assert c.stop() == 0
    c.check_clean()


def _nest(depth):
    inner = b"x"
    for _ in range(depth):
        inner = _f(99, 2, inner)
    return inner


def _bomb():
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    return z.compress(b"\x32\x01a" * ((64 << 20) // 3)) + z.flush()


@pytest.mark.parametrize("name,body,status,reason", [
    ("giant-length", _f(6, 2, b"") + _v(2 << 3 | 2) + _v(1 << 62) + b"abc", 413,
     b"field 2 at byte 2 claims 4611686018427387904 bytes, more than the 1048576-byte limit\n"),
    ("nested-2000-deep", _f(6, 2, b"") + _nest(2000), 400,
     b"not a CPU profile: period type is missing\n"),
    ("gzip-bomb", _bomb(), 413, None),
    ("truncated-gzip", gzip.compress(cpu_head())[:-12], 400, None),
    ("empty", b"", 400, b"the input is empty\n"),
])
def test_hostile_profiles(coll, name, body, status, reason):
    st, _, got = coll.submit(body)
    assert st == status, (name, got)
    if reason is not None:
        assert got == reason, (name, got)
    assert got.endswith(b"\n") and got.count(b"\n") == 1
    assert coll.stored() == []


def test_non_utf8_strings_are_stored_and_merged_as_bytes(make_collector):
    c = make_collector()
    fx = L.Fixtures(["fib.pb.gz"])
    raw = fx.raw["fib.pb.gz"]
    sid = fx.nstrings["fib.pb.gz"]
    fid = L.MARK_ID
    body = (raw + _f(2, 2, _f(1, 2, _v(fid)) + _f(2, 2, _v(1) + _v(10_000_000))) +
            _f(4, 2, _f(1, 0, fid) + _f(4, 2, _f(1, 0, fid))) +
            _f(5, 2, _f(1, 0, fid) + _f(2, 0, sid)) + _f(6, 2, b"bad\xff\xfe\x80name"))
    st, _, got = c.submit(gzip.compress(body))
    assert st == 204, got
    st, _, merged = c.merge()
    assert st == 200
    stacks = profile_stacks(merged)
    assert stacks[("bad\ufffd\ufffd\ufffdname",)] == [1, 10_000_000]


# ---- many clients holding connections ---------------------------------------------

def test_slow_loris_clients_are_cut_and_healthz_stays_fast(make_collector):
    c = make_collector(env={"PGOF_REQUEST_TIMEOUT": "2", "PGOF_IDLE_TIMEOUT": "1"})
    socks = [c.socket() for _ in range(200)]
    for s in socks:
        s.sendall(b"POST /v1/submit HTTP/1.1\r\n" + A + b"Content-Length: 100000\r\n\r\n")
    # Trickle one byte per connection every 0.3 s: never idle for 1 s, but
    # not done within 2 s.
    worst = 0.0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:
        for s in socks:
            try:
                s.send(b"x")
            except OSError:
                pass
        worst = max(worst, healthz_ms(c))
        time.sleep(0.3)
    got = []
    for s in socks:
        s.settimeout(10 * SLOW)
        got.append(read_all(s))
        s.close()
    assert all(g.startswith(b"HTTP/1.1 408 ") for g in got), {g[:40] for g in got}
    assert all(g.endswith(b"request timed out: not received within 2s\n") for g in got)
    assert worst < 250 * SLOW, worst
    assert c.stored() == []
    wait_for(lambda: c.temps() == [], 5, "the uploads' temporary files to go")


def test_thousands_of_idle_connections(make_collector):
    n = 500 if SANITIZED else 3000
    c = make_collector(env={"PGOF_MAX_CONNECTIONS": "10000"})
    socks = []
    for _ in range(n):
        socks.append(socket.create_connection((c.host, c.port), timeout=10))
    wait_for(lambda: c.metric("pgof_connections") >= n, 20, "every connection accepted")
    times = sorted(healthz_ms(c) for _ in range(20))
    assert times[-1] < 250 * SLOW, times
    # They are still served (keep-alive idle state), one request each.
    for s in socks[:50]:
        s.sendall(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    for s in socks[:50]:
        assert read_all(s).startswith(b"HTTP/1.1 200 ")
    for s in socks:
        s.close()
    wait_for(lambda: c.metric("pgof_connections") <= 1, 20, "the connections to close")
