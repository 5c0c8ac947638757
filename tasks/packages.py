"""Nothing on a proxy that it does not need: listeners and legacy daemons removed or masked.

Owns: the absence of tasks/hardening_defaults.PACKAGES_NOT_ON_A_PROXY (purged when present) and
of SERVICES_NOT_ON_A_PROXY (stopped and disabled when their unit exists).
Reads: no setting (the lists and the reason for each are in tasks/hardening_defaults.py).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.systemd import SystemdEnabled
from pyinfra.operations import apt, systemd

from tasks.hardening_defaults import PACKAGES_NOT_ON_A_PROXY, SERVICES_NOT_ON_A_PROXY


@deploy("Remove what a proxy does not need")
def remove_unneeded() -> None:
    installed = host.get_fact(DebPackages) or {}
    unwanted = [name for name in PACKAGES_NOT_ON_A_PROXY if name in installed]
    if unwanted:
        apt.packages(
            name="Purge packages a proxy does not need",
            packages=unwanted,
            present=False,
            extra_uninstall_args="--purge",
        )
    units = host.get_fact(SystemdEnabled) or {}
    for unit in SERVICES_NOT_ON_A_PROXY:
        if unit in units:
            systemd.service(
                name=f"Stop and disable {unit}", service=unit, running=False, enabled=False
            )
