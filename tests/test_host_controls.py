"""Host controls (issue 12, tasks/host_controls.py): the module blacklist, login.defs, needrestart,
the legal banner, their templates and the settings they read. Fast unit tests; on the lab:
tests/test_host_controls_lab.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tasks import host_controls, packages
from tasks.activation import render
from tasks.hardening_defaults import KERNEL_MODULES_NOT_ON_A_PROXY
from tasks.settings import SettingsError, from_data
from tasks.sshd import sshd_config

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


# --- sandbox drop-ins -----------------------------------------------------------------------------


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
    with_banner = sshd_config(_settings(), 22, None)
    without = sshd_config(_settings(legal_banner=""), 22, None)
    assert "\nBanner /etc/issue.net\n" in with_banner and "\nBanner none\n" not in with_banner
    assert "\nBanner none\n" in without and "issue.net" not in without


def test_legal_banner_refuses_a_backslash_agetty_would_interpret() -> None:
    with pytest.raises(SettingsError, match="legal_banner"):
        _settings(legal_banner="Welcome to \\n")
    issue = render("host/issue.j2", banner=_settings().legal_banner)
    assert issue.startswith("Authorised access only.") and "\\" not in issue
