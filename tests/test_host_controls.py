"""Service sandboxes, host controls and pinned sysctl keys (issue 12): fast unit tests.

Covers tasks/sandbox.py, tasks/host_controls.py, their templates and the settings they read.
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

from tasks import host_controls, packages, sandbox
from tasks.activation import render, template_text
from tasks.hardening_defaults import KERNEL_MODULES_NOT_ON_A_PROXY, SYSCTL_PINNED
from tasks.settings import SettingsError, from_data

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

# Debian 12's /etc/login.defs, the lines that matter (13's has none of them).
LOGIN_DEFS_DEBIAN_12 = """#	UMASK		Default "umask" value.
# UMASK is the default umask value for pam_umask and is used by
UMASK		022
ENCRYPT_METHOD SHA512
#SHA_CRYPT_MIN_ROUNDS 5000
#SHA_CRYPT_MAX_ROUNDS 5000
"""
LOGIN_DEFS_DEBIAN_13 = "MAIL_DIR        /var/mail\nENCRYPT_METHOD YESCRYPT\n"


def _settings(**overrides: Any):
    return from_data(
        {"admin_cidrs": ["10.0.0.0/8"], "allowed_http_cidrs": ["0.0.0.0/0"], **overrides}
    )


# --- pinned sysctl keys ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(SYSCTL_PINNED))
def test_sysctl_overrides_refuse_a_pinned_key_naming_key_value_and_reason(key: str) -> None:
    with pytest.raises(SettingsError) as refused:
        _settings(sysctl_overrides={key: 1})
    message = str(refused.value)
    assert f"{key} = 1 changes a pinned key: it stays {SYSCTL_PINNED[key]}" in message
    assert "rout" in message  # the reason: a proxy is not a router


@pytest.mark.parametrize("value", [0, "0"])
def test_sysctl_overrides_accept_a_pinned_key_at_its_pinned_value(value: Any) -> None:
    assert _settings(sysctl_overrides={"net.ipv4.ip_forward": value}).sysctl_overrides


# --- sandbox drop-ins -----------------------------------------------------------------------------


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
    unit = render("logs/proxy-log-shipping.service.j2", s=_settings(log_bucket="proxy-logs"))
    before = _exposure(tmp_path, "proxy-log-shipping.service", unit)
    dropin = template_text("systemd/proxy-log-shipping-sandbox.conf")
    after = _exposure(tmp_path, "proxy-log-shipping.service", _with_dropin(unit, dropin))
    print(f"proxy-log-shipping.service exposure (offline): {before} -> {after}")
    assert after <= SHIPPER_EXPOSURE_GOAL < before


# --- host controls --------------------------------------------------------------------------------


def test_module_blacklist_makes_every_listed_module_unloadable_with_its_reason() -> None:
    conf = render(
        "modprobe/proxy-blacklist.conf.j2",
        modules=KERNEL_MODULES_NOT_ON_A_PROXY,
        reasons=host_controls.KERNEL_MODULE_REASONS,
    )
    for module in ("dccp", "sctp", "rds", "tipc", "usb-storage", "firewire-core", "cramfs", "udf"):
        assert f"\ninstall {module} /bin/false\nblacklist {module}\n" in conf + "\n"
    assert "\n# Datagram Congestion Control Protocol" in conf
    assert "vfat" not in _settings().kernel_module_blacklist  # the EFI system partition


def test_module_blacklist_refuses_a_name_modprobe_would_not_take() -> None:
    with pytest.raises(SettingsError, match="kernel_module_blacklist"):
        _settings(kernel_module_blacklist=["dccp /bin/true"])


def _apply_login_defs(tmp_path: Path, text: str) -> str:
    path = tmp_path / "login.defs"
    path.write_text(text)
    values = {k: v for k, (_, v) in host_controls.login_defs_differences("").items()}
    command = host_controls.login_defs_command(values, str(path), str(tmp_path / "kept"))
    subprocess.run(["sh", "-c", command], check=True)
    assert (tmp_path / "kept").read_text() == text
    return path.read_text()


def _active(text: str) -> str:
    """What the deploy's fact reads back (awk over the active lines)."""
    keys = "|".join(k for k, _, _ in host_controls.LOGIN_DEFS)
    return subprocess.run(
        ["awk", f"$1 ~ /^({keys})$/ {{print $1, $2}}"], input=text, capture_output=True, text=True
    ).stdout


@pytest.mark.skipif(shutil.which("sed") is None, reason="no sed")
def test_login_defs_replaces_the_active_line_and_the_commented_examples_only(
    tmp_path: Path,
) -> None:
    after = _apply_login_defs(tmp_path, LOGIN_DEFS_DEBIAN_12)
    assert after.splitlines() == [
        '#	UMASK		Default "umask" value.',
        "# UMASK is the default umask value for pam_umask and is used by",
        "UMASK\t027",
        "ENCRYPT_METHOD SHA512",
        "SHA_CRYPT_MIN_ROUNDS\t640000",
        "SHA_CRYPT_MAX_ROUNDS\t640000",
    ]
    assert host_controls.login_defs_differences(_active(after)) == {}


def test_login_defs_appends_the_keys_a_file_does_not_have(tmp_path: Path) -> None:
    after = _apply_login_defs(tmp_path, LOGIN_DEFS_DEBIAN_13)
    assert after.startswith(LOGIN_DEFS_DEBIAN_13)
    assert after[len(LOGIN_DEFS_DEBIAN_13) :].splitlines() == [
        "UMASK\t027",
        "SHA_CRYPT_MIN_ROUNDS\t640000",
        "SHA_CRYPT_MAX_ROUNDS\t640000",
    ]
    assert host_controls.login_defs_differences(_active(after)) == {}


def test_login_defs_differences_name_only_the_keys_that_differ() -> None:
    live = "UMASK 027\nSHA_CRYPT_MIN_ROUNDS 5000\n"
    assert host_controls.login_defs_differences(live) == {
        "SHA_CRYPT_MIN_ROUNDS": ("5000", "640000"),
        "SHA_CRYPT_MAX_ROUNDS": ("", "640000"),
    }


def test_needrestart_restarts_services_automatically() -> None:
    conf = render("host/needrestart.conf.j2", conf=host_controls.NEEDRESTART_CONF)
    assert "\n$nrconf{restart} = 'a';\n" in conf
    perl = shutil.which("perl")
    if perl:  # needrestart reads it as Perl
        check = subprocess.run([perl, "-c", "-e", "my %nrconf;\n" + conf], capture_output=True)
        assert check.returncode == 0, check.stderr


@pytest.mark.parametrize(("enabled", "expected"), [(True, True), (False, False)])
def test_needrestart_is_in_the_one_apt_transaction_only_when_enabled(
    enabled: bool, expected: bool
) -> None:
    needed = packages.needed(_settings(needrestart_enabled=enabled))
    assert ("needrestart" in needed) is expected


def test_sshd_shows_the_legal_banner_only_when_there_is_one() -> None:
    with_banner = render("ssh/sshd_config.j2", s=_settings(), ssh_port=22)
    without = render("ssh/sshd_config.j2", s=_settings(legal_banner=""), ssh_port=22)
    assert "\nBanner /etc/issue.net\n" in with_banner and "\nBanner none\n" not in with_banner
    assert "\nBanner none\n" in without and "issue.net" not in without


def test_legal_banner_refuses_a_backslash_agetty_would_interpret() -> None:
    with pytest.raises(SettingsError, match="legal_banner"):
        _settings(legal_banner="Welcome to \\n")
    issue = render("host/issue.j2", banner=_settings().legal_banner)
    assert issue.startswith("Authorised access only.") and "\\" not in issue


# --- auditd ---------------------------------------------------------------------------------------


def test_audit_rules_watch_what_matters_on_a_proxy() -> None:
    rules = template_text("audit/90-proxy.rules")
    for path, key in (
        ("/etc/ssh/sshd_config", "sshd"),
        ("/etc/sudoers", "sudoers"),
        ("/etc/sudoers.d/", "sudoers"),
        ("/etc/shadow", "identity"),
        ("/etc/nginx/", "nginx"),
        ("/etc/nftables.conf", "firewall"),
    ):
        assert f"\n-w {path} -p wa -k {key}\n" in rules
    assert "-S init_module,finit_module,delete_module -k modules" in rules
    assert "\n-e 2" not in rules  # immutable rules would need a reboot for every change
    assert "\n-D" not in rules  # Debian's audit.rules deletes first; a second -D would drop it


@pytest.mark.parametrize(("enabled", "expected"), [(True, True), (False, False)])
def test_auditd_is_in_the_one_apt_transaction_only_when_enabled(
    enabled: bool, expected: bool
) -> None:
    assert ("auditd" in packages.needed(_settings(auditd_enabled=enabled))) is expected


def test_auditd_is_skipped_not_failed_in_a_container() -> None:
    from tasks import auditd

    assert auditd.DROPINS == (
        "/etc/systemd/system/auditd.service.d/proxy-not-in-container.conf",
        "/etc/systemd/system/audit-rules.service.d/proxy-not-in-container.conf",
    )
    dropin = template_text("audit/not-in-container.conf")
    assert "\n[Unit]\nConditionVirtualization=!container\n" in dropin
