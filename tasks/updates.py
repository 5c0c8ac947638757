"""Automatic security updates with unattended-upgrades (Debian's security archive, and nginx.org's
repository when nginx comes from there), and the pending ones applied once by the first converge.

Owns: /etc/apt/apt.conf.d/50unattended-upgrades (replaces the package's file: apt lists add up
across files) and /etc/apt/apt.conf.d/20auto-upgrades; the marker
/var/lib/proxy-deploy/first-security-upgrade (written once the first converge's
`unattended-upgrade` run succeeded). Declares the `unattended-upgrades` package
(tasks/packages.py installs it with the others).
Reads: unattended_upgrades_enabled, unattended_upgrades_reboot, nginx_source,
first_security_upgrade.
Leaves alone: upgrades of anything else (Debian point releases, -updates): a deploy does those.

A fresh host keeps its image's outdated packages until the nightly upgrade. So while the marker
is absent, this task runs `unattended-upgrade` once, with the configuration above (security
origin only) and the package lists the one apt transaction just refreshed (no second refresh),
before nginx is configured to serve; later converges read the marker in the facts bundle and
leave upgrades to the nightly timer. Runs after the packages are installed (deploy.py's order).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from tasks.activation import STATE_DIR, install_file, manages, render
from tasks.facts import exists, looks_for
from tasks.settings import for_host

PACKAGES = ("unattended-upgrades",)
APT_CONF_FILES = ("50unattended-upgrades", "20auto-upgrades")
FIRST_UPGRADE_MARKER = f"{STATE_DIR}/first-security-upgrade"
manages(*(f"/etc/apt/apt.conf.d/{name}" for name in APT_CONF_FILES))
looks_for(FIRST_UPGRADE_MARKER)


@deploy("Automatic security updates")
def security_updates() -> None:
    settings = for_host(host)
    for name in APT_CONF_FILES:
        install_file(
            name=f"Install /etc/apt/apt.conf.d/{name}",
            path=f"/etc/apt/apt.conf.d/{name}",
            content=render(f"apt/{name}.j2", s=settings),
        )
    if settings.first_security_upgrade and not exists(FIRST_UPGRADE_MARKER):
        server.shell(
            name="Apply pending security updates, once (first converge, before nginx serves)",
            commands=[first_upgrade_command()],
        )


def first_upgrade_command() -> str:
    """unattended-upgrade with the configuration above, then the marker (only if it succeeded).
    No `apt-get update`: the lists are the ones the package transaction refreshed."""
    return (
        "DEBIAN_FRONTEND=noninteractive unattended-upgrade"
        f" && mkdir -p {STATE_DIR} && touch {FIRST_UPGRADE_MARKER}"
    )
