"""Installing packages without calling a stale apt cache drift: the shared helper.

Owns: nothing by itself; tasks/packages.py and tasks/nginx_install.py call it.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyinfra import host
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt

from tasks import drift
from tasks.facts import ask, asks


@asks
def _installed_packages() -> tuple[type[DebPackages], dict]:
    return DebPackages, {}


def installed_packages() -> dict[str, list[str]]:
    """Package name -> versions installed, as the host said before this run changed anything."""
    return ask(_installed_packages) or {}


def ensure_installed(packages: Iterable[str], name: str) -> None:
    """Install the PACKAGES that are missing, after one refresh of the package lists; nothing
    (not even the refresh) when every one is installed."""
    installed = installed_packages()
    missing = [p for p in packages if p not in installed]
    if not missing:
        host.noop("every package the proxy needs is installed")
        return
    for package in missing:
        drift.state_differs(f"package {package}", "not installed", name)
    apt.packages(name=name, packages=missing, update=True, no_recommends=True)
