"""Kernel and network settings (sysctl), in the spirit of dev-sec's os hardening.

Owns: /etc/sysctl.d/90-proxy-hardening.conf (every value, with the reason for it) and the live
values of those keys.
Reads: sysctl_overrides (merged over tasks/hardening_defaults.SYSCTL_DEFAULTS).

Inside a container (`systemd-detect-virt --container`) only the per-network-namespace keys
(most of net.*) can be changed; the others are persisted for the day the file is used on a VM
and reported, not failed. Keys this kernel does not have are reported the same way.
"""

from __future__ import annotations

from shlex import quote

from pyinfra import host, logger
from pyinfra.api import deploy, operation
from pyinfra.facts.server import Command, Sysctl

from tasks import drift
from tasks.activation import install_file, manages, render
from tasks.facts import fact
from tasks.hardening_defaults import (
    SYSCTL_CONF_PATH,
    SYSCTL_DEFAULTS,
    merged_sysctl,
    split_sysctl_for_container,
)
from tasks.settings import for_host

manages(SYSCTL_CONF_PATH)


@deploy("Kernel and network settings (sysctl)")
def harden_sysctl() -> None:
    settings = for_host(host)
    wanted = merged_sysctl(settings.sysctl_overrides)
    install_file(
        name=f"Install {SYSCTL_CONF_PATH}",
        path=SYSCTL_CONF_PATH,
        content=render("sysctl/hardening.conf.j2", s=settings, sysctl_defaults=SYSCTL_DEFAULTS),
    )
    live_keys, persisted_only = _settable(list(wanted))
    live_values(
        name="Apply the sysctl settings to the running kernel",
        wanted={key: wanted[key] for key in live_keys},
        all_keys=sorted(wanted),
    )
    if persisted_only:
        logger.info(
            f"[{host.name}] sysctl: {len(persisted_only)} settings persisted but not applied "
            f"here (container or kernel without them): {', '.join(sorted(persisted_only))}"
        )


@operation()
def live_values(wanted: dict[str, str], all_keys: list[str]):
    """
    Write WANTED (key -> value) to the running kernel, in one command, when a live value
    differs; a drift check records one line per differing key.

    + wanted: sysctl key -> value, in the sysctl.d file's order
    + all_keys: every key of the file, sorted: the same fact `_settable` reads (tasks/facts.py
      reads it once per run)
    """
    live = fact(Sysctl, keys=all_keys) or {}
    differ = {k: v for k, v in wanted.items() if live.get(k) != _typed(v)}
    if not differ:
        host.noop("the kernel runs every sysctl setting")
        return
    for key, value in differ.items():
        drift.state_differs(
            key, f"live {_shown(live.get(key))}, should be {value}", "Apply the sysctl settings"
        )
    # Every key, in the file's order, whenever one differs: writing net.ipv4.ip_forward resets
    # net.ipv4.conf.all.accept_redirects (the kernel sets it to !forwarding), so writing only the
    # keys that differ left the next run a key to fix (measured on fresh hosts).
    yield "sysctl -q -w " + " ".join(quote(f"{k}={v}") for k, v in wanted.items())


def _shown(value: object) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _settable(keys: list[str]) -> tuple[list[str], list[str]]:
    """(keys to apply live, keys only persisted) for this host."""
    present = fact(Sysctl, keys=sorted(keys)) or {}
    existing = [k for k in keys if k in present]
    missing = [k for k in keys if k not in present]
    container = fact(Command, command="systemd-detect-virt --container || true")
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
