"""Helpers for the collector's integration tests (issue 4).

Collector spawns the real binary (PGOF_COLLECTOR, as test/run.py passes it;
build/pgof-collector otherwise) on a free loopback port with a temporary
profile directory and fresh key files, like h2o's spawn_h2o. Everything
polls with a deadline instead of sleeping; deadlines grow under ASan
(PGOF_SANITIZED=1). At the end the collector gets SIGTERM and must exit 0
without a sanitizer report in its stderr.

profile_stacks() is a small pprof reader (gzip + protobuf wire format) so a
test can check that a merge is exactly the sum of what was submitted, stack
by stack, without trusting the engine under test.
"""
import gzip
import http.client
import os
import re
import signal
import socket
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("PGOF_COLLECTOR", os.path.join(ROOT, "build", "pgof-collector"))
SANITIZED = os.environ.get("PGOF_SANITIZED") == "1"
SLOW = 4 if SANITIZED else 1
FIXTURES = os.path.join(ROOT, "test", "fixtures")
SUBMIT_KEY = "submit-key-0123456789"
MERGE_KEY = "merge-key-abcdefghij"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "UndefinedBehaviorSanitizer")
PROFILES = ["fib.pb.gz", "sha.pb.gz", "sort.pb.gz", "json.pb.gz", "regexp.pb.gz",
            "compress.pb.gz", "labels.pb.gz", "mixed.pb.gz"]


def fixture(name, sub="profiles"):
    with open(os.path.join(FIXTURES, sub, name), "rb") as f:
        return f.read()


def wait_for(cond, timeout, what):
    """Polls cond() until it returns a true value (returned) or fails."""
    deadline = time.monotonic() + timeout * SLOW
    delay = 0.005
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


class Collector:
    def __init__(self, tmp, env=None, directory=None, submit_keys=None, merge_keys=None):
        self.tmp = str(tmp)
        self.dir = directory or os.path.join(self.tmp, "profiles")
        self.submit_keys_file = os.path.join(self.tmp, "submit_keys")
        self.merge_keys_file = os.path.join(self.tmp, "merge_keys")
        self.write_keys(self.submit_keys_file, submit_keys or [SUBMIT_KEY])
        self.write_keys(self.merge_keys_file, merge_keys or [MERGE_KEY])
        self.env = dict(os.environ)
        self.env.update({
            "PGOF_BIND_ADDRESS": "127.0.0.1:0",
            "PGOF_DIRECTORY": self.dir,
            "PGOF_SUBMIT_AUTH_KEYS_FILE": self.submit_keys_file,
            "PGOF_MERGE_AUTH_KEYS_FILE": self.merge_keys_file,
        })
        if SANITIZED:
            self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.env.update(env or {})
        self.proc = None
        self.port = None
        self.host = "127.0.0.1"
        self.log_path = None
        self.runs = 0

    @staticmethod
    def write_keys(path, keys):
        with open(path, "w") as f:
            f.write("# test keys\n\n" + "".join(f"  {k}  \n" for k in keys))

    def start(self, wait_ready=True):
        self.runs += 1
        self.log_path = os.path.join(self.tmp, f"collector-{self.runs}.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([BINARY], env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=self._log, cwd=self.tmp)
        m = wait_for(lambda: self._listening(), 20, "the collector to listen")
        self.host, self.port = m
        if wait_ready:
            wait_for(lambda: "store: loaded" in self.log(), 20, "the store to load")
        return self

    def _listening(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"collector exited with {self.proc.returncode}:\n{self.log()}")
        m = re.search(r"listening on \[?([0-9a-f:.]+?)\]?:(\d+)\n", self.log())
        return (m.group(1), int(m.group(2))) if m else None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def all_logs(self):
        out = ""
        for i in range(1, self.runs + 1):
            with open(os.path.join(self.tmp, f"collector-{i}.log"), "rb") as f:
                out += f.read().decode("utf-8", "replace")
        return out

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"collector did not exit after {sig}:\n{self.log()}")
        self._log.close()
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def combine_until_crash(self):
        """Asks for a combine while PGOF_TEST_CRASH_AT_STEP is set: the
        collector must kill itself (SIGKILL) inside it."""
        try:
            self.merge(combine="true")
        except Exception:
            pass  # the connection dies with the process
        self.proc.wait(20)
        assert self.proc.returncode == -signal.SIGKILL
        self._log.close()

    def check_clean(self):
        text = self.all_logs()
        for m in SANITIZER_MARKS:
            assert m not in text, f"sanitizer report in collector stderr:\n{text[-6000:]}"

    # ---- HTTP ----------------------------------------------------------------
    def conn(self, timeout=10):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout * SLOW)

    def request(self, method, path, body=None, headers=None, timeout=10):
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def submit(self, body, key=SUBMIT_KEY, headers=None):
        h = {"Authorization": f"Bearer {key}"}
        h.update(headers or {})
        return self.request("POST", "/v1/submit", body=body, headers=h)

    def merge(self, combine=None, key=MERGE_KEY):
        path = "/v1/merge" + (f"?and_combine={combine}" if combine is not None else "")
        return self.request("POST", path, headers={"Authorization": f"Bearer {key}"})

    def raw(self, data, timeout=10, shut=False):
        """Sends bytes on a new connection; returns everything read until EOF."""
        s = socket.create_connection((self.host, self.port), timeout=timeout * SLOW)
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
            return read_all(s)
        finally:
            s.close()

    def socket(self, timeout=10):
        return socket.create_connection((self.host, self.port), timeout=timeout * SLOW)

    def stored(self):
        return sorted(n for n in os.listdir(self.dir) if n.endswith(".pgo") and n[0] != ".")

    def temps(self):
        return sorted(n for n in os.listdir(self.dir) if n.startswith(".pgof-tmp-"))

    def metric(self, name):
        _, _, body = self.request("GET", "/metrics")
        total = 0.0
        found = False
        for line in body.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
                found = True
        return total if found else None


def read_all(s):
    out = b""
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        out += b
    return out


def _parse_head(head):
    """The status and the lower-cased headers of a response head (bytes)."""
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers


def read_response(s, buf=b"", head_only=False):
    """Reads one HTTP response from socket s; returns (status, headers, body, rest).
    head_only: the answer to a HEAD request (no body whatever its length)."""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            raise AssertionError(f"connection closed before a full head: {buf!r}")
        buf += b
    head, rest = buf.split(b"\r\n\r\n", 1)
    status, headers = _parse_head(head)
    n = 0 if head_only else int(headers.get("content-length", "0"))
    while len(rest) < n:
        b = s.recv(65536)
        if not b:
            raise AssertionError("connection closed inside a body")
        rest += b
    return status, headers, rest[:n], rest[n:]


def parse_responses(data):
    """Splits raw bytes into [(status, headers, body)] (Content-Length framed)."""
    out = []
    while data:
        head, rest = data.split(b"\r\n\r\n", 1)
        status, headers = _parse_head(head)
        n = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


def chunked(data, size=1000):
    out = b""
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


# ---- a minimal protobuf writer ----------------------------------------------

def pb_varint(n):
    """n as a protobuf varint."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_field(num, wt, payload):
    """Field num: a varint (wire type 0, payload an int) or length-delimited
    bytes (wire type 2)."""
    key = pb_varint(num << 3 | wt)
    if wt == 0:
        return key + pb_varint(payload)
    return key + pb_varint(len(payload)) + payload


# ---- a minimal pprof reader ------------------------------------------------

def _varint(b, i):
    v = 0
    shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def _fields(b):
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            v = b[i:i + n]
            i += n
        elif wt == 1:
            v = b[i:i + 8]
            i += 8
        elif wt == 5:
            v = b[i:i + 4]
            i += 4
        else:
            raise ValueError(f"wire type {wt}")
        yield num, wt, v


def _ints(wt, v):
    if wt == 0:
        return [v]
    out = []
    i = 0
    while i < len(v):
        x, i = _varint(v, i)
        out.append(x)
    return out


def profile_stacks(data):
    """Returns {(function names, leaf first): [values...]} of a pprof profile."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    strings, samples, locs, funcs = [], [], {}, {}
    for num, wt, v in _fields(data):
        if num == 6:
            strings.append(v.decode("utf-8", "replace"))
        elif num == 2:
            locids, vals = [], []
            for n2, w2, v2 in _fields(v):
                if n2 == 1:
                    locids += _ints(w2, v2)
                elif n2 == 2:
                    vals += [x - (1 << 64) if x >= 1 << 63 else x for x in _ints(w2, v2)]
            samples.append((locids, vals))
        elif num == 4:
            lid, fids = 0, []
            for n2, w2, v2 in _fields(v):
                if n2 == 1:
                    lid = v2
                elif n2 == 4:
                    for n3, w3, v3 in _fields(v2):
                        if n3 == 1:
                            fids.append(v3)
            locs[lid] = fids
        elif num == 5:
            fid, name = 0, 0
            for n2, w2, v2 in _fields(v):
                if n2 == 1:
                    fid = v2
                elif n2 == 2:
                    name = v2
            funcs[fid] = name
    out = {}
    for locids, vals in samples:
        key = tuple(strings[funcs[f]] for l in locids for f in locs.get(l, []))
        cur = out.setdefault(key, [0] * len(vals))
        for i, x in enumerate(vals):
            cur[i] += x
    return out


def sum_stacks(profiles):
    total = {}
    for p in profiles:
        for k, vals in profile_stacks(p).items():
            cur = total.setdefault(k, [0] * len(vals))
            for i, x in enumerate(vals):
                cur[i] += x
    return total


def totals(stacks):
    t = None
    for vals in stacks.values():
        t = [0] * len(vals) if t is None else t
        for i, x in enumerate(vals):
            t[i] += x
    return t


@pytest.fixture
def collector(tmp_path):
    c = Collector(tmp_path).start()
    yield c
    rc = c.stop()
    c.check_clean()
    assert rc == 0, f"collector exit status {rc} after SIGTERM:\n{c.log()[-4000:]}"


@pytest.fixture
def make_collector(tmp_path):
    """Factory for tests that need their own environment; cleans up after."""
    made = []

    def make(env=None, start=True, **kw):
        c = Collector(tmp_path, env=env, **kw)
        made.append(c)
        return c.start() if start else c

    yield make
    for c in made:
        if c.proc is not None and c.proc.poll() is None:
            rc = c.stop()
            assert rc == 0, f"collector exit status {rc}:\n{c.log()[-4000:]}"
        if c.proc is not None:
            c.check_clean()
