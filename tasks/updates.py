"""Automatic security updates with unattended-upgrades (Debian's security archive, and nginx.org's
repository when nginx comes from there).

Owns: /etc/apt/apt.conf.d/50unattended-upgrades (replaces the package's file: apt lists add up
across files) and /etc/apt/apt.conf.d/20auto-upgrades. Declares the `unattended-upgrades` package
(tasks/packages.py installs it with the others).
Reads: unattended_upgrades_enabled, unattended_upgrades_reboot, nginx_source.
Leaves alone: upgrades of anything else (Debian point releases, -updates): a deploy does those.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from tasks.activation import install_file, manages, render
from tasks.settings import for_host

PACKAGES = ("unattended-upgrades",)
APT_CONF_FILES = ("50unattended-upgrades", "20auto-upgrades")
manages(*(f"/etc/apt/apt.conf.d/{name}" for name in APT_CONF_FILES))


@deploy("Automatic security updates")
def security_updates() -> None:
    settings = for_host(host)
    for name in APT_CONF_FILES:
        install_file(
            name=f"Install /etc/apt/apt.conf.d/{name}",
            path=f"/etc/apt/apt.conf.d/{name}",
            content=render(f"apt/{name}.j2", s=settings),
        )
