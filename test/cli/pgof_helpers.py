"""Helpers for the pgof integration tests (test/cli/test_cli_*.py).

They run the real build/pgof (or build/asan/pgof: the runner sets PGOF_BUILD)
against either the real collector ($PGOF_COLLECTOR) on a free loopback port,
or a small scripted HTTP server for the faults a real collector will not
produce on demand (503s, bodies cut off mid-way, slow answers, redirects).
Every child process has a timeout; a sanitizer report in pgof's stderr fails
the test.
"""
import gzip
import http.server
import os
import re
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PGOF_BUILD", os.path.join(ROOT, "build"))
PGOF = os.path.join(BUILD, "pgof")
COLLECTOR = os.environ.get("PGOF_COLLECTOR", os.path.join(BUILD, "pgof-collector"))
FIXTURES = os.path.join(ROOT, "test", "fixtures")
PROFILES = os.path.join(FIXTURES, "profiles")
BAD = os.path.join(FIXTURES, "bad")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "ThreadSanitizer", "UndefinedBehaviorSanitizer")

needs_pgof = pytest.mark.skipif(not os.access(PGOF, os.X_OK), reason=f"{PGOF} not built")


def profile(name):
    return os.path.join(PROFILES, name)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra):
    """The caller's environment without any PGOF_* or proxy variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PGOF_") and "proxy" not in k.lower()}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_pgof(args, env=None, cwd=None, timeout=20, stdin=None):
    """Runs pgof; returns CompletedProcess with text stderr and bytes stdout."""
    p = subprocess.run([PGOF] + list(args), env=env if env is not None else clean_env(),
                       cwd=cwd, timeout=timeout, input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.err = p.stderr.decode("utf-8", "replace")
    for m in SANITIZER_MARKS:
        assert m not in p.err, f"sanitizer report from pgof {args}:\n{p.err}"
    return p


# ---- a scripted HTTP server --------------------------------------------------

class Script:
    """What the fake server answers, one step per request, the last repeating.

    A step is a tuple: ("profile", bytes) 200 with a body; ("status", code,
    body) any status with a short body; ("cut", bytes) announces the full
    Content-Length but sends half and closes; ("slow", seconds, step) waits
    then does step; ("redirect", code, url).
    """

    def __init__(self, steps):
        self.steps = list(steps)
        self.requests = []
        self.lock = threading.Lock()

    def next(self, record):
        with self.lock:
            self.requests.append(record)
            return self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]


class FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        record = {"method": self.command, "path": self.path,
                  "headers": dict(self.headers.items()), "body": body}
        self.do_step(self.server.script.next(record))

    do_GET = handle_any
    do_POST = handle_any

    def do_step(self, step):
        kind = step[0]
        if kind == "slow":
            time.sleep(step[1])
            return self.do_step(step[2])
        if kind == "profile":
            return self.answer(200, step[1], "application/octet-stream")
        if kind == "status":
            return self.answer(step[1], step[2] if len(step) > 2 else b"")
        if kind == "redirect":
            self.send_response(step[1])
            self.send_header("Location", step[2])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if kind == "cut":
            data = step[1]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        raise AssertionError(f"unknown step {step}")

    def answer(self, code, body, ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakeServer:
    """Serves a Script on a free port; with tls=(cert, key) it speaks https."""

    def __init__(self, steps, host="127.0.0.1", tls=None):
        self.script = Script(steps)
        self.httpd = http.server.ThreadingHTTPServer((host, 0), FakeHandler)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.daemon_threads = True
        self.httpd.script = self.script
        # A client that hangs up early (timeouts, cut bodies) is expected here.
        self.httpd.handle_error = lambda request, address: None
        self.port = self.httpd.server_address[1]
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def requests(self):
        return self.script.requests


def self_signed(tmp):
    """A certificate for 127.0.0.1 and its key, made with openssl: (cert, key)."""
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


# ---- the real collector -------------------------------------------------------

class Collector:
    """The real collector on a free loopback port with its own temp dir."""

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "profiles")
        os.makedirs(self.dir)
        self.submit_key = "submit-" + os.urandom(8).hex()
        self.merge_key = "merge-" + os.urandom(8).hex()
        self.submit_keys = os.path.join(tmp, "submit_keys")
        self.merge_keys = os.path.join(tmp, "merge_keys")
        with open(self.submit_keys, "w") as f:
            f.write(self.submit_key + "\n")
        with open(self.merge_keys, "w") as f:
            f.write(self.merge_key + "\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(tmp, "collector.log"), "w+b")
        env = clean_env(PGOF_BIND_ADDRESS=f"127.0.0.1:{self.port}", PGOF_DIRECTORY=self.dir,
                        PGOF_SUBMIT_AUTH_KEYS_FILE=self.submit_keys,
                        PGOF_MERGE_AUTH_KEYS_FILE=self.merge_keys)
        self.proc = subprocess.Popen([COLLECTOR], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("collector did not become healthy:\n" + self.output())
            time.sleep(0.05)

    def output(self):
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        out = self.output()
        self.log.close()
        for m in SANITIZER_MARKS:
            assert m not in out, "sanitizer report from the collector:\n" + out
        return out


@pytest.fixture
def collector(tmp_path):
    if not os.access(COLLECTOR, os.X_OK):
        pytest.skip(f"{COLLECTOR} not built")
    c = Collector(str(tmp_path))
    yield c
    c.stop()


# ---- comparing profiles through go tool pprof -----------------------------------

GO = "/usr/bin/go"
needs_go = pytest.mark.skipif(not os.access(GO, os.X_OK), reason="go not installed")


def go_env():
    cache = os.path.join(ROOT, "build", "gocache")
    os.makedirs(cache, exist_ok=True)
    return clean_env(GOCACHE=cache, HOME=os.environ.get("HOME", tempfile.gettempdir()),
                     GOFLAGS="", GOTOOLCHAIN="local")


def go_pprof(*args, timeout=60):
    p = subprocess.run([GO, "tool", "pprof"] + list(args), env=go_env(), timeout=timeout,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def go_top(path):
    """{function: (flat_ns, cum_ns)} and the total, from go tool pprof -top."""
    out = go_pprof("-top", "-unit=ns", "-nodefraction=0", "-edgefraction=0",
                   "-nodecount=100000", path).decode()
    funcs, total = {}, None
    for line in out.splitlines():
        if "Total samples =" in line:
            total = int(line.split("Total samples =")[1].split("ns")[0].strip())
        parts = line.split()
        num = re.compile(r"^\d+(ns)?$")
        if len(parts) >= 6 and num.match(parts[0]) and num.match(parts[3]):
            name = " ".join(parts[5:])
            name = re.sub(r" \((partial-)?inline\)$", "", name)
            funcs[name] = (int(parts[0].rstrip("ns")), int(parts[3].rstrip("ns")))
    return funcs, total


def go_traces(path):
    """Canonical form of a profile's samples: {(labels, stack): summed value}.

    go tool pprof -traces prints one block per sample: label lines
    ("key:  value"), then "VALUE  leaf", then one caller per line.
    """
    out = go_pprof("-traces", path).decode()
    stacks = {}
    for block in out.split("-----------+")[1:]:
        lines = [l for l in block.splitlines()[1:] if l.strip()]
        labels, frames, value = [], [], None
        for line in lines:
            if value is None and re.match(r"^\s*\S+:\s", line):
                labels.append(" ".join(line.split()))
            elif value is None:
                value, _, leaf = line.strip().partition(" ")
                frames.append(leaf.strip())
            else:
                frames.append(line.strip())
        if value is None:
            continue
        key = (tuple(sorted(labels)), tuple(frames))
        stacks[key] = stacks.get(key, 0) + parse_ns(value)
    return stacks


def parse_ns(v):
    units = [("ms", 10 ** 6), ("us", 10 ** 3), ("ns", 1), ("s", 10 ** 9)]
    for suffix, mult in units:
        if v.endswith(suffix):
            return round(float(v[: -len(suffix)]) * mult)
    return int(v)


def is_gzip(data):
    return data[:2] == b"\x1f\x8b"


def gunzip(data):
    return gzip.decompress(data) if is_gzip(data) else data
