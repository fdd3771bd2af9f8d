"""Helpers for the deployment tests (test/deploy/test_deploy_*.py).

They start the real programs the way a deployment does: pgof-collector from
$PGOF_COLLECTOR with keys and a data directory in a temporary folder, and
Debian's nginx with docker/nginx.conf adapted only by port and path
substitutions. Every wait is a poll with a deadline, never a bare sleep.
"""
import gzip
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "test", "fixtures")
NGINX_CONF = os.path.join(ROOT, "docker", "nginx.conf")
NGINX_BIN = "/usr/sbin/nginx"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "ThreadSanitizer", "UndefinedBehaviorSanitizer")

SUBMIT_KEY = "deploy-submit-key-0123456789abcdef"
MERGE_KEY = "deploy-merge-key-fedcba9876543210"


def collector_path():
    return os.environ.get("PGOF_COLLECTOR", os.path.join(ROOT, "build", "pgof-collector"))


def build_dir():
    return os.environ.get("PGOF_BUILD", os.path.dirname(collector_path()))


def pgof_path():
    return os.path.join(build_dir(), "pgof")


def sanitized():
    return os.environ.get("PGOF_SANITIZED") == "1"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout, what):
    """Polls cond() until it returns a true value; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def fixture(name):
    with open(os.path.join(FIXTURES, "profiles", name), "rb") as f:
        return f.read()


def request(port, method, path, body=None, headers=None, timeout=30, chunked=False):
    """One HTTP/1.1 request on a new connection. Returns (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if chunked:
            # An iterable body with encode_chunked sends Transfer-Encoding:
            # chunked and no Content-Length, as Go's client does for a body
            # of unknown length.
            pieces = [body[i:i + 4096] for i in range(0, len(body), 4096)]
            conn.request(method, path, body=iter(pieces), headers=headers or {},
                         encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def bearer(key):
    return {"Authorization": "Bearer " + key}


def profile_strings(blob):
    """The bytes of a (possibly gzipped) pprof profile, inflated, for
    searching function names in its string table."""
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    return blob


def has_sanitizer_report(text):
    return any(m in text for m in SANITIZER_MARKS)


class Collector:
    """A running pgof-collector on a loopback port with its own directory."""

    def __init__(self, workdir, env=None):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory = os.path.join(workdir, "profiles")
        self.submit_keys = os.path.join(workdir, "submit_keys")
        self.merge_keys = os.path.join(workdir, "merge_keys")
        for path, key in ((self.submit_keys, SUBMIT_KEY), (self.merge_keys, MERGE_KEY)):
            with open(path, "w") as f:
                f.write(f"# test key\n{key}\n")
            os.chmod(path, 0o600)
        self.env = dict(os.environ,
                        PGOF_BIND_ADDRESS=f"127.0.0.1:{self.port}",
                        PGOF_DIRECTORY=self.directory,
                        PGOF_SUBMIT_AUTH_KEYS_FILE=self.submit_keys,
                        PGOF_MERGE_AUTH_KEYS_FILE=self.merge_keys)
        self.env.update(env or {})
        self.log_path = os.path.join(workdir, "collector.log")
        self.proc = None

    def start(self, argv_prefix=()):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(list(argv_prefix) + [collector_path()], env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        wait_for(self._healthy, 30 if sanitized() else 10, "collector /healthz")
        return self

    def _healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"collector exited with {self.proc.returncode}:\n{self.log()}")
        try:
            status, _, body = request(self.port, "GET", "/healthz", timeout=2)
            return status == 200
        except OSError:
            return False

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stored_profiles(self):
        return sorted(n for n in os.listdir(self.directory) if n.endswith(".pgo"))

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stops the collector; returns its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def check_clean(self):
        text = self.log()
        assert not has_sanitizer_report(text), "sanitizer report in collector log:\n" + text


def nginx_substitutions(listen_port, upstream, prefix):
    """The only edits the tests make to docker/nginx.conf: ports and paths.
    Returns (literal, replacement) pairs, applied in order."""
    return [
        ("listen 80;", f"listen 127.0.0.1:{listen_port};"),
        ("server collector:8080;", f"server {upstream};"),
        ("/var/run/nginx.pid", os.path.join(prefix, "nginx.pid")),
        ("/var/log/nginx", os.path.join(prefix, "log")),
        ("/var/cache/nginx", os.path.join(prefix, "cache")),
    ]


def adapt_nginx_conf(text, subs):
    for old, new in subs:
        if old not in text:
            raise AssertionError(f"docker/nginx.conf no longer contains {old!r}, "
                                 "which the tests substitute")
        text = text.replace(old, new)
    return text


class Nginx:
    """Debian's nginx running docker/nginx.conf in front of a collector."""

    def __init__(self, upstream_port):
        # Not under pytest's tmp_path: that is mode 0700, and nginx's workers
        # run as an unprivileged user when the tests run as root.
        self.prefix = tempfile.mkdtemp(prefix="pgof-nginx-")
        os.chmod(self.prefix, 0o755)
        for d in ("log", "cache"):
            os.makedirs(os.path.join(self.prefix, d))
            os.chmod(os.path.join(self.prefix, d), 0o777)
        self.port = free_port()
        with open(NGINX_CONF) as f:
            conf = adapt_nginx_conf(f.read(), nginx_substitutions(
                self.port, f"127.0.0.1:{upstream_port}", self.prefix))
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = None

    def start(self):
        self._out = open(os.path.join(self.prefix, "stderr.log"), "wb")
        self.proc = subprocess.Popen(
            [NGINX_BIN, "-p", self.prefix, "-c", self.conf, "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT)
        wait_for(self._listening, 10, "nginx to listen")
        return self

    def _listening(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"nginx exited with {self.proc.returncode}:\n{self.errors()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def errors(self):
        out = []
        for name in ("stderr.log", os.path.join("log", "error.log")):
            try:
                with open(os.path.join(self.prefix, name), "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(out)

    def access_log(self):
        try:
            with open(os.path.join(self.prefix, "log", "access.log")) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._out.close()
        shutil.rmtree(self.prefix, ignore_errors=True)


def nginx_size(value):
    """nginx size syntax ("64m", "512k", "1g", "1048576") in bytes."""
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", value)
    if not m:
        raise ValueError(value)
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]
    return int(m.group(1)) * mult


def nginx_directive(conf_text, name):
    """Every value of a directive in an nginx config, comments removed."""
    values = []
    for line in conf_text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(rf"{re.escape(name)}\s+(.*?);\s*$", line)
        if m:
            values.append(m.group(1))
    return values
