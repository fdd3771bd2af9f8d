"""docs/examples/go-profiler: the Go example from docs/go-fleet.md (issue 8).

Builds the example with Debian's Go (/usr/bin/go, GOCACHE under build/) and
checks that it does what the guide says:
  - its wire format is the original embedded client's: POST to /v1/submit
    with "Authorization: Bearer KEY", Transfer-Encoding: chunked and no
    Content-Length (checked against a recording HTTP server);
  - run against a real collector (directly, and through docker/nginx.conf),
    its profiles are accepted and the merge contains its functions.
"""
import glob
import http.server
import os
import re
import shutil
import subprocess
import threading

import pytest

import deploy_helpers as h

EXAMPLE = os.path.join(h.ROOT, "docs", "examples", "go-profiler")
GO = "/usr/bin/go"
# Functions of the example's stand-in work; they must show up in the merge.
FUNCTIONS = (b"main.countPrimes", b"main.hashRequest", b"main.serve")


def go_env():
    build = os.path.join(h.ROOT, "build")
    return dict(os.environ,
                GOCACHE=os.path.join(build, "gocache"),
                GOPATH=os.path.join(build, "gopath"),
                GOFLAGS="-mod=mod", GOPROXY="off", GOTOOLCHAIN="local",
                CGO_ENABLED="0")


@pytest.fixture(scope="module")
def example_binary(tmp_path_factory):
    if not os.access(GO, os.X_OK):
        pytest.skip("Debian's Go (golang-go) is not installed")
    out = str(tmp_path_factory.mktemp("go") / "go-profiler")
    p = subprocess.run([GO, "build", "-o", out, "."], cwd=EXAMPLE, env=go_env(), timeout=300,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.returncode == 0, p.stdout.decode()
    return out


def test_example_is_gofmt_clean_and_vets():
    if not os.access(GO, os.X_OK):
        pytest.skip("Debian's Go (golang-go) is not installed")
    gofmt = shutil.which("gofmt") or "/usr/lib/go/bin/gofmt"
    p = subprocess.run([gofmt, "-l", "."], cwd=EXAMPLE, stdout=subprocess.PIPE, timeout=60)
    assert p.stdout.decode().strip() == "", "not gofmt'd: " + p.stdout.decode()
    p = subprocess.run([GO, "vet", "."], cwd=EXAMPLE, env=go_env(), timeout=300,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.returncode == 0, p.stdout.decode()


def run_example(binary, url, key_file, run_for="2.7s"):
    # interval 0.2 s and sample 1 s: profiles at 0.2-1.2 s and 1.4-2.4 s, a
    # third cut short at 2.7 s and still submitted (as pgo.Disable does).
    return subprocess.run(
        [binary, "-url", url, "-key-file", key_file, "-interval", "200ms",
         "-sample", "1s", "-run-for", run_for],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)


class Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen = []

    def do_POST(self):
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        elif "content-length" in headers:
            body = self.rfile.read(int(headers["content-length"]))
        Recorder.seen.append((self.path, headers, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_wire_format_matches_original_client(example_binary, tmp_path):
    Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    key_file = tmp_path / "submit_keys"
    key_file.write_text("# comment line\n\n  wire-key  \n")
    try:
        p = run_example(example_binary, f"http://127.0.0.1:{server.server_port}/v1/submit",
                        str(key_file), run_for="1.5s")
    finally:
        server.shutdown()
        server.server_close()
    assert p.returncode == 0, p.stdout.decode()
    assert Recorder.seen, p.stdout.decode()
    for path, headers, body in Recorder.seen:
        assert path == "/v1/submit"
        assert headers["authorization"] == "Bearer wire-key"
        assert headers.get("transfer-encoding", "").lower() == "chunked"
        assert "content-length" not in headers
        assert body[:2] == b"\x1f\x8b", "runtime/pprof writes gzip"


def check_merge(port, stdout):
    status, _, merged = h.request(port, "POST", "/v1/merge", headers=h.bearer(h.MERGE_KEY))
    assert status == 200, merged
    text = h.profile_strings(merged)
    found = [f for f in FUNCTIONS if f in text]
    assert found, f"none of {FUNCTIONS} in the merged profile; example said:\n{stdout}"


def test_example_against_collector(example_binary, tmp_path):
    c = h.Collector(str(tmp_path)).start()
    try:
        p = run_example(example_binary, c.url + "/v1/submit", c.submit_keys)
        out = p.stdout.decode()
        assert p.returncode == 0, out + "\n" + c.log()
        assert "submitted" in out
        assert len(c.stored_profiles()) >= 2, (c.stored_profiles(), out)
        check_merge(c.port, out)
    finally:
        status = c.stop()
        c.check_clean()
    assert status == 0


@pytest.mark.skipif(not os.access(h.NGINX_BIN, os.X_OK), reason="nginx is not installed")
def test_example_through_nginx(example_binary, tmp_path):
    c = h.Collector(str(tmp_path)).start()
    n = None
    try:
        n = h.Nginx(c.port).start()
        p = run_example(example_binary, f"http://127.0.0.1:{n.port}/v1/submit", c.submit_keys)
        out = p.stdout.decode()
        assert p.returncode == 0, out + "\n" + n.errors() + "\n" + c.log()
        assert len(c.stored_profiles()) >= 2
        check_merge(n.port, out)
    finally:
        if n is not None:
            n.stop()
        status = c.stop()
        c.check_clean()
    assert status == 0


def pgo_capable_go():
    """A Go toolchain that builds with -pgo (1.21 or later), or None. Debian
    bookworm's golang-go is 1.19; bookworm-backports has newer golang-1.NN."""
    for path in sorted(glob.glob("/usr/lib/go-1.*/bin/go"), reverse=True):
        m = re.search(r"go-1\.(\d+)/", path)
        if m and int(m.group(1)) >= 21:
            return path
    return None


def test_whole_loop_pgof_fetch_then_go_build_pgo(tmp_path):
    """docs/go-fleet.md end to end: the example (built with a Go that writes
    Function.start_line) submits to the collector, `pgof fetch -o
    default.pgo` gets the merge with PGOF_URL and PGOF_MERGE_KEY_FILE, and
    `go build -pgo=default.pgo` accepts it."""
    if h.sanitized():
        pytest.skip("compiler work, not collector work: once, in the plain run")
    go = pgo_capable_go()
    if go is None:
        pytest.skip("no Go >= 1.21 (/usr/lib/go-1.NN, from bookworm-backports) for -pgo")
    pgof = h.pgof_path()
    if not os.access(pgof, os.X_OK):
        pytest.skip(f"{pgof} is not built")
    env = go_env()
    binary = str(tmp_path / "go-profiler")
    p = subprocess.run([go, "build", "-o", binary, "."], cwd=EXAMPLE, env=env, timeout=300,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.returncode == 0, p.stdout.decode()
    workdir = tmp_path / "collector"
    workdir.mkdir()
    c = h.Collector(str(workdir)).start()
    try:
        p = run_example(binary, c.url + "/v1/submit", c.submit_keys)
        assert p.returncode == 0, p.stdout.decode()
        # pgof reads a key file as one key (not a collector keys file).
        key_file = tmp_path / "merge.key"
        key_file.write_text(h.MERGE_KEY + "\n")
        fetch_env = dict(os.environ, PGOF_URL=c.url, PGOF_MERGE_KEY_FILE=str(key_file))
        fetch_env.pop("PGOF_MERGE_KEY", None)
        out = tmp_path / "default.pgo"
        p = subprocess.run([pgof, "fetch", "-o", str(out)], env=fetch_env, timeout=60,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert p.returncode == 0, p.stdout.decode()
    finally:
        assert c.stop() == 0
        c.check_clean()
    # preprofile (Go 1.23+) is the step of `go build -pgo` that reads the
    # profile; it says precisely why a profile is refused.
    has_preprofile = subprocess.run([go, "tool", "-n", "preprofile"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if has_preprofile.returncode == 0:
        p = subprocess.run([go, "tool", "preprofile", "-i", str(out), "-o", str(tmp_path / "pre")],
                           env=env, timeout=60, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert p.returncode == 0, "go tool preprofile refused the merged profile:\n" + \
            p.stdout.decode()
    p = subprocess.run([go, "build", f"-pgo={out}", "-o", str(tmp_path / "go-profiler-pgo"),
                        "."], cwd=EXAMPLE, env=env, timeout=600,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.returncode == 0, "go build -pgo refused the merged profile:\n" + p.stdout.decode()
