"""pgof fetch: the build step. Issue 6.

Fault cases run against a scripted server (pgof_helpers.FakeServer); the
happy path and the auth errors also run against the real collector.
"""
import os
import signal
import subprocess
import time

from pgof_helpers import collector  # noqa: F401 (a fixture)
from pgof_helpers import (BAD, PGOF, FakeServer, clean_env, free_port, needs_pgof, profile, read,
                          run_pgof, self_signed)

pytestmark = needs_pgof

FIB = read(profile("fib.pb.gz"))
SORT = read(profile("sort.pb.gz"))
OLD = b"old profile that must survive"
KEY = "k3y-" + "x" * 20


def env_for(url, **extra):
    return clean_env(PGOF_URL=url, PGOF_MERGE_KEY=KEY, **extra)


def fast(*args):
    return ["fetch", "--retry-delay", "50ms", "--timeout", "5"] + list(args)


def leftovers(d):
    """Temporary files fetch might have left behind."""
    return [n for n in os.listdir(d) if n.startswith(".")]


def test_fetch_writes_the_profile_and_sends_the_key(tmp_path):
    with FakeServer([("profile", FIB)]) as srv:
        p = run_pgof(fast(), env=env_for(srv.url), cwd=tmp_path)
    assert p.returncode == 0, p.err
    assert read(tmp_path / "default.pgo") == FIB
    assert len(srv.requests) == 1
    r = srv.requests[0]
    assert (r["method"], r["path"]) == ("POST", "/v1/merge")
    assert r["headers"]["Authorization"] == "Bearer " + KEY
    assert KEY not in p.err and p.stdout == b""
    assert leftovers(tmp_path) == []
    mode = os.stat(tmp_path / "default.pgo").st_mode & 0o777
    assert mode & 0o044, f"default.pgo should be readable like any new file, mode {mode:o}"


def test_fetch_combine_and_output_flag(tmp_path):
    out = tmp_path / "sub" / "p.pgo"
    out.parent.mkdir()
    with FakeServer([("profile", FIB)]) as srv:
        p = run_pgof(fast("--combine", "-o", str(out)), env=env_for(srv.url + "/"))
    assert p.returncode == 0, p.err
    assert srv.requests[0]["path"] == "/v1/merge?and_combine=true"
    assert read(out) == FIB


def test_fetch_to_stdout(tmp_path):
    with FakeServer([("profile", FIB)]) as srv:
        p = run_pgof(fast("-o", "-", "-q"), env=env_for(srv.url), cwd=tmp_path)
    assert p.returncode == 0, p.err
    assert p.stdout == FIB and p.err == ""
    assert os.listdir(tmp_path) == []


def test_fetch_cut_off_mid_body_leaves_the_old_file(tmp_path):
    (tmp_path / "default.pgo").write_bytes(OLD)
    with FakeServer([("cut", FIB)]) as srv:
        p = run_pgof(fast("--retries", "1"), env=env_for(srv.url), cwd=tmp_path)
    assert p.returncode == 1
    assert "cut off" in p.err, p.err
    assert "default.pgo left unchanged" in p.err
    assert len(srv.requests) == 2  # one retry, then it gives up
    assert read(tmp_path / "default.pgo") == OLD
    assert leftovers(tmp_path) == []


def test_fetch_cut_off_then_whole_answer(tmp_path):
    (tmp_path / "default.pgo").write_bytes(OLD)
    with FakeServer([("cut", SORT), ("profile", FIB)]) as srv:
        p = run_pgof(fast(), env=env_for(srv.url), cwd=tmp_path)
    assert p.returncode == 0, p.err
    assert read(tmp_path / "default.pgo") == FIB  # not a mix of the two answers


def test_fetch_retries_503_then_succeeds(tmp_path):
    steps = [("status", 503, b"busy"), ("status", 503, b"busy"), ("profile", FIB)]
    with FakeServer(steps) as srv:
        p = run_pgof(fast(), env=env_for(srv.url), cwd=tmp_path)
    assert p.returncode == 0, p.err
    assert len(srv.requests) == 3
    assert p.err.count("retrying in") == 2, p.err
    assert "503" in p.err and "busy" in p.err
    assert read(tmp_path / "default.pgo") == FIB


def test_fetch_gives_up_after_bounded_retries(tmp_path):
    (tmp_path / "default.pgo").write_bytes(OLD)
    with FakeServer([("status", 500, b"boom")]) as srv:
        p = run_pgof(fast("--retries", "2"), env=env_for(srv.url), cwd=tmp_path)
    assert p.returncode == 1
    assert len(srv.requests) == 3
    assert "500" in p.err and "boom" in p.err
    assert read(tmp_path / "default.pgo") == OLD


def test_fetch_does_not_retry_4xx(tmp_path):
    with FakeServer([("status", 400, b"bad query\nmore")]) as srv:
        p = run_pgof(fast(), env=env_for(srv.url), cwd=tmp_path)
    assert p.returncode == 1
    assert len(srv.requests) == 1
    assert "400 Bad Request): bad query" in p.err, p.err
    assert "more" not in p.err


def test_fetch_404_means_no_profiles_yet(tmp_path):
    with FakeServer([("status", 404, b"no profiles stored")]) as srv:
        p = run_pgof(fast(), env=env_for(srv.url), cwd=tmp_path)
        assert p.returncode == 1
        assert "no profiles stored yet" in p.err
        assert os.listdir(tmp_path) == []
        p = run_pgof(fast("--allow-empty"), env=env_for(srv.url), cwd=tmp_path)
        assert p.returncode == 0, p.err
        assert os.listdir(tmp_path) == []
    assert len(srv.requests) == 2


def test_fetch_allow_empty_keeps_an_existing_file(tmp_path):
    (tmp_path / "default.pgo").write_bytes(FIB)
    with FakeServer([("status", 404)]) as srv:
        p = run_pgof(fast("--allow-empty"), env=env_for(srv.url), cwd=tmp_path)
    assert p.returncode == 0
    assert read(tmp_path / "default.pgo") == FIB


def test_fetch_401_names_the_key_source_never_the_key(tmp_path):
    keyfile = tmp_path / "merge.key"
    keyfile.write_text(KEY + "\n")
    with FakeServer([("status", 401, b"unauthorized")]) as srv:
        env = clean_env(PGOF_URL=srv.url, PGOF_MERGE_KEY_FILE=str(keyfile))
        p = run_pgof(fast(), env=env, cwd=tmp_path)
        assert p.returncode == 1
        assert len(srv.requests) == 1  # no retry on 401
        assert srv.requests[0]["headers"]["Authorization"] == "Bearer " + KEY  # trimmed
        assert "401" in p.err and f"PGOF_MERGE_KEY_FILE ({keyfile})" in p.err, p.err
        assert KEY not in p.err


def test_fetch_403_names_the_variable(tmp_path):
    with FakeServer([("status", 403)]) as srv:
        p = run_pgof(fast(), env=env_for(srv.url), cwd=tmp_path)
    assert p.returncode == 1
    assert "403" in p.err and "key from PGOF_MERGE_KEY" in p.err
    assert KEY not in p.err


def test_fetch_key_file_flag_and_stdin(tmp_path):
    with FakeServer([("profile", FIB)]) as srv:
        env = clean_env(PGOF_URL=srv.url)
        p = run_pgof(fast("--key-file", "-"), env=env, cwd=tmp_path, stdin=b"  from-stdin \n")
        assert p.returncode == 0, p.err
        assert srv.requests[0]["headers"]["Authorization"] == "Bearer from-stdin"


def test_fetch_invalid_body_is_not_written(tmp_path):
    (tmp_path / "default.pgo").write_bytes(OLD)
    for body in (read(os.path.join(BAD, "heap.pb.gz")), b"<html>proxy error</html>", b""):
        with FakeServer([("profile", body)]) as srv:
            p = run_pgof(fast(), env=env_for(srv.url), cwd=tmp_path)
        assert p.returncode == 1, p.err
        assert "not a valid CPU profile" in p.err
        assert read(tmp_path / "default.pgo") == OLD
        assert leftovers(tmp_path) == []


def test_fetch_connection_refused(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    p = run_pgof(fast("--retries", "1"), env=env_for(url), cwd=tmp_path)
    assert p.returncode == 1
    assert "cannot connect" in p.err and "retrying" in p.err, p.err
    assert os.listdir(tmp_path) == []


def test_fetch_timeout(tmp_path):
    with FakeServer([("slow", 3, ("profile", FIB))]) as srv:
        p = run_pgof(["fetch", "--timeout", "0.3", "--retries", "0"], env=env_for(srv.url),
                     cwd=tmp_path, timeout=10)
    assert p.returncode == 1
    assert "timed out after 0.3 s" in p.err, p.err
    assert os.listdir(tmp_path) == []


def test_fetch_redirect_keeps_post_and_drops_the_key_for_another_host(tmp_path):
    with FakeServer([("profile", FIB)], host="127.0.0.1") as target:
        other = target.url.replace("127.0.0.1", "localhost") + "/v1/merge"
        with FakeServer([("redirect", 302, other)]) as srv:
            p = run_pgof(fast(), env=env_for(srv.url), cwd=tmp_path)
    assert p.returncode == 0, p.err
    assert target.requests[0]["method"] == "POST"
    assert "Authorization" not in target.requests[0]["headers"]
    assert read(tmp_path / "default.pgo") == FIB


def test_fetch_refuses_redirect_to_other_schemes(tmp_path):
    with FakeServer([("redirect", 302, "file:///etc/passwd")]) as srv:
        p = run_pgof(fast(), env=env_for(srv.url), cwd=tmp_path)
    assert p.returncode == 1
    assert "refused to follow" in p.err, p.err
    assert os.listdir(tmp_path) == []


def test_fetch_interrupted_leaves_no_temporary_file(tmp_path):
    (tmp_path / "default.pgo").write_bytes(OLD)
    with FakeServer([("slow", 5, ("profile", FIB))]) as srv:
        proc = subprocess.Popen([PGOF, "fetch", "--timeout", "10"], env=env_for(srv.url),
                                cwd=tmp_path, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 5
        while not leftovers(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert leftovers(tmp_path), "fetch never created its temporary file"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGTERM
    assert leftovers(tmp_path) == []
    assert read(tmp_path / "default.pgo") == OLD


def test_fetch_https_verifies_and_never_downgrades(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    tls = self_signed(str(tmp_path))
    with FakeServer([("profile", FIB)], tls=tls) as srv:
        p = run_pgof(fast(), env=env_for(srv.url), cwd=work)
        assert p.returncode == 1
        assert "TLS failure" in p.err and "retrying" not in p.err, p.err
        p = run_pgof(fast("--cacert", tls[0]), env=env_for(srv.url), cwd=work)
        assert p.returncode == 0, p.err
        assert srv.requests[0]["headers"]["Authorization"] == "Bearer " + KEY
    assert read(work / "default.pgo") == FIB
    with FakeServer([("profile", SORT)]) as plain:
        with FakeServer([("redirect", 307, plain.url + "/v1/merge")], tls=tls) as srv:
            p = run_pgof(fast("--cacert", tls[0]), env=env_for(srv.url), cwd=work)
    assert p.returncode == 1 and "refused to follow" in p.err, p.err
    assert plain.requests == []
    assert read(work / "default.pgo") == FIB


def test_fetch_if_missing_makes_no_request_for_a_valid_file(tmp_path):
    (tmp_path / "default.pgo").write_bytes(SORT)
    with FakeServer([("profile", FIB)]) as srv:
        p = run_pgof(fast("--if-missing"), env=env_for(srv.url), cwd=tmp_path)
        assert p.returncode == 0 and srv.requests == []
        assert read(tmp_path / "default.pgo") == SORT
        (tmp_path / "default.pgo").write_bytes(OLD)  # invalid: fetched again
        p = run_pgof(fast("--if-missing"), env=env_for(srv.url), cwd=tmp_path)
        assert p.returncode == 0 and len(srv.requests) == 1
    assert read(tmp_path / "default.pgo") == FIB


def test_fetch_usage_errors(tmp_path):
    cases = [
        (["fetch"], clean_env(PGOF_MERGE_KEY=KEY), "no collector URL"),
        (["fetch"], clean_env(PGOF_URL="http://127.0.0.1:1"), "no key"),
        (["fetch", "--timeout", "5x"], env_for("http://127.0.0.1:1"), "--timeout"),
        (["fetch", "--retries", "-1"], env_for("http://127.0.0.1:1"), "--retries"),
        (["fetch", "--bogus"], env_for("http://127.0.0.1:1"), "unrecognized option"),
        (["fetch", "extra"], env_for("http://127.0.0.1:1"), "unexpected argument"),
        (["fetch"], env_for("ftp://127.0.0.1/"), "only http:// and https://"),
        (["fetch"], env_for("127.0.0.1:8080"), "not a URL"),
        (["fetch"], env_for("http://h/?x=1"), "without '?'"),
    ]
    for args, env, what in cases:
        p = run_pgof(args, env=env, cwd=tmp_path)
        assert p.returncode == 2, (args, p.err)
        assert what in p.err, (args, p.err)
    assert os.listdir(tmp_path) == []


def test_fetch_refuses_two_key_variables(tmp_path):
    p = run_pgof(["fetch"], env=env_for("http://127.0.0.1:1", PGOF_MERGE_KEY_FILE="/x"),
                 cwd=tmp_path)
    assert p.returncode == 1
    assert "both PGOF_MERGE_KEY_FILE and PGOF_MERGE_KEY are set" in p.err


# ---- against the real collector ------------------------------------------------

def test_fetch_from_collector(collector, tmp_path):
    tmp_path = tmp_path / "work"  # the collector's files live in tmp_path
    tmp_path.mkdir()
    env = clean_env(PGOF_URL=collector.url, PGOF_MERGE_KEY=collector.merge_key,
                    PGOF_SUBMIT_KEY=collector.submit_key)
    p = run_pgof(fast(), env=env, cwd=tmp_path)
    assert p.returncode == 1 and "no profiles stored yet" in p.err, p.err
    assert run_pgof(fast("--allow-empty"), env=env, cwd=tmp_path).returncode == 0
    assert os.listdir(tmp_path) == []

    p = run_pgof(["submit", profile("fib.pb.gz"), profile("sort.pb.gz")], env=env)
    assert p.returncode == 0, p.err
    p = run_pgof(fast(), env=env, cwd=tmp_path)
    assert p.returncode == 0, p.err
    p = run_pgof(["inspect", "--json", str(tmp_path / "default.pgo")])
    assert p.returncode == 0, p.err


def test_fetch_auth_errors_from_collector(collector, tmp_path):
    tmp_path = tmp_path / "work"  # the collector's files live in tmp_path
    tmp_path.mkdir()
    # A wrong key, and a submit key where a merge key belongs.
    for key in ("wrong-key", collector.submit_key):
        env = clean_env(PGOF_URL=collector.url, PGOF_MERGE_KEY=key)
        p = run_pgof(fast(), env=env, cwd=tmp_path)
        assert p.returncode == 1
        assert "key from PGOF_MERGE_KEY" in p.err, p.err
        assert key not in p.err
    assert os.listdir(tmp_path) == []
