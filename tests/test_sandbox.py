"""Service sandboxes (issue 12, tasks/sandbox.py): the systemd drop-ins of nginx and the log
shipper, the check inside the sandbox, the roll-back. Fast unit tests.

Where this machine's systemd can analyse a unit file offline (`systemd-analyze security
--offline=true`, systemd 250+), the drop-ins are scored against the issue's goals with Debian's
own nginx.service; the lab test (tests/test_sandbox_lab.py) scores them on the real hosts.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tasks import sandbox
from tasks.activation import render, template_text
from tasks.settings import from_data

# Debian 12's and 13's nginx.service (nginx-common), [Service] part: what the drop-in extends.
DEBIAN_NGINX_SERVICE = """[Unit]
Description=A high performance web server and a reverse proxy server
After=network-online.target remote-fs.target nss-lookup.target
Wants=network-online.target

[Service]
Type=forking
PIDFile=/run/nginx.pid
ExecStartPre=/usr/sbin/nginx -t -q -g 'daemon on; master_process on;'
ExecStart=/usr/sbin/nginx -g 'daemon on; master_process on;'
ExecReload=/usr/sbin/nginx -g 'daemon on; master_process on;' -s reload
ExecStop=-/sbin/start-stop-daemon --quiet --stop --retry QUIT/5 --pidfile /run/nginx.pid
TimeoutStopSec=5
KillMode=mixed
"""


NGINX_EXPOSURE_GOAL = 4.5


SHIPPER_EXPOSURE_GOAL = 2.0


def _settings(**overrides: Any):
    return from_data(
        {"admin_cidrs": ["10.0.0.0/8"], "allowed_http_cidrs": ["0.0.0.0/0"], **overrides}
    )


def test_nginx_sandbox_lets_nginx_write_only_its_logs_temp_and_pid() -> None:
    dropin = sandbox.nginx_dropin(_settings())
    assert "ReadWritePaths=/var/log/nginx -/var/lib/nginx -/var/cache/nginx /run\n" in dropin
    assert "ProtectSystem=strict\n" in dropin


def test_nginx_sandbox_makes_an_access_log_elsewhere_writable() -> None:
    dropin = sandbox.nginx_dropin(_settings(access_log="/srv/logs/proxy.log"))
    assert "ReadWritePaths=/var/log/nginx /srv/logs -/var/lib/nginx" in dropin


def test_sandboxed_check_runs_nginx_t_with_every_property_of_the_dropin() -> None:
    dropin = sandbox.nginx_dropin(_settings())
    properties = sandbox.dropin_properties(dropin)
    assert (
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_CHOWN "
        "CAP_DAC_OVERRIDE CAP_KILL" in properties
    )
    assert properties.count("SystemCallFilter=@system-service") == 1
    command = sandbox.sandboxed_check_command(dropin)
    assert command.startswith("systemd-run --quiet --wait --pipe --collect")
    assert command.count(" -p ") == len(properties)
    assert command.endswith("/usr/sbin/nginx -t -q -g 'daemon on; master_process on;'")
    assert "{" not in command  # install_validated formats the check with {stage}


def test_restart_puts_the_last_good_sandbox_back_when_nginx_fails() -> None:
    command = sandbox.restart_or_roll_back_command(_settings(listen_port=8081))
    restart, _, roll_back = command.partition("; then ")
    assert "systemctl restart nginx && curl" in restart and ":8081/healthz" in restart
    assert roll_back.index("cp -p /var/lib/proxy-deploy/last-good/nginx-sandbox/etc/systemd/") < (
        roll_back.index("systemctl daemon-reload")
    )
    assert "rm -f /etc/systemd/system/nginx.service.d/proxy-sandbox.conf" in roll_back
    assert roll_back.rstrip("; fi").endswith("exit 1")


def test_shipper_sandbox_runs_as_its_own_user_and_keeps_its_shipped_list() -> None:
    dropin = template_text("systemd/proxy-log-shipping-sandbox.conf")
    for line in (
        "DynamicUser=yes",
        "SupplementaryGroups=adm",
        "StateDirectory=proxy-log-shipping",
        "Environment=SHIP_STATE_FILE=/var/lib/proxy-log-shipping/log-shipping.json",
        "CapabilityBoundingSet=",
    ):
        assert f"\n{line}\n" in dropin
    assert "ExecStartPre=+/bin/sh -c '[ -e %S/proxy-log-shipping/log-shipping.json ]" in dropin


def _exposure(tmp_path: Path, name: str, unit: str) -> float:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze here")
    path = tmp_path / name
    path.write_text(unit)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(path)],
        capture_output=True,
        text=True,
    )
    if "Overall exposure level" not in result.stdout:
        pytest.skip(f"systemd-analyze cannot score offline here: {result.stderr.strip()[:200]}")
    last = result.stdout.strip().splitlines()[-1]
    return float(last.split(":")[1].split()[0])


def _with_dropin(unit: str, dropin: str) -> str:
    return unit + dropin.split("[Service]\n", 1)[1]


def test_nginx_sandbox_scores_within_the_goal_offline(tmp_path: Path) -> None:
    before = _exposure(tmp_path, "nginx.service", DEBIAN_NGINX_SERVICE)
    after = _exposure(
        tmp_path,
        "nginx.service",
        _with_dropin(DEBIAN_NGINX_SERVICE, sandbox.nginx_dropin(_settings())),
    )
    print(f"nginx.service exposure (offline): {before} -> {after}")
    assert before > 9 and after <= NGINX_EXPOSURE_GOAL


def test_shipper_sandbox_scores_within_the_goal_offline(tmp_path: Path) -> None:
    unit = render(
        "logs/proxy-log-shipping.service.j2",
        s=_settings(log_bucket="proxy-logs"),
        audit_log="/var/log/audit/audit.log",
    )
    before = _exposure(tmp_path, "proxy-log-shipping.service", unit)
    dropin = template_text("systemd/proxy-log-shipping-sandbox.conf")
    after = _exposure(tmp_path, "proxy-log-shipping.service", _with_dropin(unit, dropin))
    print(f"proxy-log-shipping.service exposure (offline): {before} -> {after}")
    assert after <= SHIPPER_EXPOSURE_GOAL < before
