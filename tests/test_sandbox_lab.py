"""Service sandboxes (tasks/sandbox.py) on the lab (issue 12), on both Debian suites.

Runs after the first deploy and the hardening tests (LAB_STAGE 21): the `deployed` fixture has
converged every proxy, sandboxes included. Prints what an outside auditor would:
`systemd-analyze security` exposure of nginx and the log shipper per suite.
"""

from __future__ import annotations

import re
import shlex
import time
from types import SimpleNamespace

import pytest
from conftest import run_deploy
from lab_hosts import on_host

from lab import core
from tasks import sandbox

pytestmark = pytest.mark.lab
LAB_STAGE = 21

GOALS = {"nginx.service": 4.5, "proxy-log-shipping.service": 2.0}
DROPIN = "/etc/systemd/system/nginx.service.d/proxy-sandbox.conf"


def exposure(host: str, unit: str) -> float:
    out = on_host(host, f"systemd-analyze security --no-pager {unit} | tail -1")
    match = re.search(r"exposure level for \S+: ([0-9.]+)", out)
    assert match, out
    return float(match.group(1))


def master_pid(host: str) -> str:
    return on_host(host, "cat /run/nginx.pid").strip()


def test_sandboxes_meet_the_exposure_goals_on_both_suites(deployed, proxies):
    figures = {}
    for node in (proxies[0], proxies[2]):  # Debian 13, Debian 12
        for unit in GOALS:
            figures[(node.name, node.suite, unit)] = exposure(node.name, unit)
    print()
    for (name, suite, unit), value in figures.items():
        print(f"systemd-analyze security {unit} on {name} ({suite}): {value}")
    assert {k: v for k, v in figures.items() if v > GOALS[k[2]]} == {}


@pytest.fixture
def backend_answering():
    """The backend failing no attempt: what is tested is the sandbox, so every request must be
    answered 200 (at 20%, one request in 3,000 fails all 5 tries by chance)."""
    core.backend_control("/reset", {"fail_rate": 0.0})
    yield
    core.backend_control("/reset", {"fail_rate": 0.2})


def test_sandboxed_nginx_reloads_rotates_its_logs_and_serves(deployed, proxies, backend_answering):
    node = proxies[2]
    before = master_pid(node.name)
    on_host(node.name, "systemctl reload nginx")
    assert master_pid(node.name) == before  # a reload, not a restart
    rotated = core.run_in(node.name, ["logrotate", "-f", "/etc/logrotate.d/nginx"])
    assert rotated.returncode == 0, rotated.stderr
    # nginx reopens its logs on logrotate's signal (the workers a moment after the master):
    # requests then land in the new file.
    for _ in range(20):
        result = core.traffic("loadgen", f"http://{node.address}/pets/7", requests=5)
        assert result["outcomes"].get("200") == 5, result
        fresh = on_host(node.name, "cat /var/log/nginx/proxy_access.log")
        if fresh.count("/pets/7") >= 5:
            break
        time.sleep(0.5)
    assert fresh.count("/pets/7") >= 5, fresh[-500:]
    errors = on_host(node.name, "cat /var/log/nginx/error.log /var/log/nginx/error.log.1")
    assert not re.search(r"Permission denied|Operation not permitted|\(13:|\(1:", errors)
    # The sandboxed shipper reads the rotated file as its own user (group adm).
    shipped = core.run_in(node.name, ["systemctl", "start", "proxy-log-shipping.service"])
    assert shipped.returncode == 0, on_host(
        node.name, "journalctl -u proxy-log-shipping.service -n 20 --no-pager"
    )
    assert master_pid(node.name) == before


def test_removed_sandbox_is_put_back_with_one_restart(deployed, lab_env, proxies):
    node = proxies[1]
    on_host(node.name, f"rm -f {DROPIN} && systemctl daemon-reload && systemctl restart nginx")
    unsandboxed = master_pid(node.name)
    assert exposure(node.name, "nginx.service") > GOALS["nginx.service"]
    repair = run_deploy(lab_env, "--limit", node.name)
    assert repair.returncode == 0, repair.output[-3000:]
    assert [op for op in repair.changed() if "nginx" in op.lower()] == [
        f"Sandbox nginx and the log shipper (systemd) | Install {DROPIN} "
        "(nginx -t inside the same sandbox first)",
        "Sandbox nginx and the log shipper (systemd) | Restart nginx into its sandbox "
        "(daemon-reload, restart, /healthz; else roll back)",
    ]
    assert master_pid(node.name) != unsandboxed
    assert exposure(node.name, "nginx.service") <= GOALS["nginx.service"]
    assert run_deploy(lab_env, "--limit", node.name).changed() == {}


def test_sandbox_that_breaks_nginx_is_rolled_back_and_nginx_keeps_serving(deployed, proxies):
    """A drop-in `nginx -t` accepts but nginx cannot start under (no Internet sockets): the
    restart fails, the previous drop-in comes back and nginx runs under it again."""
    node = proxies[2]
    good = on_host(node.name, f"cat {DROPIN}")
    kept = f"/var/lib/proxy-deploy/last-good/nginx-sandbox{DROPIN}"
    bad = good.replace(
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "RestrictAddressFamilies=AF_UNIX"
    )
    assert bad != good
    on_host(node.name, f"mkdir -p {kept.rsplit('/', 1)[0]} && cp -p {DROPIN} {kept}")
    on_host(node.name, f"printf '%s' {shlex.quote(bad)} > {DROPIN}")
    settings = SimpleNamespace(listen_port=80)  # all the command reads
    command = "systemctl daemon-reload && " + sandbox.restart_or_roll_back_command(settings)
    failed = core.run_in(node.name, ["sh", "-c", command])
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "the previous one is back" in failed.stderr
    assert on_host(node.name, f"cat {DROPIN}") == good
    assert on_host(node.name, "systemctl is-active nginx").strip() == "active"
    result = core.traffic("loadgen", f"http://{node.address}/pets/8", requests=3)
    assert result["outcomes"].get("200") == 3, result
    assert exposure(node.name, "nginx.service") <= GOALS["nginx.service"]
