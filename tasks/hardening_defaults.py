"""Host-hardening defaults: pure data and small pure helpers, no pyinfra import.

Owns the values behind the host-hardening settings and templates:
- the SSH algorithm lists (defaults of the settings `sshd_ciphers`, `sshd_kex_algorithms`,
  `sshd_macs`), the host-key choices and the version-dependent parts of sshd_config (the
  post-quantum key exchanges, the penalty exemption): tasks/sshd.py hands them, computed, to
  `templates/ssh/sshd_config.j2`;
- the sysctl defaults table (each entry with the reason it is there), merged with the setting
  `sysctl_overrides` into the lines `templates/sysctl/hardening.conf.j2` writes;
- which sysctl keys a container can set (so a task can report the others instead of failing);
- the packages that have no business on a reverse proxy.

Substance follows dev-sec's ansible-collection-hardening (ssh_hardening, os_hardening) and
ssh-audit's policy, with the deliberate differences written next to each value. Deliberately left
alone here: anything that touches a host (the tasks do that) and settings validation
(tasks/settings.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

# --------------------------------------------------------------------------------------------------
# SSH daemon
#
# Every name below is accepted by OpenSSH 9.2 (Debian 12) and 10.0 (Debian 13): sshd refuses to
# start on an algorithm name it does not know, so a default valid on one release only would take
# SSH down on the other. Every name is rated without a "fail" by ssh-audit 3.9 (tests check it
# against ssh-audit's own algorithm database). Each list also keeps at least one algorithm that
# paramiko 4 (pyinfra's SSH client) speaks, or the deploy would lock itself out: paramiko has no
# chacha20-poly1305, no sntrup761/mlkem768 and only knows curve25519 by its @libssh.org name.
# --------------------------------------------------------------------------------------------------

SSHD_CIPHERS: tuple[str, ...] = (
    # AEAD and CTR modes (CTR with the encrypt-then-MAC MACs below: the fallback of older clients
    # and paramiko), 256-bit keys first, in the exact order of ssh-audit's "Hardened Debian 12"
    # and "Hardened Debian 13" policies (they compare lists, order included:
    # tests/data/ssh-audit/).
    # chacha20-poly1305 was the Terrapin (CVE-2023-48795) target; both Debian releases ship the
    # strict-kex countermeasure, which ssh-audit recognises.
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-gcm@openssh.com",
    "aes128-ctr",
)

SSHD_MACS: tuple[str, ...] = (
    # Encrypt-then-MAC only: the plain hmac-sha2-* are "encrypt-and-MAC" (ssh-audit warns), and
    # hmac-sha1 / umac-64 are out (SHA-1, 64-bit tag). The AEAD ciphers above ignore MACs.
    # The order of ssh-audit's "Hardened Debian 13" policy; its Debian 12 policy puts 256 first,
    # and one sshd_config serves both releases (the difference is commented in
    # tests/data/ssh-audit/proxy-debian12.txt).
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "umac-128-etm@openssh.com",
)

SSHD_KEX_ALGORITHMS: tuple[str, ...] = (
    # Post-quantum hybrid known to both 9.2 and 10.0 (ssh-audit rates it clean).
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    # The same exchange under its older name: the only one paramiko (the deploy) offers.
    "curve25519-sha256@libssh.org",
    # No finite-field Diffie-Hellman (group14/16/18, group-exchange): OpenSSH 10 dropped them from
    # its server defaults, they are what the DHEat CPU-exhaustion attack needs, and every client
    # this fleet sees speaks curve25519. (dev-sec still lists group-exchange-sha256.)
)

# Algorithms pyinfra's SSH client (paramiko 4.0) speaks. sshd must keep at least one of each kind,
# or the next deploy cannot connect: the settings refuse lists without one (tasks/settings.py), and
# tests/test_hardening_templates.py checks these sets against paramiko itself.
PARAMIKO_CIPHERS = frozenset(
    {"aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
)
PARAMIKO_KEX = frozenset(
    {
        "curve25519-sha256@libssh.org",
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group-exchange-sha256",
        "diffie-hellman-group14-sha256",
    }
)
PARAMIKO_MACS = frozenset(
    {
        "hmac-sha2-256",
        "hmac-sha2-512",
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
    }
)

# Names sshd learnt in OpenSSH 9.9. Listing them on 9.2 makes sshd refuse its configuration, so
# they are not in the default list; effective_kex_algorithms puts them in front of
# `sshd_kex_algorithms` when the host's OpenSSH is at least OPENSSH_PQ_KEX_MIN_VERSION.
SSHD_KEX_ALGORITHMS_SINCE_9_9: tuple[str, ...] = (
    "mlkem768x25519-sha256",  # OpenSSH 10's default key exchange (ML-KEM, FIPS 203).
    "sntrup761x25519-sha512",  # The standardised name of sntrup761x25519-sha512@openssh.com.
)
OPENSSH_PQ_KEX_MIN_VERSION: tuple[int, int] = (9, 9)

# From OpenSSH 9.8 on (Debian 13), sshd refuses for a while addresses whose connections fail or
# never authenticate (PerSourcePenalties, on by default): ssh-audit from the admin host earns a
# penalty that refuses the deploy's next connection. So from that version on admin_cidrs are
# exempted (penalty_exempt_cidrs): the only sources the firewall lets reach SSH anyway.
OPENSSH_PENALTY_EXEMPT_MIN_VERSION: tuple[int, int] = (9, 8)

# Not settings (tasks/sshd.py hands them to sshd_config.j2): only Ed25519 and RSA host keys are
# offered, RSA only with SHA-2 signatures. ECDSA (NIST P-curves) is a "fail" in ssh-audit,
# ssh-rsa (SHA-1) too.
SSHD_HOST_KEY_FILES: tuple[str, ...] = (
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_rsa_key",
)
SSHD_HOST_KEY_ALGORITHMS: tuple[str, ...] = (
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-ed25519",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256-cert-v01@openssh.com",
    "rsa-sha2-256",
)
# RSA user and host keys below this size are refused (RequiredRSASize, OpenSSH >= 9.1).
# Debian generates 3072-bit RSA host keys; the lab's deploy key is Ed25519.
#
# Host keys, decided (issue 12): the deploy keeps each host's own keys and never generates new
# ones. ssh-audit's "Hardened Debian" policies want RSA of exactly 4096 bits; Debian's 3072-bit
# key is 128-bit security (NIST SP 800-57), as strong as the Ed25519 key every client here
# (paramiko, OpenSSH) picks first. A new key would break every known_hosts that pinned the host
# (CI's DEPLOY_SSH_KNOWN_HOSTS) and looks exactly like a man in the middle; dropping RSA
# (Ed25519 only) would lock out clients pinned to the RSA key. So the repository's ssh-audit
# policies (tests/data/ssh-audit/) accept RSA of 3072 bits or more; an image with 4096-bit keys
# passes them too.
SSHD_REQUIRED_RSA_SIZE = 3072

# /etc/ssh/moduli: keep only groups whose 5th field (size in bits minus one) is at least this, i.e.
# 3072-bit and larger; ssh-audit fails anything under 2048 and warns under 3072. The default KEX
# list uses no group exchange, so this only matters if an operator adds it back.
SSHD_MODULI_MIN_SIZE_FIELD = 3071

_OPENSSH_VERSION_RE = re.compile(r"OpenSSH_(\d+)\.(\d+)")


def parse_openssh_version(text: str) -> tuple[int, int] | None:
    """(major, minor) from `ssh -V` / `sshd -V` output, e.g. "OpenSSH_9.2p1 Debian-2+deb12u3"."""
    match = _OPENSSH_VERSION_RE.search(text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def effective_kex_algorithms(
    configured: Iterable[str], openssh_version: tuple[int, int] | None
) -> list[str]:
    """The KexAlgorithms sshd gets: CONFIGURED, and in front of it the post-quantum names
    OpenSSH 9.9+ knows (not repeated). Without a version, CONFIGURED exactly as it is."""
    configured = list(configured)
    if openssh_version is None or tuple(openssh_version) < OPENSSH_PQ_KEX_MIN_VERSION:
        return configured
    extra = [name for name in SSHD_KEX_ALGORITHMS_SINCE_9_9 if name not in configured]
    return extra + configured


def penalty_exempt_cidrs(
    admin_cidrs: Iterable[str], openssh_version: tuple[int, int] | None
) -> list[str]:
    """PerSourcePenaltyExemptList for sshd: admin_cidrs from OpenSSH 9.8 on (an older sshd does
    not know the keyword), never a /0 (that would exempt everyone); empty: no such line."""
    if openssh_version is None or tuple(openssh_version) < OPENSSH_PENALTY_EXEMPT_MIN_VERSION:
        return []
    return [cidr for cidr in admin_cidrs if cidr not in ("0.0.0.0/0", "::/0")]


# --------------------------------------------------------------------------------------------------
# Kernel and network settings (sysctl)
# --------------------------------------------------------------------------------------------------


class SysctlDefault(NamedTuple):
    key: str
    value: int | str
    reason: str


# Rendered in this order. Forwarding comes first: writing net.ipv4.ip_forward also sets
# net.ipv4.conf.all.accept_redirects (to the opposite value), so it must not come after it.
SYSCTL_DEFAULTS: tuple[SysctlDefault, ...] = (
    # --- routing: a proxy is an end host ---------------------------------------------------------
    SysctlDefault(
        "net.ipv4.ip_forward",
        0,
        "A proxy terminates connections, it never routes packets; must stay 0 (dev-sec sysctl-01).",
    ),
    SysctlDefault(
        "net.ipv6.conf.all.forwarding",
        0,
        "No IPv6 routing either; with forwarding on, the kernel would also ignore router "
        "advertisements (dev-sec sysctl-19).",
    ),
    # --- source validation and redirects ----------------------------------------------------------
    SysctlDefault(
        "net.ipv4.conf.all.rp_filter",
        1,
        "Strict reverse-path filtering drops spoofed sources (RFC 3704). For single-homed "
        "proxies: set 2 (loose) in sysctl_overrides for hosts with several ENIs and asymmetric "
        "routes.",
    ),
    SysctlDefault(
        "net.ipv4.conf.default.rp_filter",
        1,
        "Same for interfaces that appear later.",
    ),
    SysctlDefault(
        "net.ipv4.conf.all.accept_redirects",
        0,
        "ICMP redirects let anyone on the path rewrite our routing table.",
    ),
    SysctlDefault(
        "net.ipv4.conf.default.accept_redirects",
        0,
        "Same for interfaces that appear later.",
    ),
    SysctlDefault(
        "net.ipv4.conf.all.secure_redirects",
        0,
        "Not even redirects from the listed gateways: the VPC router never needs them.",
    ),
    SysctlDefault(
        "net.ipv4.conf.default.secure_redirects",
        0,
        "Same for interfaces that appear later.",
    ),
    SysctlDefault(
        "net.ipv6.conf.all.accept_redirects",
        0,
        "IPv6 redirects: same reason as for IPv4.",
    ),
    SysctlDefault(
        "net.ipv6.conf.default.accept_redirects",
        0,
        "Same for interfaces that appear later.",
    ),
    SysctlDefault(
        "net.ipv4.conf.all.send_redirects",
        0,
        "Only routers send redirects; a host that does leaks topology.",
    ),
    SysctlDefault(
        "net.ipv4.conf.default.send_redirects",
        0,
        "Same for interfaces that appear later.",
    ),
    SysctlDefault(
        "net.ipv4.conf.all.accept_source_route",
        0,
        "Source-routed packets choose their own path past filters.",
    ),
    SysctlDefault(
        "net.ipv4.conf.default.accept_source_route",
        0,
        "Same for interfaces that appear later.",
    ),
    SysctlDefault(
        "net.ipv6.conf.all.accept_source_route",
        0,
        "IPv6 routing headers: same reason.",
    ),
    SysctlDefault(
        "net.ipv6.conf.default.accept_source_route",
        0,
        "Same for interfaces that appear later.",
    ),
    SysctlDefault(
        "net.ipv4.conf.all.log_martians",
        1,
        "Log packets with impossible source addresses (spoofing, misrouting).",
    ),
    SysctlDefault(
        "net.ipv4.conf.default.log_martians",
        1,
        "Same for interfaces that appear later.",
    ),
    # --- IPv6 router advertisements ---------------------------------------------------------------
    # dev-sec sets accept_ra=0 (and even disable_ipv6=1). Not here: in a VPC the router
    # advertisement is the only source of the IPv6 default route (DHCPv6 has no route option), so
    # that would cut IPv6 clients and admins off. RAs stay accepted for the default route, and
    # their router-preference field is ignored. (dev-sec's router_solicitations=0 is left out
    # too: an interface that appears after boot would wait minutes for an unsolicited RA.)
    SysctlDefault(
        "net.ipv6.conf.all.accept_ra_rtr_pref",
        0,
        "Ignore the router-preference field of advertisements: no advertiser can outrank the VPC "
        "router.",
    ),
    SysctlDefault(
        "net.ipv6.conf.default.accept_ra_rtr_pref",
        0,
        "Same for interfaces that appear later.",
    ),
    # --- ICMP and TCP -----------------------------------------------------------------------------
    SysctlDefault(
        "net.ipv4.icmp_echo_ignore_broadcasts",
        1,
        "No answers to broadcast pings (smurf amplification).",
    ),
    SysctlDefault(
        "net.ipv4.icmp_ignore_bogus_error_responses",
        1,
        "Don't log ICMP errors that violate RFC 1122; they only fill the log.",
    ),
    SysctlDefault(
        "net.ipv4.tcp_syncookies",
        1,
        "Keep accepting connections during a SYN flood; a proxy's whole job is accepting them.",
    ),
    SysctlDefault(
        "net.ipv4.tcp_rfc1337",
        1,
        "Drop RSTs for sockets in TIME-WAIT (TIME-WAIT assassination, RFC 1337).",
    ),
    # dev-sec also sets tcp_timestamps=0. Not here: timestamps drive PAWS and RTT measurement at a
    # proxy's connection rates, and since Linux 4.10 their offset is random per connection, so they
    # no longer leak uptime.
    # --- kernel -----------------------------------------------------------------------------------
    SysctlDefault(
        "kernel.kptr_restrict",
        2,
        "Hide kernel addresses in /proc/kallsyms and friends even from root; they are the map "
        "for kernel exploits.",
    ),
    SysctlDefault(
        "kernel.dmesg_restrict",
        1,
        "Kernel log (addresses, hardware detail) readable by root only.",
    ),
    SysctlDefault(
        "kernel.yama.ptrace_scope",
        2,
        "Only CAP_SYS_PTRACE may attach to a process (sudo strace -p still works): a compromised "
        "worker cannot read another process's memory. dev-sec uses 1.",
    ),
    SysctlDefault(
        "kernel.randomize_va_space",
        2,
        "Full address-space layout randomisation (stack, mmap, heap).",
    ),
    SysctlDefault(
        "kernel.kexec_load_disabled",
        1,
        "No loading a replacement kernel at run time (one-way until reboot; no kdump on EC2).",
    ),
    SysctlDefault(
        "kernel.sysrq",
        0,
        "No magic SysRq; a proxy is rebuilt, not debugged from a console.",
    ),
    SysctlDefault(
        "kernel.core_uses_pid",
        1,
        "Core files named per PID, so one crash doesn't overwrite another's.",
    ),
    SysctlDefault(
        "kernel.perf_event_paranoid",
        3,
        "No perf events for unprivileged users (Debian's kernel accepts 3).",
    ),
    SysctlDefault(
        "kernel.unprivileged_bpf_disabled",
        1,
        "No BPF programs from unprivileged users, for good (Debian's default 2 can be undone).",
    ),
    SysctlDefault(
        "net.core.bpf_jit_harden",
        2,
        "Constant blinding in the BPF JIT for every user (JIT spraying).",
    ),
    SysctlDefault(
        "dev.tty.ldisc_autoload",
        0,
        "No auto-loading of TTY line-discipline modules, a recurring source of kernel bugs.",
    ),
    # --- files and memory -------------------------------------------------------------------------
    SysctlDefault(
        "fs.protected_hardlinks",
        1,
        "No hard links to files the user can't write (/tmp race attacks).",
    ),
    SysctlDefault(
        "fs.protected_symlinks",
        1,
        "No following other users' symlinks in world-writable sticky directories.",
    ),
    SysctlDefault(
        "fs.protected_fifos",
        2,
        "Same protection for FIFOs in sticky directories.",
    ),
    SysctlDefault(
        "fs.protected_regular",
        2,
        "Same protection for regular files in sticky directories.",
    ),
    SysctlDefault(
        "fs.suid_dumpable",
        0,
        "No core dumps of setuid programs; they would hold privileged memory.",
    ),
    SysctlDefault(
        "vm.mmap_min_addr",
        65536,
        "Keep the zero page unmappable (kernel NULL-dereference exploits); re-asserted in case a "
        "package lowered it.",
    ),
    SysctlDefault(
        "vm.mmap_rnd_bits",
        32,
        "Most mmap randomisation x86-64 allows (arm64 allows up to 33).",
    ),
)

SYSCTL_DEFAULTS_BY_KEY: dict[str, SysctlDefault] = {d.key: d for d in SYSCTL_DEFAULTS}

# Values sysctl_overrides must not change (a proxy that forwards packets is a router): the
# settings refuse an override that changes one (tasks/settings.py), with the reason below.
SYSCTL_PINNED: dict[str, int] = {
    "net.ipv4.ip_forward": 0,
    "net.ipv6.conf.all.forwarding": 0,
}


def sysctl_pinned_violation(key: str, value: object) -> str | None:
    """Why KEY = VALUE may not be set (KEY is pinned to another value), else None."""
    if key not in SYSCTL_PINNED or sysctl_value_text(value).strip() == str(SYSCTL_PINNED[key]):
        return None
    return (
        f"{key} = {value!r} changes a pinned key: it stays {SYSCTL_PINNED[key]}. "
        + SYSCTL_DEFAULTS_BY_KEY[key].reason
    )


# Where the task installs the rendered file: /etc/sysctl.d/ is read after /usr/lib/sysctl.d/ and
# the later name wins for the same key, so "90-" comes after systemd's 50-default.conf.
SYSCTL_CONF_PATH = "/etc/sysctl.d/90-proxy-hardening.conf"

# net.* keys that are NOT per network namespace: they exist only in the initial namespace, so a
# container does not even see them.
GLOBAL_NET_SYSCTLS: frozenset[str] = frozenset(
    {
        "net.core.bpf_jit_enable",
        "net.core.bpf_jit_harden",
        "net.core.bpf_jit_kallsyms",
        "net.core.bpf_jit_limit",
        "net.core.rmem_max",
        "net.core.wmem_max",
        "net.core.rmem_default",
        "net.core.wmem_default",
        "net.core.netdev_max_backlog",
        "net.core.message_cost",
        "net.core.message_burst",
        "net.netfilter.nf_conntrack_max",
    }
)


def sysctl_value_text(value: object) -> str:
    """A sysctl value as written in a .conf file (booleans as 0/1)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


class SysctlLine(NamedTuple):
    """One key of the sysctl.d file, as written there."""

    key: str
    value: str  # the value in effect (sysctl_value_text)
    reason: str  # why the default is there; "" for a key sysctl_overrides adds
    default: str | None  # the default's value when sysctl_overrides replaced it, else None


def sysctl_lines(overrides: Mapping[str, object]) -> list[SysctlLine]:
    """Defaults with `sysctl_overrides` applied, in file order, then the keys the overrides add."""
    lines = [
        SysctlLine(
            d.key,
            sysctl_value_text(overrides.get(d.key, d.value)),
            d.reason,
            sysctl_value_text(d.value) if d.key in overrides else None,
        )
        for d in SYSCTL_DEFAULTS
    ]
    lines += [
        SysctlLine(key, sysctl_value_text(value), "", None)
        for key, value in overrides.items()
        if key not in SYSCTL_DEFAULTS_BY_KEY
    ]
    return lines


def merged_sysctl(overrides: Mapping[str, object]) -> dict[str, str]:
    """key -> value of every line of the sysctl.d file (`sysctl_lines`), in file order."""
    return {line.key: line.value for line in sysctl_lines(overrides)}


def sysctl_is_per_network_namespace(key: str) -> bool:
    """True for keys a container with its own network namespace may set.

    net.* settings belong to a network namespace (systemd-nspawn makes them writable with
    SYSTEMD_NSPAWN_API_VFS_WRITABLE=network), except the few in GLOBAL_NET_SYSCTLS. kernel.*, fs.*,
    vm.*, dev.* and the rest are global to the machine: a container can't change them.
    """
    return key.startswith("net.") and key not in GLOBAL_NET_SYSCTLS


def split_sysctl_for_container(keys: Iterable[str]) -> tuple[list[str], list[str]]:
    """(keys to apply live, keys only persisted and reported) inside a container."""
    live: list[str] = []
    host_only: list[str] = []
    for key in keys:
        (live if sysctl_is_per_network_namespace(key) else host_only).append(key)
    return live, host_only


# --------------------------------------------------------------------------------------------------
# Packages and services that should not be on a proxy
# --------------------------------------------------------------------------------------------------

# Purged when installed (none is in Debian's cloud images; they arrive with hand-made AMIs). The
# proxy listens on SSH and HTTP(S) only; everything here would listen or run with privileges for
# nothing. Names are Debian 12/13 binary packages.
PACKAGES_NOT_ON_A_PROXY: tuple[str, ...] = (
    # Clear-text remote login and legacy super-servers (dev-sec's os_security_packages_list).
    "telnetd",
    "inetutils-telnetd",
    "telnetd-ssl",
    "rsh-server",
    "rsh-redone-server",
    "talkd",
    "inetutils-talkd",
    "inetutils-inetd",
    "openbsd-inetd",
    "xinetd",
    "tftpd-hpa",
    "atftpd",
    "nis",
    "ypserv",
    # LAN discovery and file/print sharing: nothing to discover or share on a proxy.
    "avahi-daemon",
    "cups-daemon",
    "samba",
    "nfs-kernel-server",
    "rpcbind",
    # Management agents that answer on the network by default.
    "snmpd",
)

# Units stopped and disabled when present (not masked): sockets that would start a listener on
# demand even after the package above is gone, or that images enable without need.
SERVICES_NOT_ON_A_PROXY: tuple[str, ...] = (
    "avahi-daemon.socket",
    "avahi-daemon.service",
    "cups.socket",
    "cups.service",
    "rpcbind.socket",
    "rpcbind.service",
)


# --------------------------------------------------------------------------------------------------
# Host controls (tasks/host_controls.py): dev-sec os_hardening and CIS Debian, picked for a proxy
# --------------------------------------------------------------------------------------------------

# Kernel modules a proxy never needs, made unloadable (`install X /bin/false` in
# /etc/modprobe.d; `blacklist X` alone still lets a dependency or an explicit modprobe load them).
# Default of the setting `kernel_module_blacklist`. Each entry: (module, reason).
KERNEL_MODULES_NOT_ON_A_PROXY_WHY: tuple[tuple[str, str], ...] = (
    # Network protocols that any unprivileged process can make the kernel load with one socket()
    # call; each has had local privilege escalations (CIS 3.2, dev-sec os-10).
    ("dccp", "Datagram Congestion Control Protocol: CVE-2017-6074 and others; nothing speaks it"),
    ("sctp", "Stream Control Transmission Protocol: telephony signalling, not HTTP"),
    ("rds", "Reliable Datagram Sockets (Oracle clusters): CVE-2010-3904, CVE-2019-11815"),
    ("tipc", "Transparent Inter-Process Communication (clusters): CVE-2021-43267"),
    ("n_hdlc", "HDLC line discipline for serial links: CVE-2017-2636"),
    ("ax25", "Amateur radio"),
    ("netrom", "Amateur radio"),
    ("rose", "Amateur radio"),
    ("x25", "X.25, a 1970s packet network"),
    ("atm", "Asynchronous Transfer Mode"),
    ("appletalk", "AppleTalk"),
    ("can", "Controller Area Network (vehicles, industrial buses)"),
    ("ieee802154", "Low-rate wireless personal area networks"),
    # File systems a proxy never mounts: rarely used parsers of untrusted images (CIS 1.1.1).
    # Not vfat (the EFI system partition of UEFI instances) nor squashfs (some images use it).
    ("cramfs", "Compressed ROM file system of embedded devices"),
    ("freevxfs", "Veritas file system"),
    ("hfs", "Classic Mac OS file system"),
    ("hfsplus", "macOS file system"),
    ("jffs2", "Flash file system of embedded devices"),
    ("udf", "DVD and Azure provisioning media; EC2 uses none"),
    # Removable media: an EC2 instance has no USB or FireWire port; a host that has one must not
    # mount what is plugged in (CIS 1.1.10), and FireWire DMA reads memory.
    ("usb-storage", "USB mass storage"),
    ("firewire-core", "FireWire (IEEE 1394) and its DMA access to memory"),
    ("thunderbolt", "Thunderbolt, PCIe over a cable and its DMA access to memory"),
)
KERNEL_MODULES_NOT_ON_A_PROXY: tuple[str, ...] = tuple(
    m for m, _ in KERNEL_MODULES_NOT_ON_A_PROXY_WHY
)
KERNEL_MODULE_REASONS: dict[str, str] = dict(KERNEL_MODULES_NOT_ON_A_PROXY_WHY)

# /etc/login.defs values (setting `login_defs_hardened`). Only these keys' lines are replaced (an
# active line, else the first commented example with a value, else a line appended): Debian 13's
# file has no UMASK line at all, Debian 12's has `UMASK 022` and commented rounds.
LOGIN_DEFS: tuple[tuple[str, str, str], ...] = (
    (
        "UMASK",
        "027",
        "New files of login sessions (pam_umask) are not world-readable; group read stays "
        "(CIS 5.4.4, dev-sec os-05b). For a user whose group is their own, pam_umask's "
        "usergroups rule makes it 007.",
    ),
    (
        "SHA_CRYPT_MIN_ROUNDS",
        "640000",
        "Password hashes set by chpasswd/newusers with SHA-512 take 640k rounds, not 5000 "
        "(dev-sec's value; the proxies' logins use keys, so this protects local accounts only).",
    ),
    ("SHA_CRYPT_MAX_ROUNDS", "640000", "Same value: a fixed cost."),
)

# Shown by sshd before authentication (Banner) and on consoles (/etc/issue, /etc/issue.net).
# Default of the setting `legal_banner`; it says nothing about the host (no OS, no version).
LEGAL_BANNER = (
    "Authorised access only. This system and its data belong to its operator; activity on it is "
    "logged and monitored.\nUnauthorised access or use is prohibited and may be prosecuted."
)

# needrestart (setting `needrestart_enabled`): after each apt/dpkg run (unattended-upgrades
# included), restart the services that still map a replaced library, without asking.
NEEDRESTART_CONF: tuple[tuple[str, str, str], ...] = (
    (
        "restart",
        "'a'",
        "Automatic: a patched OpenSSL or glibc reaches nginx and sshd the same night, not at the "
        "next reboot.",
    ),
    (
        "kernelhints",
        "0",
        "No kernel notice: kernel updates wait for a controlled reboot "
        "(unattended_upgrades_reboot).",
    ),
    ("ucodehints", "0", "Same for CPU microcode."),
)
