"""docker/nginx.conf in front of the real collector (issue 8).

Each test starts Debian's nginx with docker/nginx.conf, changed only by the
port and path substitutions in deploy_helpers.nginx_substitutions, in front
of a real pgof-collector on loopback, and talks HTTP to nginx. They check
what the file promises: submit (fixed length and chunked), merge, healthz,
auth answers passed through, the body-size limit, the per-client rate limit
on /v1/submit, and that /metrics is not reachable through the proxy.
"""
import os
import re
import signal
import socket
import subprocess
import time

import pytest

import deploy_helpers as h

pytestmark = pytest.mark.skipif(not os.access(h.NGINX_BIN, os.X_OK),
                                reason="Debian's nginx (nginx-light) is not installed")


@pytest.fixture
def stack(tmp_path):
    """A collector and nginx in front of it; yields (collector, nginx)."""
    c = h.Collector(str(tmp_path)).start()
    n = None
    errors = ""
    try:
        n = h.Nginx(c.port).start()
        yield c, n
    finally:
        if n is not None:
            errors = n.errors()
            n.stop()
        status = c.stop()
        c.check_clean()
    assert status == 0, f"collector exit status {status} after SIGTERM:\n{c.log()}"
    assert "[emerg]" not in errors and "[alert]" not in errors, errors


def conf_text():
    with open(h.NGINX_CONF) as f:
        return f.read()


def test_config_is_valid_for_debian_nginx(tmp_path):
    n = h.Nginx(h.free_port())
    try:
        p = subprocess.run([h.NGINX_BIN, "-t", "-p", n.prefix, "-c", n.conf],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        out = p.stdout.decode()
        assert p.returncode == 0, out
        assert "test is successful" in out
    finally:
        n.stop()


def test_healthz_through_nginx(stack):
    c, n = stack
    status, headers, body = h.request(n.port, "GET", "/healthz")
    assert (status, body) == (200, b"OK")


def submit(port, name, key=h.SUBMIT_KEY, chunked=False):
    """Submits a fixture profile; returns (status, body)."""
    status, _, body = h.request(port, "POST", "/v1/submit", body=h.fixture(name),
                                headers=h.bearer(key), chunked=chunked)
    return status, body


def merge(port, query=""):
    """Returns (status, headers, inflated body) of a merge."""
    status, headers, body = h.request(port, "POST", "/v1/merge" + query,
                                      headers=h.bearer(h.MERGE_KEY))
    if status == 200:
        assert body[:2] == b"\x1f\x8b", "merge answer is not gzip"
        assert int(headers["content-length"]) == len(body)
    return status, headers, h.profile_strings(body) if status == 200 else body


def test_submit_fixed_length_then_merge(stack):
    c, n = stack
    assert submit(n.port, "fib.pb.gz") == (204, b"")
    assert len(c.stored_profiles()) == 1
    status, _, text = merge(n.port)
    assert status == 200
    assert b"main.fib" in text


def test_submit_chunked_like_go_client(stack):
    c, n = stack
    # nginx reads the chunked body whole and passes it on with a length;
    # the stored profile must be the submitted one.
    assert submit(n.port, "sha.pb.gz", chunked=True) == (204, b"")
    status, _, text = merge(n.port)
    assert status == 200
    assert b"main.workSHA" in text


def test_merge_and_combine_through_nginx(stack):
    c, n = stack
    for name in ("fib.pb.gz", "sort.pb.gz", "json.pb.gz"):
        assert submit(n.port, name) == (204, b"")
    assert len(c.stored_profiles()) == 3
    status, _, text = merge(n.port, "?and_combine=true")
    assert status == 200
    for fn in (b"main.fib", b"main.workSort", b"main.workJSON"):
        assert fn in text
    assert len(c.stored_profiles()) == 1, c.stored_profiles()


def test_key_rotation_procedure(stack):
    """docs/deploy.md's rotation: add the new key, SIGHUP, switch, remove
    the old key, SIGHUP; files edited in place, as a bind mount needs."""
    c, n = stack
    new_key = "rotated-submit-key-00112233445566"

    def write_in_place(text):
        with open(c.submit_keys, "r+") as f:  # same inode
            f.seek(0)
            f.write(text)
            f.truncate()

    def accepted(key):
        # Auth is decided from the headers: an empty body with a good key
        # gets 400 (not a profile), with an unknown key 403. Polled on the
        # collector itself, so that nginx's rate limit does not interfere.
        status, _, _ = h.request(c.port, "POST", "/v1/submit", body=b"",
                                 headers=h.bearer(key))
        assert status in (400, 403), status
        return status == 400

    write_in_place(f"{h.SUBMIT_KEY}\n{new_key}\n")
    c.proc.send_signal(signal.SIGHUP)
    h.wait_for(lambda: accepted(new_key), 10, "the new key to be accepted")
    assert accepted(h.SUBMIT_KEY)
    assert submit(n.port, "fib.pb.gz", key=new_key)[0] == 204
    write_in_place(f"{new_key}\n")
    c.proc.send_signal(signal.SIGHUP)
    h.wait_for(lambda: not accepted(h.SUBMIT_KEY), 10, "the old key to be refused")
    assert submit(n.port, "fib.pb.gz", key=new_key)[0] == 204
    assert "keys: reloaded" in c.log()


def test_auth_answers_pass_through(stack):
    c, n = stack
    profile = h.fixture("fib.pb.gz")
    status, headers, _ = h.request(n.port, "POST", "/v1/submit", body=profile)
    assert status == 401
    assert headers.get("www-authenticate", "").lower().startswith("bearer")
    assert submit(n.port, "fib.pb.gz", key="not-a-key")[0] == 403
    # A submit key is not a merge key.
    status, _, _ = h.request(n.port, "POST", "/v1/merge", headers=h.bearer(h.SUBMIT_KEY))
    assert status == 403
    assert c.stored_profiles() == []


def test_bad_profile_reason_passes_through(stack):
    c, n = stack
    status, _, body = h.request(n.port, "POST", "/v1/submit", body=b"not a profile\n",
                                headers=h.bearer(h.SUBMIT_KEY))
    assert status == 400
    assert body.strip(), "the collector's one-line reason was lost"
    assert c.stored_profiles() == []


def test_metrics_not_reachable_through_nginx(stack):
    c, n = stack
    # The collector serves /metrics...
    status, _, body = h.request(c.port, "GET", "/metrics")
    assert status == 200 and b"# TYPE" in body, "collector has no /metrics to hide"
    # ...but not through the proxy, however the path is spelt.
    for path in ("/metrics", "/metrics/", "/metrics?x=1", "//metrics", "/v1/../metrics",
                 "/%6Detrics", "/healthz/../metrics", "/METRICS"):
        status, _, body = h.request(n.port, "GET", path)
        assert status in (400, 404), f"{path}: {status}"
        assert b"# TYPE" not in body and b"# HELP" not in body, path
    status, _, _ = h.request(n.port, "POST", "/metrics")
    assert status == 404


def test_unknown_paths_stop_at_nginx(stack):
    c, n = stack
    for path in ("/", "/v1", "/v1/submit/extra", "/v2/submit", "/debug/pprof/"):
        status, _, body = h.request(n.port, "GET", path)
        assert status == 404, path
        assert body == b"not found\n", path


def max_body_size():
    values = h.nginx_directive(conf_text(), "client_max_body_size")
    assert len(values) == 1, values
    return h.nginx_size(values[0])


def test_body_limit_matches_collector_default(tmp_path):
    """client_max_body_size equals the collector's default PGOF_MAX_BODY_BYTES:
    a body nginx lets through is never refused by the collector for size,
    and no body larger than the collector takes is spooled by nginx."""
    limit = max_body_size()
    # The collector logs its effective configuration at start-up.
    c = h.Collector(str(tmp_path)).start()
    try:
        log = c.log()
    finally:
        c.stop()
    m = re.search(r"max_body(?:_bytes)?[=:]\s*(\d+)", log)
    if not m:
        pytest.skip("the collector's start-up line does not show its body limit "
                    "(expected 'max_body=N'):\n" + log[:500])
    assert int(m.group(1)) == limit


def read_response(sock):
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_body_limit_content_length(stack):
    c, n = stack
    limit = max_body_size()
    with socket.create_connection(("127.0.0.1", n.port)) as s:
        s.sendall((f"POST /v1/submit HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {h.SUBMIT_KEY}\r\n"
                   f"Content-Length: {limit + 1}\r\n\r\n").encode() + b"\0" * 1024)
        answer = read_response(s)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert c.stored_profiles() == []


def test_body_limit_chunked(stack):
    c, n = stack
    limit = max_body_size()
    piece = b"\0" * 65536
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", n.port)) as s:
        s.sendall((f"POST /v1/submit HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {h.SUBMIT_KEY}\r\n"
                   f"Transfer-Encoding: chunked\r\n\r\n").encode())
        try:
            while sent <= limit + len(piece):
                s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # nginx answered and stopped reading
        try:
            answer = read_response(s)
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 413"), (sent, answer[:200])
    assert c.stored_profiles() == []


def test_submit_rate_limit_per_client(stack):
    c, n = stack
    text = conf_text()
    m = re.search(r"limit_req\s+zone=pgof_submit\s+burst=(\d+)", text)
    assert m, "no limit_req for pgof_submit in docker/nginx.conf"
    burst = int(m.group(1))
    status_code = int(h.nginx_directive(text, "limit_req_status")[0])
    # Unauthenticated submissions: the collector answers 401 at once, so the
    # loop is quick; limit_req runs before the request reaches it.
    statuses = []
    for _ in range(burst + 6):
        status, _, _ = h.request(n.port, "POST", "/v1/submit", body=b"x" * 100)
        statuses.append(status)
    assert statuses[0] == 401, statuses
    assert set(statuses) <= {401, status_code}, statuses
    assert statuses.count(status_code) >= 4, statuses
    # The limit is for /v1/submit only: health checks still pass.
    status, _, body = h.request(n.port, "GET", "/healthz")
    assert (status, body) == (200, b"OK")
    assert f'"POST /v1/submit HTTP/1.1" {status_code}' in n.access_log()


def test_upstream_keepalive_reuses_connections(stack):
    """proxy_http_version 1.1 + an empty Connection header + upstream
    keepalive: many requests through nginx use few collector connections."""
    c, n = stack

    def accepted():
        status, _, body = h.request(c.port, "GET", "/metrics")
        assert status == 200
        m = re.search(rb"^pgof_connections_(?:accepted_)?total\s+(\d+)", body, re.M)
        return int(m.group(1)) if m else None

    before = accepted()
    if before is None:
        pytest.skip("collector /metrics has no pgof_connections_total counter")
    for _ in range(10):
        status, _, _ = h.request(n.port, "GET", "/healthz")
        assert status == 200
    # 10 proxied requests plus our second /metrics request; without
    # keep-alive that is 11 new connections, with it one per nginx worker
    # plus one.
    assert accepted() - before <= 1 + (os.cpu_count() or 1), "no upstream keep-alive"


def test_slow_upload_stays_at_nginx(stack):
    """proxy_request_buffering on: until the whole body has arrived, nginx
    does not open a connection to the collector, so a slow or stalled
    client costs the collector nothing."""
    c, n = stack

    def collector_connections():
        status, _, body = h.request(c.port, "GET", "/metrics")
        m = re.search(rb"^pgof_connections_total\s+(\d+)", body, re.M)
        if not m:
            pytest.skip("collector /metrics has no pgof_connections_total counter")
        return int(m.group(1))

    profile = h.fixture("fib.pb.gz")
    before = collector_connections()
    with socket.create_connection(("127.0.0.1", n.port)) as s:
        s.sendall((f"POST /v1/submit HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {h.SUBMIT_KEY}\r\n"
                   f"Content-Length: {len(profile)}\r\n\r\n").encode() + profile[:100])
        time.sleep(0.5)  # a stalled client: nothing to poll for, by design
        # Only our own /metrics request reached the collector meanwhile.
        assert collector_connections() - before == 1
        s.sendall(profile[100:])
        answer = read_response(s)
    assert answer.startswith(b"HTTP/1.1 204"), answer[:200]
    assert len(c.stored_profiles()) == 1
