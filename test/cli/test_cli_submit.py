"""pgof submit: one request per file, one line per result. Issue 6."""
import os

from pgof_helpers import (BAD, FakeServer, clean_env, collector, needs_pgof, profile,  # noqa: F401
                          read, run_pgof)

pytestmark = needs_pgof

KEY = "submit-key-123"


def env_for(url, **extra):
    return clean_env(PGOF_URL=url, PGOF_SUBMIT_KEY=KEY, **extra)


def fast(*args):
    return ["submit", "--retry-delay", "50ms", "--timeout", "5"] + list(args)


def test_submit_sends_each_file_with_its_length():
    files = [profile("fib.pb.gz"), profile("sort-raw.pb")]
    with FakeServer([("status", 204)]) as srv:
        p = run_pgof(fast(*files), env=env_for(srv.url))
    assert p.returncode == 0, p.err
    assert len(srv.requests) == 2
    for f, r in zip(files, srv.requests):
        assert (r["method"], r["path"]) == ("POST", "/v1/submit")
        assert r["headers"]["Authorization"] == "Bearer " + KEY
        assert r["headers"]["Content-Length"] == str(os.path.getsize(f))
        assert r["body"] == read(f)
    out = p.stdout.decode().splitlines()
    assert [l.split(":")[0] for l in out] == files
    assert all("submitted" in l for l in out)


def test_submit_checks_files_locally_and_goes_on():
    files = [os.path.join(BAD, "heap.pb.gz"), profile("fib.pb.gz"),
             os.path.join(BAD, "truncated.pb.gz"), "/nonexistent.pb.gz"]
    with FakeServer([("status", 204)]) as srv:
        p = run_pgof(fast(*files), env=env_for(srv.url))
    assert p.returncode == 1
    assert len(srv.requests) == 1 and srv.requests[0]["body"] == read(profile("fib.pb.gz"))
    assert "heap.pb.gz: not sent: not a CPU profile" in p.err, p.err
    assert "truncated.pb.gz: not sent: gzip" in p.err, p.err
    assert "/nonexistent.pb.gz: cannot open" in p.err
    assert "3 of 4 file(s) failed" in p.err
    assert p.stdout.decode().count("submitted") == 1


def test_submit_no_check_shows_the_servers_reason():
    garbage = os.path.join(BAD, "garbage.bin")
    with FakeServer([("status", 400, b"not a pprof profile: bad wire type\n")]) as srv:
        p = run_pgof(fast("--no-check", garbage), env=env_for(srv.url))
    assert p.returncode == 1
    assert len(srv.requests) == 1
    assert "400 Bad Request): not a pprof profile: bad wire type" in p.err, p.err


def test_submit_413():
    with FakeServer([("status", 413)]) as srv:
        p = run_pgof(fast(profile("fib.pb.gz")), env=env_for(srv.url))
    assert p.returncode == 1
    assert "too large (413" in p.err


def test_submit_auth_error_stops_the_run():
    files = [profile("fib.pb.gz"), profile("sort.pb.gz"), profile("sha.pb.gz")]
    with FakeServer([("status", 401)]) as srv:
        p = run_pgof(fast(*files), env=env_for(srv.url))
    assert p.returncode == 1
    assert len(srv.requests) == 1
    assert "key from PGOF_SUBMIT_KEY" in p.err and KEY not in p.err
    assert "remaining 2 file(s)" in p.err
    assert "3 of 3 file(s) failed" in p.err


def test_submit_retries_5xx():
    with FakeServer([("status", 502), ("status", 204)]) as srv:
        p = run_pgof(fast(profile("fib.pb.gz")), env=env_for(srv.url))
    assert p.returncode == 0, p.err
    assert len(srv.requests) == 2
    assert srv.requests[1]["body"] == read(profile("fib.pb.gz"))  # body re-sent whole


def test_submit_usage():
    assert run_pgof(["submit"], env=env_for("http://127.0.0.1:1")).returncode == 2
    p = run_pgof(["submit", profile("fib.pb.gz")], env=clean_env(PGOF_URL="http://127.0.0.1:1"))
    assert p.returncode == 2 and "PGOF_SUBMIT_KEY_FILE" in p.err


def test_submit_to_collector(collector):
    env = clean_env(PGOF_URL=collector.url, PGOF_SUBMIT_KEY=collector.submit_key)
    good = [profile("fib.pb.gz"), profile("sort-raw.pb")]
    p = run_pgof(fast("--retries", "0", *good), env=env)
    assert p.returncode == 0, p.err + collector.output()
    assert len([n for n in os.listdir(collector.dir) if n.endswith(".pgo")]) == 2

    # A bad file sent anyway is refused by the collector with a reason.
    p = run_pgof(fast("--retries", "0", "--no-check", os.path.join(BAD, "heap.pb.gz")), env=env)
    assert p.returncode == 1
    assert "400" in p.err and "no reason given" not in p.err, p.err

    # The merge key is not a submit key.
    env = clean_env(PGOF_URL=collector.url, PGOF_SUBMIT_KEY=collector.merge_key)
    p = run_pgof(fast("--retries", "0", profile("fib.pb.gz")), env=env)
    assert p.returncode == 1
    assert "key from PGOF_SUBMIT_KEY" in p.err and collector.merge_key not in p.err
