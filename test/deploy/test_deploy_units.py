"""docker/pgof-collector.service and docker/compose.yaml (issue 8).

systemd does not run here and neither does a Docker engine, so:
  - the unit is checked by systemd's own `systemd-analyze verify` and
    `systemd-analyze security --offline` (with ExecStart pointed at the
    built collector, the only substitution);
  - compose.yaml is read as YAML and checked against the Dockerfile and
    nginx.conf it wires together.
"""
import os
import re
import shutil
import subprocess

import pytest

import deploy_helpers as h
import dockerfile_model as dm

UNIT = os.path.join(h.ROOT, "docker", "pgof-collector.service")
COMPOSE = os.path.join(h.ROOT, "docker", "compose.yaml")


def unit_settings():
    """[(key, value)] of the unit's [Service] section, in order."""
    out, section = [], None
    with open(UNIT) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]":
                k, _, v = line.partition("=")
                out.append((k.strip(), v.strip()))
    return out


def unit_env():
    env = {}
    for k, v in unit_settings():
        if k == "Environment":
            name, _, value = v.partition("=")
            env[name] = value
    return env


def test_unit_hardening_settings():
    s = dict(unit_settings())
    assert s["DynamicUser"] == "yes"
    assert s["ProtectSystem"] == "strict"
    assert s["NoNewPrivileges"] == "yes"
    assert s["CapabilityBoundingSet"] == ""
    state = s["StateDirectory"]
    # The data directory is the state directory, the one writable path.
    assert unit_env()["PGOF_DIRECTORY"] == f"/var/lib/{state}"
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit_env()["PGOF_BIND_ADDRESS"].startswith("127.0.0.1:")


def test_unit_environment_names_are_the_collectors():
    known = {"PGOF_BIND_ADDRESS", "PGOF_DIRECTORY", "PGOF_SUBMIT_AUTH_KEYS_FILE",
             "PGOF_MERGE_AUTH_KEYS_FILE"}
    assert set(unit_env()) == known


def adapted_unit(tmp_path):
    """The unit with ExecStart pointed at the built collector."""
    with open(UNIT) as f:
        text = f.read()
    old = "ExecStart=/usr/local/bin/pgof-collector"
    assert old in text
    path = tmp_path / "pgof-collector.service"
    path.write_text(text.replace(old, "ExecStart=" + h.collector_path()))
    return str(path)


def systemd_analyze():
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze (package systemd) is not installed")
    return tool


def test_unit_verifies(tmp_path):
    tool = systemd_analyze()
    p = subprocess.run([tool, "verify", "--man=no", "--generators=no", adapted_unit(tmp_path)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode()
    assert p.returncode == 0 and not out.strip(), out


def test_unit_security_exposure_is_low(tmp_path):
    tool = systemd_analyze()
    p = subprocess.run([tool, "security", "--offline=yes", "--no-pager",
                        adapted_unit(tmp_path)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode()
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", out)
    assert m, out[-2000:]
    # systemd's scale: 0 (locked down) to 10 (unprotected); < 2 is "OK".
    assert float(m.group(1)) < 2.0, out[-2000:]


# ---- compose.yaml -------------------------------------------------------------

@pytest.fixture(scope="module")
def compose():
    yaml = pytest.importorskip("yaml", reason="python3-yaml is not installed")
    with open(COMPOSE) as f:
        return yaml.safe_load(f)


def test_compose_builds_this_dockerfile(compose):
    build = compose["services"]["collector"]["build"]
    context = os.path.normpath(os.path.join(os.path.dirname(COMPOSE), build["context"]))
    assert context == h.ROOT, "the build context must be the repository root"
    assert os.path.isfile(os.path.join(context, build["dockerfile"]))


def test_compose_secrets_are_the_images_key_files(compose):
    env = dm.parse()[-1].env()
    svc = compose["services"]["collector"]
    targets = {s["source"]: s["target"] for s in svc["secrets"]}
    assert targets["submit_keys"] == env["PGOF_SUBMIT_AUTH_KEYS_FILE"]
    assert targets["merge_keys"] == env["PGOF_MERGE_AUTH_KEYS_FILE"]
    for name in targets:
        assert "file" in compose["secrets"][name], "secrets must be files"


def test_compose_named_volume_for_data(compose):
    svc = compose["services"]["collector"]
    mounts = [v.split(":") for v in svc["volumes"]]
    data = [m for m in mounts if m[1] == dm.parse()[-1].env()["PGOF_DIRECTORY"]]
    assert data, mounts
    assert data[0][0] in compose["volumes"], "/data must be a named volume"


def test_compose_only_nginx_is_published(compose):
    svcs = compose["services"]
    assert "ports" not in svcs["collector"], "the collector must only be reached through nginx"
    assert svcs["nginx"]["ports"]
    conf_mount = [v for v in svcs["nginx"]["volumes"] if v.endswith(":/etc/nginx/nginx.conf:ro")]
    assert conf_mount and conf_mount[0].split(":")[0] == "./nginx.conf"
    # nginx.conf's upstream is this service on its exposed port.
    with open(h.NGINX_CONF) as f:
        servers = h.nginx_directive(f.read(), "server")
    assert "collector:8080" in servers
    assert "8080" in [str(p) for p in svcs["collector"]["expose"]]


def test_compose_stop_grace_exceeds_collector_grace(compose):
    grace = compose["services"]["collector"]["stop_grace_period"]
    assert re.fullmatch(r"\d+s", grace)
    # The collector's default PGOF_SHUTDOWN_GRACE is 10 s (docs/configuration.md).
    assert int(grace[:-1]) > 10
