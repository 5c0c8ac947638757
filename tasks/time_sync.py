"""Time sync: systemd-timesyncd set to the Amazon Time Sync Service.

Owns: /etc/systemd/timesyncd.conf.d/90-proxy.conf (templates/timesync/90-proxy.conf.j2: NTP= the
`time_servers`), systemd-timesyncd running and enabled at boot, restarted when that file changes.
Declares the package systemd-timesyncd (a package of its own since Debian 12, not on a
debootstrap base; tasks/packages.py installs it with the others).
Reads: time_servers (empty: time sync is left alone, nothing installed or written).
Leaves alone: timesyncd.conf itself, and a host that already runs another time daemon (chrony,
ntp, ntpsec, openntpd): installing systemd-timesyncd would remove it (the packages conflict on
time-daemon), so the deploy installs nothing and says so.

Inside a container (`systemd-detect-virt --container`) the clock is the machine's:
systemd-timesyncd's own ConditionVirtualization=!container skips it, so the file is persisted
and the unit enabled at boot, but it is not started, and the run says so (like auditd).
"""

from __future__ import annotations

from collections.abc import Mapping

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import server

from tasks.activation import install_file, manages, render
from tasks.apt_packages import installed_packages
from tasks.auditd import in_container
from tasks.settings import for_host
from tasks.units import service_state, watches

PACKAGES = ("systemd-timesyncd",)
DROPIN = "/etc/systemd/timesyncd.conf.d/90-proxy.conf"
UNIT = "systemd-timesyncd.service"
# Debian packages that provide time-daemon and conflict with systemd-timesyncd.
OTHER_TIME_DAEMONS = ("chrony", "ntp", "ntpsec", "openntpd")
manages(DROPIN)
watches(UNIT)


def other_time_daemon(installed: Mapping[str, object]) -> str | None:
    """The time daemon other than systemd-timesyncd installed on the host, if any."""
    return next((name for name in OTHER_TIME_DAEMONS if name in installed), None)


@deploy("Time sync (Amazon Time Sync Service)")
def time_sync() -> None:
    settings = for_host(host)
    if not settings.time_servers:
        return
    other = other_time_daemon(installed_packages())
    if other:
        logger.warning(
            f"[{host.name}] time sync: {other} is installed, left in charge of the clock "
            f"(systemd-timesyncd would replace it); point it at {settings.time_servers[0]}"
        )
        return
    changed = install_file(
        name=f"Install {DROPIN}",
        path=DROPIN,
        content=render("timesync/90-proxy.conf.j2", s=settings),
    )
    if in_container():
        service_state(name=f"Enable {UNIT} at boot", unit=UNIT, enabled=True)
        logger.info(
            f"[{host.name}] time sync: {DROPIN} persisted and {UNIT} enabled, not running here "
            "(container: the clock is the machine's)"
        )
        return
    if not changed:
        service_state(
            name=f"Keep {UNIT} running and enabled at boot", unit=UNIT, running=True, enabled=True
        )
        return
    service_state(name=f"Enable {UNIT} at boot", unit=UNIT, enabled=True)
    server.shell(name=f"Restart {UNIT} ({DROPIN} changed)", commands=[f"systemctl restart {UNIT}"])
