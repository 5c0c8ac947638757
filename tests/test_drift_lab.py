"""Drift you can trust (issue 10), on the lab: what the services run, not only their files; runs
killed mid-change and hosts rebooted after; drift reports with diffs, one line per live-state
mismatch, and validation of the repair; hardening drift (firewall, sshd_config, sysctl,
login.defs, module blacklist) repaired by one run.

Drift detection is the real `python -m tools.rollout drift` (pyinfra --dry through the real
inventory); repairs are real deploys; kills are SIGKILLs of the real pyinfra process, timed by
watching the host; reboots are real reboots of the host's systemd (tests use `lab.core.reboot`).

LAB_STAGE 12: after the deploy tests (the fleet is converged), before hardening and the pipeline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, DeployRun, run_deploy
from lab_hosts import on_host, sha1_of
from test_lab import ssh

from lab import core

pytestmark = pytest.mark.lab
LAB_STAGE = 12

NGINX_CONF = "/etc/nginx/nginx.conf"
SSHD_CONFIG = "/etc/ssh/sshd_config"
RULESET = "/etc/nftables.conf"
PROXY_LOG = "/var/log/nginx/proxy_access.log"


def drift_check(lab_env: dict[str, str], tmp_path, *pyinfra_args: str) -> tuple[int, str, dict]:
    """`python -m tools.rollout drift --report FILE`: (exit code, report text, report JSON)."""
    report = tmp_path / "drift-report.txt"
    command = [sys.executable, "-m", "tools.rollout", "drift", "--report", str(report)]
    if pyinfra_args:
        pyinfra = [str(REPO / ".venv/bin/pyinfra"), *pyinfra_args]
        command += ["--pyinfra", subprocess.list2cmdline(pyinfra)]
    done = subprocess.run(
        command, cwd=REPO, env=lab_env, capture_output=True, text=True, timeout=600
    )
    text = report.read_text() if report.exists() else done.stdout + done.stderr
    data_file = report.with_suffix(".json")
    data = json.loads(data_file.read_text()) if data_file.exists() else {}
    return done.returncode, text, data


def converge(lab_env: dict[str, str], host: str, *args: str) -> DeployRun:
    run = run_deploy(lab_env, "--limit", host, *args)
    assert run.returncode == 0, run.output[-3000:]
    return run


def assert_converged(lab_env: dict[str, str], host: str, *args: str) -> None:
    again = converge(lab_env, host, *args)
    assert again.changed() == {}, again.changed()


def attempts_per_request(host: str, count: int) -> list[int]:
    """Upstream attempts of the last COUNT requests in HOST's access log."""
    lines = on_host(host, f"tail -n {count} {PROXY_LOG}").splitlines()
    return [len(json.loads(line)["upstream_status"].split(",")) for line in lines]


# --- what the services run -------------------------------------------------------------------


def test_file_replaced_without_reload_is_drift_and_one_run_makes_nginx_use_it(
    deployed, lab_env, proxies, tmp_path
):
    """The case a run killed between "Install" and "Reload" leaves: the file is the desired one,
    nginx runs an older one. Seen by behaviour: attempts per request while every try fails."""
    host = proxies[0].name
    url = f"http://{proxies[0].address}/pets/1"
    on_host(host, f"cp -p {NGINX_CONF} /root/desired-nginx.conf")
    try:
        converge(lab_env, host, "--data", "proxy_tries=1")  # nginx runs 1 try per request
        on_host(host, f"cp /root/desired-nginx.conf {NGINX_CONF}")  # desired file, no reload
        core.backend_control("/reset", {"fail_rate": 1.0})
        core.traffic("loadgen", url, requests=20)
        # Still the old configuration: one try (more only when a reused keepalive connection
        # broke, which nginx retries whatever the setting).
        assert sorted(attempts_per_request(host, 20))[10] == 1

        code, report, data = drift_check(lab_env, tmp_path)
        assert code == 3, report
        assert list(data["drifted"]) == [host], report
        assert f"nginx: running configuration older than {NGINX_CONF}" in report, report

        repair = converge(lab_env, host)
        assert any("Reload nginx" in op for op in repair.changed()), repair.changed()
        assert "running configuration older than" in repair.output
        core.traffic("loadgen", url, requests=20)
        assert min(attempts_per_request(host, 20)) >= 3  # the new one: every try, all failing
        assert_converged(lab_env, host)
    finally:
        core.backend_control("/reset", {"fail_rate": 0.2})
        converge(lab_env, host)


def test_old_apt_cache_is_not_drift(deployed, lab_env, proxies, tmp_path):
    for node in proxies:
        on_host(node.name, "touch -d '2 hours ago' /var/lib/apt/periodic/update-success-stamp")
    code, report, _ = drift_check(lab_env, tmp_path)
    assert code == 0, report
    assert "RESULT: IN STEP" in report
    again = run_deploy(lab_env)
    assert again.returncode == 0, again.output[-3000:]
    assert again.changed() == {}


# Each kind of drift, all made on one host, then one drift check and one repair.
DRIFTS = {
    "file edited": (f"echo '# hand edit' >> {NGINX_CONF}", f"file {NGINX_CONF}: differs"),
    "file deleted": (
        "rm /etc/apt/apt.conf.d/20auto-upgrades",
        "file /etc/apt/apt.conf.d/20auto-upgrades: missing on the host",
    ),
    "file mode changed": (
        "chmod 644 /etc/default/proxy-log-shipping",
        "/etc/default/proxy-log-shipping: mode 644, should be 600",
    ),
    "service stopped": ("systemctl stop nginx", "nginx: not active, should be active"),
    "service disabled": (
        "systemctl disable --quiet nftables",
        "nftables: not enabled at boot, should be enabled at boot",
    ),
    "sysctl changed live": (
        "sysctl -qw net.ipv4.conf.all.send_redirects=1",
        "net.ipv4.conf.all.send_redirects: live 1, should be 0",
    ),
    "package removed": ("dpkg --purge logrotate >/dev/null", "package logrotate: not installed"),
    # The fast path reads these in its one command too: which paths exist, activation records.
    "default site back": (
        "ln -s /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default",
        "/etc/nginx/sites-enabled/default: present, should not be",
    ),
    "activation record lost": (
        "rm /var/lib/proxy-deploy/active/sshd",
        "sshd: running configuration older than /etc/ssh/sshd_config",
    ),
    # Last: it opens SSH to everyone until the repair (the policy is accept without the table).
    "nftables table flushed": (
        "nft delete table inet proxy_firewall",
        "nftables: table inet proxy_firewall is not loaded",
    ),
}


def test_each_drift_kind_is_reported_with_its_diff_or_line_and_repaired_by_one_run(
    deployed, lab_env, proxies, tmp_path
):
    host = proxies[1].name
    for command, _ in DRIFTS.values():
        on_host(host, command)
    code, report, data = drift_check(lab_env, tmp_path)
    assert code == 3, report
    assert list(data["drifted"]) == [host], report
    for kind, (_, expected) in DRIFTS.items():
        assert expected in report, f"{kind}: {expected!r} not in\n{report}"
    assert "+# hand edit" not in report and "-# hand edit" in report  # diff: live -> desired
    assert "possibly" not in report and "no detail recorded" not in report

    converge(lab_env, host)
    assert on_host(host, "systemctl is-active nginx; systemctl is-enabled nftables").split() == [
        "active",
        "enabled",
    ]
    assert on_host(host, "dpkg-query -W -f '${Status}' logrotate") == "install ok installed"
    assert on_host(host, "stat -c %a /etc/default/proxy-log-shipping").strip() == "600"
    assert on_host(host, "test -e /etc/nginx/sites-enabled/default || echo gone") == "gone\n"
    assert core.traffic("loadgen", f"http://{proxies[1].address}/healthz", requests=5)["ok"] == 5
    assert not core.can_connect("outsider", proxies[1].address, 22)
    (tmp_path / "after").mkdir()
    code, report, _ = drift_check(lab_env, tmp_path / "after")
    assert code == 0, report
    assert_converged(lab_env, host)


def test_repair_that_would_fail_validation_is_reported_and_nothing_changes(
    deployed, lab_env, proxies, tmp_path
):
    host = proxies[2].name
    on_host(host, f"echo '# hand edit' >> {NGINX_CONF}")
    try:
        before = sha1_of(host, NGINX_CONF)
        bad = 'upstream_servers=["no-such-backend.invalid:8080"]'
        code, report, data = drift_check(lab_env, tmp_path, "--data", bad)
        assert code == 3, report
        assert "REPAIR WOULD FAIL VALIDATION" in report, report
        assert 'host not found in upstream "no-such-backend.invalid:8080"' in report, report
        kinds = {entry["kind"] for entry in data["drifted"][host]}
        assert "invalid" in kinds, data
        assert sha1_of(host, NGINX_CONF) == before
        assert core.traffic("loadgen", f"http://{proxies[2].address}/pets/1", requests=50)["ok"]
    finally:
        converge(lab_env, host)


# --- runs killed mid-change, hosts rebooted after -----------------------------------------------


def kill_deploy_when(
    lab_env: dict[str, str], host: str, condition: str, *args: str, timeout: float = 120.0
) -> str:
    """Start a real deploy of HOST with ARGS and SIGKILL it as soon as the shell CONDITION holds
    on the host (polled through the host's own namespaces). Returns how far it got."""
    command = [str(REPO / ".venv/bin/pyinfra"), "-y", "inventories/aws.py", "deploy.py"]
    proc = subprocess.Popen(
        [*command, "--limit", host, *args],
        cwd=REPO,
        env=lab_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if core.run_in(host, ["sh", "-c", condition]).returncode == 0:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return "killed"
        return "finished before the kill" if proc.poll() is not None else "timed out"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def assert_host_serves_and_admits_the_deploy(node) -> None:
    """SSH works for the deploy (a fresh login with sudo), nginx serves, the firewall is loaded."""
    assert ssh(node, "sudo -n true").returncode == 0, "the deploy's fresh login failed"
    assert core.traffic("loadgen", f"http://{node.address}/healthz", requests=5)["ok"] == 5
    assert "proxy_firewall" in on_host(node.name, "nft list tables")
    assert not core.can_connect("outsider", node.address, 22)


def changed_sha(host: str, path: str) -> str:
    """A shell condition: PATH's content differs from what it is now."""
    return f"[ \"$(sha1sum {path} | cut -d' ' -f1)\" != {sha1_of(host, path)} ]"


KILL_POINTS = {
    # the sshd safety net is armed: `pending` exists, the new file may or may not be in place
    "sshd armed": ("sshd_max_auth_tries=4", "[ -e /var/lib/proxy-deploy/sshd/pending ]"),
    "sshd_config swapped": ("sshd_max_auth_tries=4", SSHD_CONFIG),
    "nginx.conf swapped": ("proxy_read_timeout=13s", NGINX_CONF),
    "nftables.conf swapped": ('allowed_http_cidrs=["10.77.0.0/24","192.0.2.0/24"]', RULESET),
}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_deploy_killed_mid_change_then_host_rebooted_recovers_and_converges(
    deployed, lab_env, proxies, point
):
    node = proxies[0]
    setting, watched = KILL_POINTS[point]
    condition = watched if watched.startswith("[") else changed_sha(node.name, watched)
    try:
        outcome = kill_deploy_when(lab_env, node.name, condition, "--data", setting)
        assert outcome == "killed", outcome

        assert_host_serves_and_admits_the_deploy(node)
        on_host(node.name, "systemctl restart ssh")
        assert_host_serves_and_admits_the_deploy(node)
        core.reboot(node.name)
        assert_host_serves_and_admits_the_deploy(node)

        repair = converge(lab_env, node.name, "--data", setting)
        assert repair.changed(), "the re-run repaired nothing after a killed run"
        assert_converged(lab_env, node.name, "--data", setting)
        assert not on_host(node.name, "ls /var/lib/proxy-deploy/sshd/pending 2>/dev/null")
    finally:
        converge(lab_env, node.name)


def test_unconfirmed_sshd_config_is_rolled_back_at_boot_and_by_the_timer(
    deployed, lab_env, proxies
):
    """The state a run killed after the sshd reload leaves, made exactly: a new sshd_config live
    but never confirmed (here one that would lock the deploy out: AllowUsers nobody)."""
    node = proxies[2]
    confirmed = sha1_of(node.name, SSHD_CONFIG)
    lockout = (
        "touch /var/lib/proxy-deploy/sshd/pending"
        f" && sed -i 's/^AllowUsers .*/AllowUsers nobody/' {SSHD_CONFIG}"
        " && systemctl reload ssh"
    )
    try:
        on_host(node.name, lockout)
        assert ssh(node, "true").returncode != 0  # locked out: the safety net must act
        core.reboot(node.name)
        assert sha1_of(node.name, SSHD_CONFIG) == confirmed
        assert_host_serves_and_admits_the_deploy(node)

        on_host(node.name, lockout)
        assert ssh(node, "true").returncode != 0
        # What the armed timer does when it fires: it starts this service.
        on_host(node.name, "systemctl start proxy-deploy-sshd-rollback.service")
        assert sha1_of(node.name, SSHD_CONFIG) == confirmed
        # Its reload is queued (--no-block); OpenSSH 9.2 (Debian 12) re-executes itself on a
        # reload and does not listen for that moment: wait for the job, then for the port.
        wait_jobs = "while systemctl list-jobs | grep -q ssh; do sleep 0.1; done"
        on_host(node.name, f"timeout 10 sh -c '{wait_jobs}'")
        wait_listening = "until ss -Htln sport = :22 | grep -q .; do sleep 0.1; done"
        on_host(node.name, f"timeout 10 sh -c '{wait_listening}'")
        assert ssh(node, "sudo -n true").returncode == 0  # its queued reload has run
        repair = converge(lab_env, node.name)
        assert repair.changed(), "the rolled-back host should be re-confirmed by the next run"
        assert_converged(lab_env, node.name)
    finally:
        converge(lab_env, node.name)


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
