"""The lab itself (issue 2): real systemd hosts over SSH, the fake EC2, the flaky backend."""

from __future__ import annotations

import math
import subprocess

import pytest

from lab import config, core, fakeaws, net, state

pytestmark = pytest.mark.lab
LAB_STAGE = 0  # before any deploy: port 22 must still be open to everyone


def ssh(node: config.Node, command: str, user: str = "admin") -> subprocess.CompletedProcess:
    """Run COMMAND on NODE over real SSH as USER, checking its host key strictly."""
    options = [
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={config.known_hosts_path()}",
    ]
    return subprocess.run(
        ["ssh", "-i", str(config.ssh_key_path())]
        + [arg for option in options for arg in ("-o", option)]
        + [f"{user}@{node.address}", command],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_ssh_as_admin_with_passwordless_sudo_works_on_every_proxy(proxies):
    for node in proxies:
        result = ssh(node, "sudo -n id -u")
        assert result.returncode == 0, f"{node.name}: {result.stderr}"
        assert result.stdout.strip() == "0"


def test_root_login_is_refused_on_every_proxy(proxies):
    for node in proxies:
        result = ssh(node, "true", user="root")
        assert result.returncode == 255 and "Permission denied" in result.stderr


def test_systemd_is_running_on_every_proxy_in_a_container(proxies):
    for node in proxies:
        result = ssh(node, "systemctl is-system-running; systemd-detect-virt --container")
        assert result.stdout.split() == ["running", "systemd-nspawn"], node.name


def test_proxies_run_debian_13_and_12(proxies):
    majors = {n.name: ssh(n, "cut -d. -f1 /etc/debian_version").stdout.strip() for n in proxies}
    assert majors == {"proxy-1": "13", "proxy-2": "13", "proxy-3": "12"}


def test_fake_ec2_returns_one_running_instance_per_host_with_its_lab_address(lab):
    found = {(i["name"], i["private_ip"], i["role"], i["state"]) for i in fakeaws.instances()}
    expected = {
        (n.name, n.address, n.role, "running")
        for n in core.members_of(lab)
        if n.role in ("reverse-proxy", "app")
    }
    assert found == expected


def test_backend_fails_at_the_configured_rate_and_counts_every_attempt(lab):
    core.backend_control("/reset", {"fail_rate": 0.2})
    app = f"http://10.77.0.10:{config.BACKEND_PORT}/pets/7"
    result = core.traffic("loadgen", app, requests=2000, concurrency=8)
    stats = core.backend_control()
    sigma = math.sqrt(0.2 * 0.8 / result["requests"])
    assert result["requests"] == 2000
    assert abs(result["success_rate"] - 0.8) < 4 * sigma
    assert stats["attempts"] == 2000
    assert set(stats["outcomes"]) == {"ok", "500", "502", "drop"}


def test_backend_does_not_fail_at_rate_zero(lab):
    core.backend_control("/reset", {"fail_rate": 0.0})
    try:
        result = core.traffic("loadgen", "http://10.77.0.10:8080/appointments", requests=200)
        assert result["success_rate"] == 1.0
    finally:
        core.backend_control("/reset", {"fail_rate": 0.2})


@pytest.mark.parametrize("source", ["loadgen", "outsider"])
def test_source_reaches_proxy_ssh_port_before_hardening(proxies, source):
    # Only a fresh lab is unhardened: one left up by `make demo` or an earlier run already has the
    # firewall that keeps the outsider out (.ci/run and `make test` in CI start from no lab).
    firewall = ["nft", "list", "table", "inet", "proxy_firewall"]
    hardened = [n.name for n in proxies if core.run_in(n.name, firewall).returncode == 0]
    if hardened:
        pytest.skip(
            f"the lab was reused and is already deployed ({', '.join(hardened)}): this checks a "
            "fresh lab; `make lab-down` first"
        )
    assert all(core.can_connect(source, n.address, 22) for n in proxies)


def test_up_again_leaves_the_running_lab_as_it_is(lab):
    pids_before = dict(state.load()["pids"])
    core.up(3, dict(config.DEFAULT_SUITES))
    assert state.load()["pids"] == pids_before


def test_lab_namespaces_and_links_exist_while_up(lab):
    assert {f"plab-{n.name}" for n in core.members_of(lab)} <= set(net.lab_namespaces())
