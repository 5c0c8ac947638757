"""The proxy's packages: all it needs, in one apt transaction, and nothing it does not need.

Owns: the installation of every package the other tasks need (each task module declares them in
`PACKAGES`; `needed` picks those the host's settings call for), the absence of
tasks/hardening_defaults.PACKAGES_NOT_ON_A_PROXY (purged when present) and of
SERVICES_NOT_ON_A_PROXY (stopped and disabled when their unit exists).
Reads: the settings the task modules' package lists depend on.

Package lists are refreshed only when a package must be installed: an apt cache that is merely
old is not drift, and a converged host makes no apt call at all.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt

from tasks import (
    auditd,
    drift,
    firewall,
    host_controls,
    log_shipping,
    nginx_install,
    time_sync,
    updates,
)
from tasks.apt_packages import ensure_installed, installed_packages
from tasks.hardening_defaults import PACKAGES_NOT_ON_A_PROXY, SERVICES_NOT_ON_A_PROXY
from tasks.settings import Settings, for_host
from tasks.units import service_state, unit_state, watches

watches(*SERVICES_NOT_ON_A_PROXY)


def needed(settings: Settings) -> list[str]:
    """Every package the deploy installs on this host, in a stable order."""
    wanted = [
        *nginx_install.PACKAGES,
        *(firewall.PACKAGES if settings.firewall_enabled else ()),
        *updates.PACKAGES,
        *(log_shipping.PACKAGES if settings.log_bucket else ()),
        *(host_controls.PACKAGES if settings.needrestart_enabled else ()),
        *(auditd.PACKAGES if settings.auditd_enabled else ()),
        *(time_sync.PACKAGES if settings.time_servers else ()),
    ]
    return list(dict.fromkeys(wanted))


@deploy("Install what a proxy needs")
def install_needed() -> None:
    wanted = needed(for_host(host))
    if time_sync.other_time_daemon(installed_packages()):  # it stays; timesyncd would remove it
        wanted = [p for p in wanted if p not in time_sync.PACKAGES]
    ensure_installed(wanted, "Install the proxy's packages (one apt transaction)")


@deploy("Remove what a proxy does not need")
def remove_unneeded() -> None:
    installed = installed_packages()
    unwanted = [name for name in PACKAGES_NOT_ON_A_PROXY if name in installed]
    if unwanted:
        for package in unwanted:
            drift.state_differs(f"package {package}", "installed, should not be", "Purge packages")
        apt.packages(
            name="Purge packages a proxy does not need",
            packages=unwanted,
            present=False,
            extra_uninstall_args="--purge",
        )
    for unit in SERVICES_NOT_ON_A_PROXY:
        if unit_state(unit).get("LoadState", "not-found") != "not-found":
            service_state(name=f"Stop and disable {unit}", unit=unit, running=False, enabled=False)
