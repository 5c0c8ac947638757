"""systemd units: the files the deploy writes, the daemon-reload that makes systemd use them,
and the units' live state (running, enabled at boot).

Owns: nothing by itself; the task modules install and manage their units with it. Every unit the
deploy looks at is registered as its module is imported (`watches`), so the state of all of them
comes in one command (`UnitStates`), not one or two per unit and operation.

A unit file that matches while systemd still runs its older definition (a run killed between the
file and the daemon-reload) is drift: systemd says so itself (`NeedDaemonReload=yes`), and the
next run reloads.
"""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, operation
from pyinfra.operations import server, systemd

from tasks import drift
from tasks.activation import install_file
from tasks.facts import ask, asks, fact

WATCHED_UNITS: list[str] = []
# As pyinfra's systemd facts count them: a timer "waiting" and a oneshot "exited" are active.
ACTIVE_SUBSTATES = ("running", "waiting", "exited", "listening", "mounted")


def watches(*units: str) -> None:
    """Register UNITS (with their suffix) as units the deploy reads the state of."""
    WATCHED_UNITS.extend(u for u in units if u not in WATCHED_UNITS)


class UnitStates(FactBase):
    """unit -> its properties (LoadState, SubState, UnitFileState, NeedDaemonReload) for UNITS,
    asked by name: unlike `systemctl show '*'` this also answers for units not loaded now."""

    def command(self, units: tuple[str, ...]) -> str:
        properties = "Id,LoadState,SubState,UnitFileState,NeedDaemonReload"
        return f"systemctl show -p {properties} {' '.join(units)} || true"

    def process(self, output: list[str]) -> dict[str, dict[str, str]]:
        states: dict[str, dict[str, str]] = {}
        current: dict[str, str] = {}
        for line in output:
            key, _, value = line.partition("=")
            if key == "Id":
                current = states.setdefault(value, {})
            current[key] = value
        return states


@asks
def _watched_units() -> tuple[type[UnitStates], dict]:
    return UnitStates, {"units": tuple(WATCHED_UNITS)}


def unit_state(unit: str) -> dict[str, str]:
    """UNIT's properties ({} when systemd said nothing of it): one command for every registered
    unit; an unregistered one costs a command of its own."""
    if unit in WATCHED_UNITS:
        return ask(_watched_units).get(unit, {})
    return fact(UnitStates, units=(unit,)).get(unit, {})


def install_units(units: dict[str, str], purpose: str) -> None:
    """Install UNITS (path -> content: unit files, or drop-ins in a unit's `NAME.d/`) and
    daemon-reload when one changes or systemd still runs an older definition of its unit."""
    changes = [
        install_file(name=f"Install {path}", path=path, content=content)
        for path, content in units.items()
    ]
    stale = _stale_units(sorted({unit_of(path) for path in units}))
    for unit in stale:
        drift.state_differs(
            unit, "systemd runs an older definition (daemon-reload pending)", "Reload systemd"
        )
    if any(changes) or stale:
        systemd.daemon_reload(name=f"Reload systemd ({purpose} units changed)")


def unit_of(path: str) -> str:
    """The unit a unit file or drop-in configures: `nginx.service.d/x.conf` -> nginx.service."""
    directory = posixpath.basename(posixpath.dirname(path))
    return directory.removesuffix(".d") if directory.endswith(".d") else posixpath.basename(path)


def _stale_units(names: list[str]) -> list[str]:
    """The units systemd reports as changed on disk since it loaded them."""
    return [n for n in names if unit_state(n).get("NeedDaemonReload") == "yes"]


def enable_at_boot(unit: str, purpose: str) -> None:
    """Enable UNIT (never start it). Asked by name (UnitStates), not of pyinfra's
    SystemdEnabled: that lists loaded units only, and a unit that only runs at boot is not loaded
    afterwards, so pyinfra would enable it again on every run."""
    state = unit_state(unit).get("UnitFileState", "")
    if state == "enabled":
        host.noop(f"{unit} is enabled at boot")
        return
    drift.state_differs(unit, f"{state or 'unknown'} at boot, should be enabled", f"Enable {unit}")
    server.shell(name=f"Enable {unit} at boot ({purpose})", commands=[f"systemctl enable {unit}"])


def service_state(
    name: str, unit: str, running: bool | None = None, enabled: bool | None = None
) -> None:
    """The operation `service_changed` (below) when UNIT's live state is not the wanted one;
    nothing at all when it is."""
    if _changes(unit, running, enabled):
        service_changed(name=name, unit=unit, running=running, enabled=enabled)


@operation()
def service_changed(unit: str, running: bool | None = None, enabled: bool | None = None):
    """
    Start or stop, enable or disable UNIT where its live state is not the wanted one; a drift
    check records one line per difference.

    + unit: the unit (".service" is implied without a suffix)
    + running: True started, False stopped, None either
    + enabled: True enabled at boot, False disabled, None either
    """
    changes = _changes(unit, running, enabled)
    if not changes:
        host.noop(f"{unit} is as wanted")
    for why, command in changes:
        drift.state_differs(unit, why, "")
        yield command


def _changes(
    unit: str, running: bool | None, enabled: bool | None
) -> list[tuple[str, StringCommand]]:
    """(why, systemctl command) for each way UNIT's live state is not the wanted one."""
    name = unit if "." in unit else f"{unit}.service"
    state = unit_state(name)
    now_running = state.get("SubState") in ACTIVE_SUBSTATES
    now_enabled = state.get("UnitFileState") in ("enabled", "static")
    changes = []
    if running is not None and now_running != running:
        command = StringCommand("systemctl", "start" if running else "stop", name)
        changes.append((_should("active", now_running, running), command))
    if enabled is not None and now_enabled != enabled:
        command = StringCommand("systemctl", "enable" if enabled else "disable", "--quiet", name)
        changes.append((_should("enabled at boot", now_enabled, enabled), command))
    return changes


def _should(what: str, now: bool, wanted: bool) -> str:
    def said(value: bool) -> str:
        return what if value else f"not {what}"

    return f"{said(now)}, should be {said(wanted)}"
