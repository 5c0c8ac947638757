"""Kernel and network settings (sysctl), in the spirit of dev-sec's os hardening.

Owns: /etc/sysctl.d/90-proxy-hardening.conf (every value, with the reason for it) and the live
values of those keys.
Reads: sysctl_overrides (merged over tasks/hardening_defaults.SYSCTL_DEFAULTS).

Inside a container (`systemd-detect-virt --container`) only the per-network-namespace keys
(most of net.*) can be changed; the others are persisted for the day the file is used on a VM
and reported, not failed. Keys this kernel does not have are reported the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from shlex import quote

from pyinfra import host, logger
from pyinfra.api import deploy, operation
from pyinfra.facts.server import Command, Sysctl

from tasks import drift
from tasks.activation import install_file, manages, render
from tasks.facts import ask, asks
from tasks.hardening_defaults import (
    SYSCTL_CONF_PATH,
    merged_sysctl,
    split_sysctl_for_container,
    sysctl_lines,
)
from tasks.settings import for_host

manages(SYSCTL_CONF_PATH)


@asks
def _live_values() -> tuple[type[Sysctl], dict]:
    """The live value of every key the sysctl.d file sets (absent: the kernel has no such key)."""
    return Sysctl, {"keys": sorted(merged_sysctl(for_host(host).sysctl_overrides))}


@asks
def _container() -> tuple[type[Command], dict]:
    return Command, {"command": "systemd-detect-virt --container || true"}


@deploy("Kernel and network settings (sysctl)")
def harden_sysctl() -> None:
    settings = for_host(host)
    wanted = merged_sysctl(settings.sysctl_overrides)
    install_file(
        name=f"Install {SYSCTL_CONF_PATH}",
        path=SYSCTL_CONF_PATH,
        content=sysctl_conf(settings.sysctl_overrides),
    )
    live_keys, persisted_only = _settable(list(wanted))
    applied = {key: wanted[key] for key in live_keys}
    differ = _live_differs(applied)
    if differ:
        for key, value in differ.items():
            drift.state_differs(
                key, f"live {value}, should be {applied[key]}", "Apply the sysctl settings"
            )
        live_values(name="Apply the sysctl settings to the running kernel", wanted=applied)
    if persisted_only:
        logger.info(
            f"[{host.name}] sysctl: {len(persisted_only)} settings persisted but not applied "
            f"here (container or kernel without them): {', '.join(sorted(persisted_only))}"
        )


def sysctl_conf(overrides: Mapping[str, object]) -> str:
    """The sysctl.d file: every default with its reason, OVERRIDES (sysctl_overrides) applied."""
    lines = sysctl_lines(overrides)
    return render(
        "sysctl/hardening.conf.j2",
        defaults=[line for line in lines if line.reason],
        added=[line for line in lines if not line.reason],
    )


def _live_differs(wanted: dict[str, str]) -> dict[str, str]:
    """The keys of WANTED whose live value differs -> the live value, as shown to a person."""
    live = ask(_live_values) or {}
    return {k: _shown(live.get(k)) for k, v in wanted.items() if live.get(k) != _typed(v)}


@operation()
def live_values(wanted: dict[str, str]):
    """
    Write WANTED (key -> value) to the running kernel, in one command, when a live value
    differs.

    + wanted: sysctl key -> value, in the sysctl.d file's order
    """
    if not _live_differs(wanted):
        host.noop("the kernel runs every sysctl setting")
        return
    # Every key, in the file's order, whenever one differs: writing net.ipv4.ip_forward resets
    # net.ipv4.conf.all.accept_redirects (the kernel sets it to !forwarding), so writing only the
    # keys that differ left the next run a key to fix (measured on fresh hosts).
    yield "sysctl -q -w " + " ".join(quote(f"{k}={v}") for k, v in wanted.items())


def _shown(value: object) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _settable(keys: list[str]) -> tuple[list[str], list[str]]:
    """(keys to apply live, keys only persisted) for this host."""
    present = ask(_live_values) or {}
    existing = [k for k in keys if k in present]
    missing = [k for k in keys if k not in present]
    container = ask(_container)
    if container and container.strip() not in ("", "none"):
        live, global_only = split_sysctl_for_container(existing)
        return live, missing + global_only
    return existing, missing


def _typed(value: str) -> int | list[int] | str:
    """The value as pyinfra's Sysctl fact reports it (ints, or a list of ints), so a re-run
    compares equal and reports no change."""
    parts = value.split()
    if parts and all(p.lstrip("-").isdigit() for p in parts):
        return int(parts[0]) if len(parts) == 1 else [int(p) for p in parts]
    return value
