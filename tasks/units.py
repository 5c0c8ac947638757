"""systemd unit files the deploy writes, and the daemon-reload that makes systemd use them.

Owns: nothing by itself; tasks/sshd.py and tasks/log_shipping.py install their units with it.

A unit file that matches while systemd still runs its older definition (a run killed between the
file and the daemon-reload) is drift: systemd says so itself (`NeedDaemonReload=yes`), and the
next run reloads.
"""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.api import StringCommand, operation
from pyinfra.facts.server import Command
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus
from pyinfra.operations import server, systemd

from tasks import drift
from tasks.activation import install_file
from tasks.facts import fact


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
    output = fact(
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
    state = (fact(Command, command=f"systemctl is-enabled {unit} || true") or "").strip()
    if state == "enabled":
        host.noop(f"{unit} is enabled at boot")
        return
    drift.state_differs(unit, f"{state or 'unknown'} at boot, should be enabled", f"Enable {unit}")
    server.shell(name=f"Enable {unit} at boot ({purpose})", commands=[f"systemctl enable {unit}"])


@operation()
def service_state(unit: str, running: bool | None = None, enabled: bool | None = None):
    """
    Start or stop, enable or disable UNIT where its live state is not the wanted one; a drift
    check records one line per difference.

    + unit: the unit (".service" is implied without a suffix)
    + running: True started, False stopped, None either
    + enabled: True enabled at boot, False disabled, None either
    """
    name = unit if "." in unit else f"{unit}.service"
    now_running = bool(fact(SystemdStatus, services=[name]).get(name))
    now_enabled = bool(fact(SystemdEnabled, services=[name]).get(name))
    changed = False
    if running is not None and now_running != running:
        drift.state_differs(unit, _should("active", now_running, running), "")
        yield StringCommand("systemctl", "start" if running else "stop", name)
        changed = True
    if enabled is not None and now_enabled != enabled:
        drift.state_differs(unit, _should("enabled at boot", now_enabled, enabled), "")
        yield StringCommand("systemctl", "enable" if enabled else "disable", "--quiet", name)
        changed = True
    if not changed:
        host.noop(f"{name} is as wanted")


def _should(what: str, now: bool, wanted: bool) -> str:
    def said(value: bool) -> str:
        return what if value else f"not {what}"

    return f"{said(now)}, should be {said(wanted)}"
