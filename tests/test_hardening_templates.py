"""Host-hardening templates, rendered by the deploy's own functions (tasks.activation.render).

Covers templates/ssh/sshd_config.j2, templates/nftables/nftables.conf.j2,
templates/sysctl/hardening.conf.j2, templates/apt/*.j2 and tasks/hardening_defaults.py. Where the
real tool is on this machine the rendered file is also checked by it: `nft -c` (checks only, loads
nothing), `sshd -t`, `apt-config`. Fast unit tests: no lab, no network.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tasks import hardening_defaults as hd
from tasks.activation import render
from tasks.firewall import nftables_conf
from tasks.settings import Settings, from_data
from tasks.sshd import sshd_config
from tasks.sysctl import sysctl_conf

ADMIN_CIDRS = ["10.77.0.1/32", "10.0.0.0/8", "2001:db8:1::/48"]
HTTP_CIDRS = ["10.77.0.0/24", "fd00:77::/64"]


def _settings(**overrides: Any) -> Settings:
    """The Settings object for `overrides` on top of a minimal valid host."""
    return from_data({"admin_cidrs": ADMIN_CIDRS, "allowed_http_cidrs": HTTP_CIDRS, **overrides})


def _sshd(s: Settings | None = None, ssh_port: int = 22, openssh_version: Any | None = None) -> str:
    return sshd_config(s or _settings(), ssh_port, openssh_version)


def _sshd_options(text: str) -> dict[str, list[str]]:
    """keyword (lower case) -> every value given for it, in file order."""
    options: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, value = line.partition(" ")
            options.setdefault(keyword.lower(), []).append(value.strip())
    return options


def _nft(s: Settings | None = None, ssh_port: int = 22) -> str:
    return nftables_conf(s or _settings(), ssh_port)


def _nft_set(text: str, name: str) -> list[str]:
    """Elements of named set NAME in a rendered ruleset ([] when it has none)."""
    block = re.search(rf"set {name} \{{(.*?)\n\t\}}", text, re.S)
    assert block, f"no set {name}"
    elements = re.search(r"elements = \{ (.*) \}", block.group(1))
    return elements.group(1).split(", ") if elements else []


def _rules(text: str) -> list[str]:
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def _sysctl(s: Settings | None = None) -> str:
    return sysctl_conf((s or _settings()).sysctl_overrides)


def _sysctl_values(text: str) -> dict[str, str]:
    pairs = [line.split(" = ", 1) for line in _rules(text)]
    return {key: value for key, value in pairs}


# --- sshd_config ----------------------------------------------------------------------------------


def test_sshd_config_has_hardened_values_with_defaults() -> None:
    options = _sshd_options(_sshd())
    expected = {
        "port": "22",
        "permitrootlogin": "no",
        "authenticationmethods": "publickey",
        "pubkeyauthentication": "yes",
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
        "permitemptypasswords": "no",
        "hostbasedauthentication": "no",
        "allowusers": "admin",
        "logingracetime": "30s",
        "maxauthtries": "3",
        "loglevel": "VERBOSE",
        "usepam": "yes",
        "disableforwarding": "yes",
        "allowtcpforwarding": "no",
        "allowstreamlocalforwarding": "no",
        "allowagentforwarding": "no",
        "x11forwarding": "no",
        "permittunnel": "no",
        "gatewayports": "no",
        "clientaliveinterval": "300",
        "subsystem": "sftp internal-sftp -f AUTHPRIV -l INFO",
    }
    assert {key: options.get(key, [None])[0] for key in expected} == expected


def test_sshd_config_sets_each_keyword_once_and_includes_no_drop_ins() -> None:
    options = _sshd_options(_sshd())
    # sshd keeps the first value: a keyword given twice, or an Include of sshd_config.d/, would let
    # something else decide.
    repeated = {k: v for k, v in options.items() if len(v) > 1 and k != "hostkey"}
    assert repeated == {}
    assert "include" not in options


def test_sshd_config_follows_port_users_and_limits_when_overridden() -> None:
    s = _settings(
        sshd_allow_users=["admin", "ops"],
        sshd_login_grace_time="20s",
        sshd_max_auth_tries=2,
        sshd_client_alive_interval=120,
    )
    options = _sshd_options(_sshd(s, ssh_port=2222))
    assert options["port"] == ["2222"]
    assert options["allowusers"] == ["admin ops"]
    assert options["logingracetime"] == ["20s"]
    assert options["maxauthtries"] == ["2"]
    assert options["clientaliveinterval"] == ["120"]


def test_sshd_config_renders_algorithm_settings_verbatim_without_version() -> None:
    s = _settings()
    options = _sshd_options(_sshd(s))
    assert options["ciphers"] == [",".join(s.sshd_ciphers)]
    assert options["macs"] == [",".join(s.sshd_macs)]
    assert options["kexalgorithms"] == [",".join(s.sshd_kex_algorithms)]
    assert "persourcepenaltyexemptlist" not in options


@pytest.mark.parametrize("version", [None, (9, 2), (9, 8), (9, 9), (10, 0), [10, 0]], ids=str)
def test_sshd_config_kex_matches_helper_for_openssh_version(version: Any) -> None:
    s = _settings()
    options = _sshd_options(_sshd(s, openssh_version=version))
    expected = hd.effective_kex_algorithms(s.sshd_kex_algorithms, version)
    assert options["kexalgorithms"] == [",".join(expected)]
    newer = set(hd.SSHD_KEX_ALGORITHMS_SINCE_9_9)
    if version is None or tuple(version) < (9, 9):
        # OpenSSH 9.2 refuses to start on these names.
        assert newer.isdisjoint(expected)
    else:
        assert expected[: len(newer)] == list(hd.SSHD_KEX_ALGORITHMS_SINCE_9_9)


def test_sshd_config_kex_does_not_repeat_a_configured_post_quantum_name() -> None:
    s = _settings(sshd_kex_algorithms=["mlkem768x25519-sha256", "curve25519-sha256@libssh.org"])
    options = _sshd_options(_sshd(s, openssh_version=(10, 0)))
    kex = options["kexalgorithms"][0].split(",")
    assert kex == [
        "sntrup761x25519-sha512",
        "mlkem768x25519-sha256",
        "curve25519-sha256@libssh.org",
    ]


@pytest.mark.parametrize("version", [(9, 2), (9, 7), (9, 8), (10, 0)], ids=str)
def test_sshd_config_exempts_admin_cidrs_from_penalties_from_openssh_9_8(version: Any) -> None:
    options = _sshd_options(_sshd(openssh_version=version))
    if version >= hd.OPENSSH_PENALTY_EXEMPT_MIN_VERSION:
        assert options["persourcepenaltyexemptlist"] == [",".join(ADMIN_CIDRS)]
    else:  # the keyword is unknown to OpenSSH before 9.8
        assert "persourcepenaltyexemptlist" not in options


def test_sshd_config_never_exempts_everyone_from_penalties() -> None:
    # The settings refuse /0 in admin_cidrs (test_settings.py); the template holds the line on
    # its own too, for a Settings object built past validation.
    s = dataclasses.replace(_settings(), admin_cidrs=("0.0.0.0/0", "::/0"))
    assert "persourcepenaltyexemptlist" not in _sshd_options(_sshd(s, openssh_version=(10, 0)))
    s = dataclasses.replace(_settings(), admin_cidrs=("0.0.0.0/0", "10.77.0.1/32"))
    options = _sshd_options(_sshd(s, openssh_version=(10, 0)))
    assert options["persourcepenaltyexemptlist"] == ["10.77.0.1/32"]


def test_sshd_config_host_keys_match_hardening_defaults() -> None:
    options = _sshd_options(_sshd())
    assert options["hostkey"] == list(hd.SSHD_HOST_KEY_FILES)
    assert options["hostkeyalgorithms"] == [",".join(hd.SSHD_HOST_KEY_ALGORITHMS)]
    assert options["requiredrsasize"] == [str(hd.SSHD_REQUIRED_RSA_SIZE)]


def _ssh_audit_db() -> dict[str, dict[str, list[list[str | None]]]]:
    kexdb = pytest.importorskip("ssh_audit.ssh2_kexdb", reason="ssh-audit is not installed")
    return kexdb.SSH2_KexDB.get_db()


@pytest.mark.parametrize(
    ("category", "names"),
    [
        ("kex", hd.SSHD_KEX_ALGORITHMS + hd.SSHD_KEX_ALGORITHMS_SINCE_9_9),
        ("enc", hd.SSHD_CIPHERS),
        ("mac", hd.SSHD_MACS),
        ("key", hd.SSHD_HOST_KEY_ALGORITHMS),
    ],
)
def test_ssh_algorithms_have_no_ssh_audit_failure(category: str, names: tuple[str, ...]) -> None:
    db = _ssh_audit_db()[category]
    unknown = [name for name in names if name not in db]  # ssh-audit warns on unknown names
    failing = {
        name: db[name][1] for name in names if name in db and len(db[name]) > 1 and db[name][1]
    }
    assert unknown == []
    assert failing == {}


def test_ssh_default_algorithms_keep_one_paramiko_speaks() -> None:
    paramiko = pytest.importorskip("paramiko")
    transport = paramiko.Transport
    # pyinfra logs in with paramiko: without a common algorithm the deploy locks itself out.
    assert set(hd.SSHD_KEX_ALGORITHMS) & set(transport._preferred_kex)
    assert set(hd.SSHD_HOST_KEY_ALGORITHMS) & set(transport._preferred_keys)
    paramiko_ciphers = set(hd.SSHD_CIPHERS) & set(transport._preferred_ciphers)
    assert paramiko_ciphers
    if not any(c.endswith("-gcm@openssh.com") for c in paramiko_ciphers):
        assert set(hd.SSHD_MACS) & set(transport._preferred_macs)  # CTR modes need a MAC


def _openssh_version() -> tuple[int, int] | None:
    ssh = shutil.which("ssh")
    if ssh is None:
        return None
    result = subprocess.run([ssh, "-V"], capture_output=True, text=True, check=False)
    return hd.parse_openssh_version(result.stderr + result.stdout)


def test_sshd_config_passes_sshd_check_when_sshd_installed(tmp_path: Path) -> None:
    sshd = Path("/usr/sbin/sshd")
    if not sshd.exists():
        pytest.skip("no /usr/sbin/sshd on this machine (openssh-server is not installed)")
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        pytest.skip("sshd -t as root needs its privilege separation directory /run/sshd")
    key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    config = tmp_path / "sshd_config"
    config.write_text(_sshd(openssh_version=_openssh_version()))
    # -h adds our throw-away host key; the HostKey paths of the file may not exist here.
    result = subprocess.run(
        [str(sshd), "-t", "-f", str(config), "-h", str(key)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_parse_openssh_version_reads_ssh_banner_strings() -> None:
    assert hd.parse_openssh_version("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15") == (9, 2)
    assert hd.parse_openssh_version("OpenSSH_10.0p2 Debian-7, OpenSSL 3.5.1") == (10, 0)
    assert hd.parse_openssh_version("dropbear 2022.83") is None


# --- nftables -------------------------------------------------------------------------------------


def test_nftables_replaces_only_its_own_table_atomically() -> None:
    rules = _rules(_nft())
    assert rules[:3] == [
        "table inet proxy_firewall",
        "delete table inet proxy_firewall",
        "table inet proxy_firewall {",
    ]
    assert not any("flush ruleset" in rule for rule in rules)


def test_nftables_input_policy_is_drop_and_output_accept() -> None:
    text = _nft()
    assert "type filter hook input priority filter; policy drop;" in text
    assert "type filter hook output priority filter; policy accept;" in text
    assert "hook forward" not in text
    rules = _rules(text)
    assert 'iif "lo" accept' in rules
    assert "ct state vmap { established : accept, related : accept, invalid : drop }" in rules


def test_nftables_splits_mixed_cidr_lists_by_family() -> None:
    text = _nft()
    assert _nft_set(text, "admin_v4") == ["10.77.0.1/32", "10.0.0.0/8"]
    assert _nft_set(text, "admin_v6") == ["2001:db8:1::/48"]
    assert _nft_set(text, "http_v4") == ["10.77.0.0/24"]
    assert _nft_set(text, "http_v6") == ["fd00:77::/64"]


def test_nftables_allows_ssh_only_from_admin_sets() -> None:
    rules = [rule for rule in _rules(_nft(ssh_port=2222)) if "dport" in rule]
    ssh_rules = [rule for rule in rules if "dport 2222 " in rule]
    assert ssh_rules == [
        "tcp dport 2222 ip saddr @admin_v4 accept",
        "tcp dport 2222 ip6 saddr @admin_v6 accept",
    ]
    assert not any("dport 22 " in rule for rule in rules)


def test_nftables_allows_http_only_from_allowed_http_sets() -> None:
    rules = [rule for rule in _rules(_nft()) if "tcp dport" in rule and "admin" not in rule]
    assert rules == [
        "tcp dport { 80 } ip saddr @http_v4 accept",
        "tcp dport { 80 } ip6 saddr @http_v6 accept",
    ]


def test_nftables_never_opens_443() -> None:
    # TLS terminates at the load balancer (https_enabled is gone: tests/test_settings.py).
    rules = _rules(_nft(_settings(listen_port=8080)))
    assert "tcp dport { 8080 } ip saddr @http_v4 accept" in rules
    assert "443" not in "\n".join(rules)


def test_nftables_allows_the_icmp_ip_needs() -> None:
    rules = "\n".join(_rules(_nft()))
    for needed in (
        "destination-unreachable",
        "time-exceeded",
        "parameter-problem",
        "packet-too-big",
        "nd-neighbor-solicit",
        "nd-neighbor-advert",
        "nd-router-advert",
    ):
        assert needed in rules
    assert "icmp type echo-request limit rate" in rules
    assert "icmpv6 type echo-request limit rate" in rules
    assert "ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept" in rules  # DHCPv6 replies


def test_nftables_renders_a_family_without_cidrs_as_an_empty_set() -> None:
    text = _nft(_settings(admin_cidrs=["10.77.0.1/32"], allowed_http_cidrs=["0.0.0.0/0"]))
    assert _nft_set(text, "admin_v6") == []
    assert _nft_set(text, "http_v6") == []
    assert _nft_set(text, "http_v4") == ["0.0.0.0/0"]


NFT = shutil.which("nft") or ("/usr/sbin/nft" if Path("/usr/sbin/nft").exists() else None)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"admin_cidrs": ["10.77.0.1/32"], "allowed_http_cidrs": ["0.0.0.0/0", "::/0"]},
        {"admin_cidrs": ["10.0.0.0/8", "10.77.0.1/32"], "allowed_http_cidrs": ["::/0"]},
    ],
    ids=["mixed", "world", "overlapping-v4-only"],
)
def test_nftables_ruleset_passes_nft_check(tmp_path: Path, overrides: dict[str, Any]) -> None:
    if NFT is None:
        pytest.skip("no nft binary on this machine")
    if os.geteuid() != 0:
        pytest.skip("nft -c talks to the kernel's netfilter and needs root")
    ruleset = tmp_path / "nftables.conf"
    ruleset.write_text(_nft(_settings(**overrides)))
    # -c: the kernel checks the whole transaction and discards it; nothing is loaded.
    result = subprocess.run(
        [NFT, "-c", "-f", str(ruleset)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_nft_check_refuses_a_broken_ruleset(tmp_path: Path) -> None:
    if NFT is None:
        pytest.skip("no nft binary on this machine")
    if os.geteuid() != 0:
        pytest.skip("nft -c talks to the kernel's netfilter and needs root")
    # The check the tests (and the deploy) rely on must be able to say no.
    ruleset = tmp_path / "nftables.conf"
    ruleset.write_text(_nft().replace("policy drop;", "policy dorp;"))
    result = subprocess.run(
        [NFT, "-c", "-f", str(ruleset)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


# --- sysctl ---------------------------------------------------------------------------------------


def test_sysctl_renders_every_default_with_its_reason() -> None:
    text = _sysctl()
    assert _sysctl_values(text) == hd.merged_sysctl({})
    lines = text.splitlines()
    for default in hd.SYSCTL_DEFAULTS:
        index = lines.index(f"{default.key} = {default.value}")
        assert lines[index - 1].startswith("# "), default.key
        assert default.reason.strip(), default.key


def test_sysctl_overrides_replace_defaults_and_add_keys() -> None:
    overrides = {"net.ipv4.conf.all.rp_filter": 2, "net.core.somaxconn": 4096}
    values = _sysctl_values(_sysctl(_settings(sysctl_overrides=overrides)))
    assert values == hd.merged_sysctl(overrides)
    assert values["net.ipv4.conf.all.rp_filter"] == "2"
    assert values["net.core.somaxconn"] == "4096"
    assert list(values)[-1] == "net.core.somaxconn"


def test_sysctl_defaults_keep_forwarding_off_and_cover_the_baseline() -> None:
    values = hd.merged_sysctl({})
    assert values["net.ipv4.ip_forward"] == "0"
    assert values["net.ipv6.conf.all.forwarding"] == "0"
    assert list(values)[:2] == ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]
    for key, value in {
        "net.ipv4.conf.all.rp_filter": "1",
        "net.ipv4.conf.all.accept_redirects": "0",
        "net.ipv6.conf.all.accept_redirects": "0",
        "net.ipv4.conf.all.send_redirects": "0",
        "net.ipv4.conf.all.accept_source_route": "0",
        "net.ipv4.conf.all.log_martians": "1",
        "net.ipv4.tcp_syncookies": "1",
        "net.ipv4.icmp_echo_ignore_broadcasts": "1",
        "kernel.kptr_restrict": "2",
        "kernel.dmesg_restrict": "1",
        "kernel.yama.ptrace_scope": "2",
        "kernel.randomize_va_space": "2",
        "fs.protected_hardlinks": "1",
        "fs.protected_symlinks": "1",
        "fs.suid_dumpable": "0",
    }.items():
        assert values[key] == value, key
    assert {key: values[key] for key in hd.SYSCTL_PINNED} == {
        key: str(value) for key, value in hd.SYSCTL_PINNED.items()
    }


def test_sysctl_split_for_container_keeps_only_namespaced_net_keys_live() -> None:
    live, host_only = hd.split_sysctl_for_container(hd.merged_sysctl({}))
    assert "net.ipv4.tcp_syncookies" in live
    assert "net.ipv6.conf.all.accept_redirects" in live
    assert "net.core.bpf_jit_harden" in host_only  # exists in the initial namespace only
    assert all(key.startswith("net.") for key in live)
    assert {key.split(".")[0] for key in host_only} == {"kernel", "fs", "vm", "dev", "net"}


# --- unattended-upgrades --------------------------------------------------------------------------


def _apt(template: str, **overrides: Any) -> str:
    return render(template, s=_settings(**overrides))


def test_unattended_upgrades_allow_debian_security_origin_only() -> None:
    text = _apt("apt/50unattended-upgrades.j2")
    block = re.search(r"Unattended-Upgrade::Origins-Pattern \{(.*?)\};", text, re.S)
    assert block
    patterns = re.findall(r'^\s*"([^"]*)";', block.group(1), re.M)
    assert patterns == ["origin=Debian,codename=${distro_codename}-security,label=Debian-Security"]
    assert text.index("#clear Unattended-Upgrade::Origins-Pattern;") < block.start()


@pytest.mark.parametrize(("reboot", "expected"), [(False, "false"), (True, "true")])
def test_unattended_upgrades_reboot_follows_setting(reboot: bool, expected: str) -> None:
    text = _apt("apt/50unattended-upgrades.j2", unattended_upgrades_reboot=reboot)
    assert f'Unattended-Upgrade::Automatic-Reboot "{expected}";' in text


@pytest.mark.parametrize(("enabled", "expected"), [(True, "1"), (False, "0")])
def test_auto_upgrades_periodic_runs_follow_setting(enabled: bool, expected: str) -> None:
    text = _apt("apt/20auto-upgrades.j2", unattended_upgrades_enabled=enabled)
    assert f'APT::Periodic::Update-Package-Lists "{expected}";' in text
    assert f'APT::Periodic::Unattended-Upgrade "{expected}";' in text


def test_apt_files_parse_with_apt_config_when_installed(tmp_path: Path) -> None:
    apt_config = shutil.which("apt-config")
    if apt_config is None:
        pytest.skip("no apt-config on this machine")
    for name in ("50unattended-upgrades", "20auto-upgrades"):
        path = tmp_path / name
        path.write_text(_apt(f"apt/{name}.j2"))
        result = subprocess.run(
            [apt_config, "dump", "-c", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
    assert (
        'Unattended-Upgrade::Origins-Pattern:: "origin=Debian,codename=${distro_codename}'
        '-security,label=Debian-Security";'
    ) in subprocess.run(
        [apt_config, "dump", "-c", str(tmp_path / "50unattended-upgrades")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


# --- packages -------------------------------------------------------------------------------------


def test_packages_not_on_a_proxy_spare_what_the_proxy_runs() -> None:
    packages = hd.PACKAGES_NOT_ON_A_PROXY
    assert len(set(packages)) == len(packages)
    assert {"openssh-server", "nginx", "nftables", "unattended-upgrades"}.isdisjoint(packages)
    assert {"telnetd", "rsh-server", "xinetd", "avahi-daemon", "rpcbind"} <= set(packages)


def test_paramiko_algorithms_match_paramiko() -> None:
    paramiko = pytest.importorskip("paramiko")
    transport = paramiko.Transport
    assert set(transport._preferred_ciphers) >= hd.PARAMIKO_CIPHERS
    assert set(transport._preferred_kex) >= hd.PARAMIKO_KEX
    assert set(transport._preferred_macs) >= hd.PARAMIKO_MACS


def test_sysctl_lines_say_which_default_an_override_replaced() -> None:
    lines = {line.key: line for line in hd.sysctl_lines({"net.ipv4.tcp_syncookies": 1, "a.b": "x"})}
    assert lines["net.ipv4.tcp_syncookies"].default == "1"  # overridden (with the same value)
    assert lines["net.ipv4.ip_forward"].default is None
    assert lines["a.b"] == hd.SysctlLine("a.b", "x", "", None)  # added: no reason, no default


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (None, []),
        ((9, 7), []),
        ((9, 8), ["10.77.0.1/32", "fd00::/8"]),
        ((10, 0), ["10.77.0.1/32", "fd00::/8"]),
    ],
    ids=str,
)
def test_penalty_exemption_from_openssh_9_8_never_for_everyone(
    version: Any, expected: list
) -> None:
    cidrs = ["0.0.0.0/0", "10.77.0.1/32", "::/0", "fd00::/8"]
    assert hd.penalty_exempt_cidrs(cidrs, version) == expected
