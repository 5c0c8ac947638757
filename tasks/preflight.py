"""Checks that run before any operation: the settings, and that the deploy cannot lock itself out.

Owns: nothing on the hosts (reads facts only).
Reads: every setting (validated as a whole by tasks/settings.py); firewall_enabled and
admin_cidrs for the lockout guard.

pyinfra executes operations only after it has prepared them for every host, so an error raised
here stops the whole run before any host is changed.
"""

from __future__ import annotations

import ipaddress

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.facts.server import Command

from tasks import drift
from tasks.facts import fact
from tasks.settings import Settings, for_host, ssh_port_of


class LockoutError(PyinfraError):
    """The new firewall would shut out the address this very deploy connects from."""


@deploy("Check settings and access")
def check_settings_and_access() -> None:
    refuse_non_proxy(host.data.get("ec2_role"))
    settings = for_host(host)  # raises SettingsError naming each bad setting
    if settings.firewall_enabled:
        refuse_lockout(settings, deploy_source_address())
    drift.checked()  # a drift check reached this host and plans it


def refuse_non_proxy(role: str | None) -> None:
    """An app server found by the inventory (EC2_INVENTORY_BACKENDS_AS_HOSTS) is no proxy:
    refuse rather than turn it into one. Hosts from other inventories carry no role."""
    if role not in (None, "proxy"):
        raise PyinfraError(
            f"{host.name}: refusing to run: the inventory says this instance is a {role}, not a "
            "proxy (EC2_INVENTORY_BACKENDS_AS_HOSTS is on): add `--limit proxies`"
        )


def deploy_source_address() -> str | None:
    """The address this deploy reaches the host from, as the host sees it (SSH_CONNECTION).
    Read without sudo: sudo drops the variable."""
    seen = fact(Command, command='echo "${SSH_CONNECTION%% *}"', _sudo=False)
    return (seen or "").strip() or None


def refuse_lockout(settings: Settings, source: str | None) -> None:
    """Raise LockoutError when SOURCE is not inside admin_cidrs (the SSH allowlist)."""
    if source is None:
        return  # not over SSH (e.g. pyinfra's @local): there is no connection to lose
    address = ipaddress.ip_address(source)
    if any(address in ipaddress.ip_network(cidr) for cidr in settings.admin_cidrs):
        return
    raise LockoutError(
        f"{host.name}: refusing to run: this deploy connects from {source}, which the new "
        f"firewall would not allow to reach SSH (port {ssh_port_of(host)}): admin_cidrs = "
        f"{list(settings.admin_cidrs)}. Add {source}/32 (or its network) to admin_cidrs, "
        "or run from an address already in it. Nothing was changed."
    )
