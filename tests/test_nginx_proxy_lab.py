"""Host hardening on the lab (issue 5): firewall allowlist, SSH, sysctl, nginx limits, drift.

Runs after the first deploy (LAB_STAGE 20): the `deployed` fixture has converged every proxy.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import REPO, run_deploy
from test_deploy import on_host
from test_lab import ssh

from lab import core

pytestmark = pytest.mark.lab
LAB_STAGE = 20

SCANNER_PATHS = ["/wp-login.php", "/.env", "/.git/config", "/admin", "/sitemap.xml", "/phpmyadmin/"]


@pytest.mark.parametrize("port", [80, 22])
def test_outsider_reaches_no_proxy_port(deployed, proxies, port):
    assert [n.name for n in proxies if core.can_connect("outsider", n.address, port)] == []


def test_loadgen_reaches_http_but_not_ssh(deployed, proxies):
    assert all(core.can_connect("loadgen", n.address, 80) for n in proxies)
    assert not any(core.can_connect("loadgen", n.address, 22) for n in proxies)


def test_admin_address_still_logs_in_with_sudo(deployed, proxies):
    for node in proxies:
        assert ssh(node, "sudo -n true").returncode == 0, node.name


def test_settings_that_would_lock_the_deploy_out_are_refused_before_any_change(
    deployed, lab_env, proxies
):
    run = run_deploy(lab_env, "--data", 'admin_cidrs=["192.0.2.0/24"]')
    assert run.returncode != 0
    assert "refusing to run: this deploy connects from 10.77.0.1" in run.output
    assert run.changed() == {}
    assert all(ssh(n, "true").returncode == 0 for n in proxies)


def test_sshd_runs_with_the_hardened_values(deployed, proxies):
    expected = {
        "permitrootlogin": "no",
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
        "pubkeyauthentication": "yes",
        "x11forwarding": "no",
        "allowtcpforwarding": "no",
        "allowagentforwarding": "no",
        "permittunnel": "no",
        "maxauthtries": "3",
        "logingracetime": "30",
        "loglevel": "VERBOSE",
        "allowusers": "admin",
    }
    for node in proxies:
        lines = on_host(node.name, "sshd -T").splitlines()
        effective = dict(line.split(" ", 1) for line in lines if " " in line)
        assert {k: effective.get(k) for k in expected} == expected, node.name


def test_ssh_audit_reports_no_failure_on_any_proxy(deployed, proxies):
    for node in proxies:
        audit = subprocess.run(
            [str(REPO / ".venv/bin/ssh-audit"), "-j", node.address],
            capture_output=True,
            text=True,
            timeout=120,
        )
        report = json.loads(audit.stdout)
        failing = [
            entry.get("algorithm")
            for kind in ("kex", "key", "enc", "mac")
            for entry in report.get(kind, [])
            if entry.get("notes", {}).get("fail")
        ]
        assert failing == [], f"{node.name}: {failing}"
        assert "critical" not in report.get("recommendations", {}), node.name
        assert report.get("cves") == [], node.name


def test_scanner_paths_are_answered_by_nginx_without_reaching_the_backend(deployed, proxies):
    core.backend_control("/reset", {"fail_rate": 0.0})
    try:
        for node in proxies:
            for path in SCANNER_PATHS:
                result = core.traffic("loadgen", f"http://{node.address}{path}", requests=3)
                assert set(result["outcomes"]) <= {"403", "404"}, (node.name, path, result)
        assert core.backend_control()["attempts"] == 0
    finally:
        core.backend_control("/reset", {"fail_rate": 0.2})


def test_methods_the_application_does_not_use_are_refused(deployed, proxies):
    result = core.traffic(
        "loadgen", f"http://{proxies[0].address}/pets/1", requests=3, method="DELETE"
    )
    assert result["outcomes"] == {"405": 3}


def test_live_nginx_configuration_passes_gixy(deployed, proxies, tmp_path):
    for node in proxies:
        archive = core.run_in(
            node.name, ["tar", "-C", "/etc", "-cf", "-", "nginx"], text=False, check=True
        ).stdout
        target = tmp_path / node.name
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
        gixy = subprocess.run(
            [str(Path(sys.executable).with_name("gixy")), str(target / "nginx/nginx.conf")],
            capture_output=True,
            text=True,
        )
        assert gixy.returncode == 0, gixy.stdout + gixy.stderr
        assert "No issues found" in gixy.stdout, gixy.stdout


def test_server_names_answer_other_hosts_without_proxying_but_keep_healthz(
    deployed, lab_env, proxies
):
    node = proxies[2]
    url = f"http://{node.address}"
    try:
        run = run_deploy(lab_env, "--limit", node.name, "--data", 'server_names=["vet.example"]')
        assert run.returncode == 0, run.output[-3000:]
        assert http_code("loadgen", f"{url}/pets/1", host="vet.example") == "200"
        assert http_code("loadgen", f"{url}/pets/1", host="scanner.example") in ("000", "421")
        assert http_code("loadgen", f"{url}/healthz", host=node.address) == "200"
    finally:
        assert run_deploy(lab_env, "--limit", node.name).returncode == 0


def http_code(source: str, url: str, host: str) -> str:
    """The HTTP status curl sees from lab namespace SOURCE ("000": no answer at all)."""
    result = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            f"plab-{source}",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-m",
            "5",
            "-w",
            "%{http_code}",
            "-H",
            f"Host: {host}",
            url,
        ],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


HARDENING_DRIFTS = {
    "firewall flushed": ("nft flush ruleset", "Load the inet proxy_firewall table"),
    "sshd_config edited": (
        "echo 'X11Forwarding yes' >> /etc/ssh/sshd_config",
        "Install /etc/ssh/sshd_config",
    ),
    "sysctl changed": (
        "sysctl -qw net.ipv4.conf.all.accept_redirects=1",
        "Apply the sysctl settings to the running kernel",
    ),
    "login.defs umask reset": (
        "sed -i 's/^UMASK.*/UMASK 022/' /etc/login.defs",
        "Set UMASK in /etc/login.defs",
    ),
    "module blacklist removed": (
        "rm /etc/modprobe.d/proxy-blacklist.conf",
        "Install /etc/modprobe.d/proxy-blacklist.conf",
    ),
}


@pytest.mark.parametrize("drift", HARDENING_DRIFTS)
def test_hardening_drift_is_repaired_by_one_rerun(deployed, lab_env, proxies, drift):
    node = proxies[0]
    command, repairing_op = HARDENING_DRIFTS[drift]
    on_host(node.name, command)
    repair = run_deploy(lab_env, "--limit", node.name)
    assert repair.returncode == 0, repair.output[-3000:]
    changed = repair.changed()
    assert any(repairing_op in name for name in changed), changed
    assert repair.changed_hosts() == {node.name}
    assert run_deploy(lab_env, "--limit", node.name).changed() == {}
