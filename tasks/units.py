"""systemd unit files the deploy writes, and the daemon-reload that makes systemd use them.

Owns: nothing by itself; tasks/sshd.py and tasks/log_shipping.py install their units with it.

A unit file that matches while systemd still runs its older definition (a run killed between the
file and the daemon-reload) is drift: systemd says so itself (`NeedDaemonReload=yes`), and the
next run reloads.
"""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import server, systemd

from tasks import drift
from tasks.activation import install_file


def install_units(units: dict[str, str], purpose: str) -> None:
    """Install UNITS (path -> content) and daemon-reload when one changes or systemd still runs
    an older definition of one of them."""
    changes = [
        install_file(name=f"Install {path}", path=path, content=content).will_change
        for path, content in units.items()
    ]
    stale = _stale_units([posixpath.basename(path) for path in units])
    for unit in stale:
        drift.state_differs(
            unit, "systemd runs an older definition (daemon-reload pending)", "Reload systemd"
        )
    if any(changes) or stale:
        systemd.daemon_reload(name=f"Reload systemd ({purpose} units changed)")


def _stale_units(names: list[str]) -> list[str]:
    """The units systemd reports as changed on disk since it loaded them."""
    output = host.get_fact(
        Command, command=f"systemctl show -p Id,NeedDaemonReload {' '.join(names)} || true"
    )
    stale, current = [], ""
    for line in (output or "").splitlines():
        key, _, value = line.partition("=")
        if key == "Id":
            current = value
        elif key == "NeedDaemonReload" and value == "yes":
            stale.append(current)
    return stale


def enable_at_boot(unit: str, purpose: str) -> None:
    """Enable UNIT (never start it). Asked of `systemctl is-enabled`, not of pyinfra's
    SystemdEnabled: that lists loaded units only, and a unit that only runs at boot is not loaded
    afterwards, so pyinfra would enable it again on every run."""
    state = (host.get_fact(Command, command=f"systemctl is-enabled {unit} || true") or "").strip()
    if state == "enabled":
        host.noop(f"{unit} is enabled at boot")
        return
    drift.state_differs(unit, f"{state or 'unknown'} at boot, should be enabled", f"Enable {unit}")
    server.shell(name=f"Enable {unit} at boot ({purpose})", commands=[f"systemctl enable {unit}"])
