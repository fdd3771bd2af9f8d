"""HTTP behaviour of pgof-collector (issue 4): endpoints, status codes, auth,
keep-alive, pipelining, HTTP/1.0, limits and timeouts, over raw sockets where
the exact bytes matter."""
import gzip
import os
import re
import time

import pytest

from collector_helpers import (MERGE_KEY, SUBMIT_KEY, Collector, chunked, collector,  # noqa: F401
                               fixture, make_collector, parse_responses, pb_field, read_all,
                               read_response, wait_for)

AUTH = f"Authorization: Bearer {SUBMIT_KEY}\r\n".encode()


def test_healthz_get_and_head(collector):
    status, headers, body = collector.request("GET", "/healthz")
    assert (status, body) == (200, b"OK")
    assert headers["content-length"] == "2"
    status, headers, body = collector.request("HEAD", "/healthz")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == "2"


@pytest.mark.parametrize("method,path,allow", [
    ("POST", "/healthz", "GET, HEAD"),
    ("GET", "/v1/submit", "POST"),
    ("PUT", "/v1/merge", "POST"),
    ("DELETE", "/metrics", "GET, HEAD"),
])
def test_wrong_method_is_405_with_allow(collector, method, path, allow):
    status, headers, body = collector.request(method, path)
    assert status == 405
    assert headers["allow"] == allow
    assert body.endswith(b"\n") and body.count(b"\n") == 1


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/submit/", "/healthz/x", "/v2/merge"])
def test_unknown_path_is_404(collector, path):
    status, _, body = collector.request("GET", path)
    assert (status, body) == (404, b"not found\n")


def test_metrics_without_key(collector):
    collector.request("GET", "/healthz")
    status, headers, body = collector.request("GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert 'pgof_http_requests_total{endpoint="healthz",status="200"} 1' in text
    for name in ("pgof_profiles_accepted_total", "pgof_received_bytes_total",
                 "pgof_stored_profiles", "pgof_stored_bytes", "pgof_merges_total",
                 "pgof_merge_duration_seconds_sum", "pgof_connections ",
                 "pgof_quarantined_total"):
        assert name in text, name


def test_metrics_submit_stages(collector):
    """Each accepted submission adds its time in every stage, from the
    body's last byte to the answer; refused ones add nothing."""
    def stages():
        out = {}
        for line in collector.request("GET", "/metrics")[2].decode().splitlines():
            m = re.match(r'pgof_submit_stage_seconds_(sum|count)\{stage="(\w+)"\} (\S+)$', line)
            if m:
                out.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
        return out

    before = stages()
    assert set(before) == {"queue", "validate", "commit_wait", "commit", "reply"}
    assert all(v == {"sum": 0.0, "count": 0.0} for v in before.values()), before
    for name in ("fib.pb.gz", "sha.pb.gz", "json.pb.gz"):
        assert collector.submit(fixture(name))[0] == 204
    assert collector.submit(b"not a profile")[0] == 400
    after = stages()
    assert all(v["count"] == 3 for v in after.values()), after
    # Decoding and the fsyncs take real time; every stage is a duration.
    assert after["validate"]["sum"] > 0 and after["commit"]["sum"] > 0, after
    assert all(0 <= v["sum"] < 30 for v in after.values()), after


def test_metrics_with_merge_key_when_configured(make_collector):
    c = make_collector(env={"PGOF_METRICS_AUTH": "merge"})
    assert c.request("GET", "/metrics")[0] == 401
    assert c.request("GET", "/metrics", headers={"Authorization": f"Bearer {SUBMIT_KEY}"})[0] == 403
    assert c.request("GET", "/metrics", headers={"Authorization": f"Bearer {MERGE_KEY}"})[0] == 200


# ---- auth -------------------------------------------------------------------

@pytest.mark.parametrize("header,status", [
    (None, 401),
    ("Basic dXNlcjpwYXNz", 401),
    ("Bearer", 401),
    ("Bearer ", 401),
    ("Token " + SUBMIT_KEY, 401),
    ("Bearer wrong-key", 403),
    ("Bearer " + MERGE_KEY, 403),
    ("Bearer " + SUBMIT_KEY + "x", 403),
    ("Bearer " + SUBMIT_KEY[:-1], 403),
    ("Bearer " + "k" * 5000, 403),
    ("bearer " + SUBMIT_KEY, 204),
    ("BEARER   " + SUBMIT_KEY, 204),
], ids=lambda v: str(v)[:40])
def test_submit_auth(collector, header, status):
    h = {"Authorization": header} if header is not None else {}
    st, headers, body = collector.request("POST", "/v1/submit", body=fixture("fib.pb.gz"),
                                          headers=h)
    assert st == status, body
    if status == 401:
        assert headers["www-authenticate"] == "Bearer"
    if status != 204:
        assert body.count(b"\n") == 1
        assert SUBMIT_KEY.encode() not in body
    assert SUBMIT_KEY not in collector.log()
    assert MERGE_KEY not in collector.log()


def test_merge_needs_merge_key(collector):
    assert collector.merge(key=SUBMIT_KEY)[0] == 403
    st, headers, _ = collector.request("POST", "/v1/merge")
    assert st == 401 and headers["www-authenticate"] == "Bearer"


def test_unauthenticated_upload_answered_at_once_not_stored(collector):
    """Auth is decided from the head: the 401 comes before any body byte is
    sent, with Expect: 100-continue no 100 is sent, and nothing is stored."""
    s = collector.socket()
    s.sendall(b"POST /v1/submit HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
              b"Expect: 100-continue\r\n\r\n")
    status, headers, body, _ = read_response(s)
    assert status == 401
    assert headers["connection"] == "close"
    s.close()
    assert collector.temps() == [] and collector.stored() == []
    assert "100 Continue" not in collector.log()


# ---- uploads ----------------------------------------------------------------

def test_submit_fixed_length(collector):
    st, _, body = collector.submit(fixture("fib.pb.gz"))
    assert st == 204, body
    assert len(collector.stored()) == 1


def test_submit_chunked(collector):
    data = fixture("mixed.pb.gz")
    resp = collector.raw(b"POST /v1/submit HTTP/1.1\r\nHost: x\r\n" + AUTH +
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
                         chunked(data, 333))
    assert resp.startswith(b"HTTP/1.1 204 "), resp
    assert len(collector.stored()) == 1


def test_submit_raw_protobuf_and_content_encoding_gzip(collector):
    st, _, body = collector.submit(fixture("sort-raw.pb"))
    assert st == 204, body
    st, _, body = collector.submit(fixture("sort.pb.gz"), headers={"Content-Encoding": "gzip"})
    assert st == 204, body
    for name in collector.stored():
        with open(f"{collector.dir}/{name}", "rb") as f:
            assert f.read(2) == b"\x1f\x8b", "stored files are gzip"


def test_stored_bytes_match_the_files_on_every_path(collector):
    """pgof_stored_bytes is what the stored files take on disk, whichever
    way a body went: gzip kept in the upload's 64 KiB buffer and written by
    the submit job, gzip streamed to the file past the buffer, and raw
    protobuf rewritten as gzip."""
    raw = fixture("sort-raw.pb")
    # One more string_table entry (field 6) of random bytes: a profile whose
    # gzip cannot shrink below 64 KiB.
    big = gzip.compress(raw + pb_field(6, 2, os.urandom(100 * 1024)), mtime=0)
    assert len(big) > 64 * 1024
    for body in (fixture("mixed.pb.gz"), big, raw):
        st, _, reason = collector.submit(body)
        assert st == 204, reason
    names = collector.stored()
    assert len(names) == 3
    sizes = sorted(os.path.getsize(f"{collector.dir}/{n}") for n in names)
    assert len(big) in sizes and len(fixture("mixed.pb.gz")) in sizes
    assert collector.metric("pgof_stored_bytes") == sum(sizes)


def test_unsupported_content_encoding_is_415(collector):
    st, _, _ = collector.submit(fixture("fib.pb.gz"), headers={"Content-Encoding": "br"})
    assert st == 415


def test_expect_100_continue(collector):
    data = fixture("json.pb.gz")
    s = collector.socket()
    s.sendall(b"POST /v1/submit HTTP/1.1\r\nHost: x\r\n" + AUTH +
              b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(data))
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(1000)
    assert got == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.sendall(data)
    status, _, _, _ = read_response(s)
    assert status == 204
    s.close()


def test_expect_other_is_417(collector):
    st, _, _ = collector.submit(fixture("fib.pb.gz"), headers={"Expect": "something"})
    assert st == 417


@pytest.mark.parametrize("name,reason", [
    ("empty.pb", b""),
    ("garbage.bin", b""),
    ("text.txt", b""),
    ("truncated.pb.gz", b""),
    ("heap.pb.gz", b"not a CPU profile"),
])
def test_bad_profiles_are_400_with_reason(collector, name, reason):
    st, headers, body = collector.submit(fixture(name, "bad"))
    assert st == 400, body
    assert headers["content-type"].startswith("text/plain")
    assert body.endswith(b"\n") and body.count(b"\n") == 1 and len(body) > 5
    assert reason in body
    assert collector.stored() == []
    wait_for(lambda: collector.temps() == [], 5, "the temporary file to go")


def test_oversized_declared_body_is_413_before_body(make_collector):
    c = make_collector(env={"PGOF_MAX_BODY_BYTES": "4K"})
    s = c.socket()
    s.sendall(b"POST /v1/submit HTTP/1.1\r\nHost: x\r\n" + AUTH +
              b"Content-Length: 5000\r\n\r\n")
    status, headers, body, _ = read_response(s)
    assert status == 413 and b"limit" in body
    s.close()
    assert c.stored() == []


def test_oversized_chunked_body_is_413(make_collector):
    c = make_collector(env={"PGOF_MAX_BODY_BYTES": "4K"})
    s = c.socket()
    s.sendall(b"POST /v1/submit HTTP/1.1\r\nHost: x\r\n" + AUTH +
              b"Transfer-Encoding: chunked\r\n\r\n")
    try:
        for _ in range(10):
            s.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")
    except OSError:
        pass
    status, _, body, _ = read_response(s)
    assert status == 413
    s.close()
    assert c.stored() == []
    wait_for(lambda: c.temps() == [], 5, "the temporary file to go")


def test_gzip_bomb_is_refused(make_collector):
    import zlib
    c = make_collector(env={"PGOF_MAX_PROFILE_BYTES": "1M"})
    # Valid protobuf all the way (string_table entries), so only the size
    # cap can stop it: 64 MiB inflated from about 100 KB.
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = z.compress(b"\x32\x01a" * ((64 << 20) // 3)) + z.flush()
    assert len(bomb) < 100_000
    st, _, body = c.submit(bomb)
    assert st == 413, body
    assert c.stored() == []


def test_conflicting_length_and_chunked_is_400(collector):
    resp = collector.raw(b"POST /v1/submit HTTP/1.1\r\nHost: x\r\n" + AUTH +
                         b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"0\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 400 "), resp
    assert collector.stored() == []


def test_malformed_requests_are_400(collector):
    for req in (b"GARBAGE\r\n\r\n", b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
                b"POST /v1/submit HTTP/1.1\r\n" + AUTH +
                b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"):
        resp = collector.raw(req)
        assert resp.startswith(b"HTTP/1.1 400 "), (req, resp)
        assert parse_responses(resp)[0][2].count(b"\n") == 1


def test_header_limits(make_collector):
    c = make_collector(env={"PGOF_MAX_HEADER_BYTES": "2K", "PGOF_MAX_HEADERS": "10"})
    resp = c.raw(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 431 "), resp
    many = b"".join(b"X-H%d: 1\r\n" % i for i in range(20))
    resp = c.raw(b"GET /healthz HTTP/1.1\r\n" + many + b"\r\n")
    assert resp.startswith(b"HTTP/1.1 431 "), resp
    resp = c.raw(b"GET /healthz?" + b"a" * 1900 + b" HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 200 "), resp


def test_long_target_is_414(collector):
    resp = collector.raw(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 414 "), resp


# ---- connection handling ----------------------------------------------------

def test_keep_alive_several_requests(collector):
    c = collector.conn()
    data = fixture("fib.pb.gz")
    for i in range(3):
        c.request("GET", "/healthz")
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"OK")
        c.request("POST", "/v1/submit", body=data,
                  headers={"Authorization": f"Bearer {SUBMIT_KEY}"})
        r = c.getresponse()
        assert r.status == 204
        r.read()
    c.request("POST", "/v1/merge", headers={"Authorization": f"Bearer {MERGE_KEY}"})
    r = c.getresponse()
    assert r.status == 200 and r.read()[:2] == b"\x1f\x8b"
    c.close()
    assert len(collector.stored()) == 3
    # One connection for all of the above, one for this metrics request.
    assert collector.metric("pgof_connections_total") == 2


def test_pipelined_requests(collector):
    data = fixture("sha.pb.gz")
    reqs = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
            b"POST /v1/submit HTTP/1.1\r\nHost: x\r\n" + AUTH +
            b"Content-Length: %d\r\n\r\n" % len(data) + data +
            b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" +
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    s = collector.socket()
    s.sendall(reqs)
    got = []
    buf = b""
    for head in (False, False, True, False):
        st, h, body, buf = read_response(s, buf, head)
        got.append((st, body))
    # The 404 closes the connection: the last request is not answered.
    assert got == [(200, b"OK"), (204, b""), (200, b""), (404, b"not found\n")]
    assert read_all(s) == b""
    s.close()


def test_http_10(collector):
    resp = collector.raw(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close" in resp and resp.endswith(b"\r\n\r\nOK")
    s = collector.socket()
    s.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    st, h, body, rest = read_response(s)
    assert (st, body, h["connection"]) == (200, b"OK", "keep-alive")
    s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
    st, h, body, rest = read_response(s, rest)
    assert (st, body) == (200, b"OK")
    s.close()


def test_http_10_submit(collector):
    data = fixture("fib.pb.gz")
    resp = collector.raw(b"POST /v1/submit HTTP/1.0\r\n" + AUTH +
                         b"Content-Length: %d\r\n\r\n" % len(data) + data)
    assert resp.startswith(b"HTTP/1.1 204 "), resp


def test_connection_close(collector):
    data = fixture("fib.pb.gz")
    resp = collector.raw(b"POST /v1/submit HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + AUTH +
                         b"Content-Length: %d\r\n\r\n" % len(data) + data)
    st = parse_responses(resp)
    assert [x[0] for x in st] == [204]
    assert st[0][1]["connection"] == "close"


def test_slow_client_is_cut_off(make_collector):
    c = make_collector(env={"PGOF_REQUEST_TIMEOUT": "1", "PGOF_IDLE_TIMEOUT": "0.6"})
    # Trickles a byte every 0.2 s: never idle, but too slow overall.
    s = c.socket()
    t0 = time.monotonic()
    s.sendall(b"POST /v1/submit HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: 1000\r\n\r\n")
    got = b""
    s.settimeout(0.2)
    while time.monotonic() - t0 < 10:
        try:
            s.sendall(b"x")
        except OSError:
            break
        try:
            b = s.recv(1000)
            if not b:
                break
            got += b
        except TimeoutError:
            pass
        except OSError:
            break
    s.close()
    assert got.startswith(b"HTTP/1.1 408 "), got
    assert time.monotonic() - t0 < 5
    # A client that stops sending is cut off by the idle timeout.
    s = c.socket()
    s.sendall(b"GET /healthz HTTP/1.1\r\n")
    s.settimeout(5)
    got = read_all(s)
    assert got.startswith(b"HTTP/1.1 408 "), got
    wait_for(lambda: c.temps() == [], 5, "temporary files to go")
    assert c.metric("pgof_timeouts_total") >= 2


def test_idle_keep_alive_closed_quietly(make_collector):
    c = make_collector(env={"PGOF_IDLE_TIMEOUT": "0.3"})
    s = c.socket()
    s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
    st, _, _, rest = read_response(s)
    assert st == 200
    assert rest + read_all(s) == b""  # closed with no second answer
    s.close()


def test_max_connections(make_collector):
    c = make_collector(env={"PGOF_MAX_CONNECTIONS": "2"})
    a, b = c.socket(), c.socket()
    a.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
    b.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
    assert read_response(a)[0] == 200 and read_response(b)[0] == 200
    third = c.raw(b"GET /healthz HTTP/1.1\r\n\r\n")
    assert third.startswith(b"HTTP/1.1 503 "), third
    assert b"Retry-After: 1" in third
    a.close()
    b.close()
    wait_for(lambda: c.raw(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
             .startswith(b"HTTP/1.1 200"), 5, "a free connection slot")
