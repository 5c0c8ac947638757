"""Installing packages without calling a stale apt cache drift: the shared helper.

Owns: nothing by itself; tasks/packages.py and tasks/nginx_install.py call it.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyinfra import host
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt

from tasks import drift
from tasks.facts import fact


def ensure_installed(packages: Iterable[str], name: str) -> None:
    """Install the PACKAGES that are missing, after one refresh of the package lists; nothing
    (not even the refresh) when every one is installed."""
    installed = fact(DebPackages) or {}
    missing = [p for p in packages if p not in installed]
    if not missing:
        host.noop("every package the proxy needs is installed")
        return
    for package in missing:
        drift.state_differs(f"package {package}", "not installed", name)
    apt.packages(name=name, packages=missing, update=True, no_recommends=True)
