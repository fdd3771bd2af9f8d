"""pgof healthcheck and the command's top level. Issue 6."""
import time

from pgof_helpers import (FakeServer, clean_env, collector, free_port, needs_pgof,  # noqa: F401
                          run_pgof)

pytestmark = needs_pgof

COMMANDS = ("fetch", "submit", "merge", "inspect", "healthcheck")


def test_healthcheck_ok_and_not():
    with FakeServer([("status", 200, b"OK")]) as srv:
        p = run_pgof(["healthcheck", srv.url])
        assert p.returncode == 0, p.err
        assert srv.requests[0]["method"] == "GET" and srv.requests[0]["path"] == "/healthz"
        assert run_pgof(["healthcheck", "-q", srv.url]).stdout == b""
    with FakeServer([("status", 503, b"draining")]) as srv:
        p = run_pgof(["healthcheck", srv.url])
        assert p.returncode == 1 and "503" in p.err
    p = run_pgof(["healthcheck", f"http://127.0.0.1:{free_port()}"])
    assert p.returncode == 1 and "cannot connect" in p.err


def test_healthcheck_times_out():
    with FakeServer([("slow", 3, ("status", 200, b"OK"))]) as srv:
        t0 = time.monotonic()
        p = run_pgof(["healthcheck", "--timeout", "0.3", srv.url], timeout=10)
        assert p.returncode == 1 and "timed out" in p.err
        assert time.monotonic() - t0 < 2.5


def test_healthcheck_url_from_environment():
    with FakeServer([("status", 200, b"OK")]) as srv:
        assert run_pgof(["healthcheck"], env=clean_env(PGOF_URL=srv.url)).returncode == 0
        bind = clean_env(PGOF_BIND_ADDRESS=f":{srv.port}")
        assert run_pgof(["healthcheck"], env=bind).returncode == 0
        bind = clean_env(PGOF_BIND_ADDRESS=f"0.0.0.0:{srv.port}")
        assert run_pgof(["healthcheck"], env=bind).returncode == 0
    assert len(srv.requests) == 3
    p = run_pgof(["healthcheck"], env=clean_env(PGOF_BIND_ADDRESS="nonsense"))
    assert p.returncode == 2


def test_healthcheck_against_collector(collector):
    p = run_pgof(["healthcheck", collector.url])
    assert p.returncode == 0, p.err


def test_help_version_and_usage():
    p = run_pgof(["--help"])
    assert p.returncode == 0
    for c in COMMANDS:
        assert c in p.stdout.decode()
        h = run_pgof([c, "--help"])
        assert h.returncode == 0 and h.stdout.decode().startswith(f"Usage: pgof {c}")
        assert run_pgof(["help", c]).stdout == h.stdout
        assert "Exit status" in h.stdout.decode()
    p = run_pgof(["--version"])
    assert p.returncode == 0 and p.stdout.decode().startswith("pgof ")
    assert run_pgof([]).returncode == 2
    p = run_pgof(["frobnicate"])
    assert p.returncode == 2 and "unknown command 'frobnicate'" in p.err
