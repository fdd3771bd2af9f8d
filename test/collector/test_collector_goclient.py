"""A real Go client against pgof-collector (issue 4).

test/collector/goclient is a standard-library Go program that does what the
original embedded client does: runtime/pprof for a second, then a POST with a
bearer key whose body has unknown length (so Go sends it chunked). Then
`go tool pprof -top` must read what /v1/merge returns.
"""
import os
import shutil
import subprocess

import pytest

from collector_helpers import (ROOT, SLOW, SUBMIT_KEY, make_collector,  # noqa: F401
                               profile_stacks)

GO = "/usr/bin/go"
pytestmark = pytest.mark.skipif(not os.access(GO, os.X_OK), reason="Debian's golang-go missing")


def go_env():
    build = os.path.join(ROOT, "build")
    return dict(os.environ, GOCACHE=os.path.join(build, "gocache"),
                GOPATH=os.path.join(build, "gopath"), GOFLAGS="", GOPROXY="off",
                GO111MODULE="on", CGO_ENABLED="0")


@pytest.fixture(scope="module")
def goclient():
    out = os.path.join(ROOT, "build", "goclient")
    src = os.path.join(ROOT, "test", "collector", "goclient")
    p = subprocess.run([GO, "build", "-o", out, "."], cwd=src, env=go_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert p.returncode == 0, p.stdout.decode()
    return out


def test_go_client_submits_chunked_and_go_pprof_reads_merge(make_collector, goclient, tmp_path):
    collector = make_collector(env={"PGOF_LOG_LEVEL": "debug"})
    url = f"http://{collector.host}:{collector.port}/v1/submit"
    for _ in range(2):
        p = subprocess.run([goclient, "-url", url, "-key", SUBMIT_KEY, "-d", "1s"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60 * SLOW)
        out = p.stdout.decode()
        assert p.returncode == 0, out
        # 204, and the request's length was unknown to net/http (0 with a body).
        assert out.split()[0:2] == ["204", "0"], out
    assert len(collector.stored()) == 2
    assert collector.log().count("body: chunked") == 2

    st, _, merged = collector.merge()
    assert st == 200
    stacks = profile_stacks(merged)
    assert any(any("crypto/sha256" in f for f in k) for k in stacks)
    path = tmp_path / "merged.pgo"
    path.write_bytes(merged)
    p = subprocess.run([GO, "tool", "pprof", "-top", str(path)], env=go_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    text = p.stdout.decode()
    assert p.returncode == 0, text
    assert "Type: cpu" in text
    assert "sha256" in text
