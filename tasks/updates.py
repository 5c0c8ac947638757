"""Automatic security updates with unattended-upgrades (Debian's security archive only).

Owns: the `unattended-upgrades` package, /etc/apt/apt.conf.d/50unattended-upgrades (replaces
the package's file: apt lists add up across files) and /etc/apt/apt.conf.d/20auto-upgrades.
Reads: unattended_upgrades_enabled, unattended_upgrades_reboot.
Leaves alone: upgrades of anything else (nginx.org's packages included): a deploy does those.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt, files

from tasks.activation import TEMPLATES
from tasks.settings import for_host


@deploy("Automatic security updates")
def security_updates() -> None:
    settings = for_host(host)
    apt.packages(name="Install unattended-upgrades", packages=["unattended-upgrades"])
    for name in ("50unattended-upgrades", "20auto-upgrades"):
        files.template(
            name=f"Install /etc/apt/apt.conf.d/{name}",
            src=f"{TEMPLATES}/apt/{name}.j2",
            dest=f"/etc/apt/apt.conf.d/{name}",
            s=settings,
        )
