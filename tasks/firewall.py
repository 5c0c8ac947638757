"""The host firewall: an nftables allowlist, loaded atomically, persisted, enabled at boot.

Owns: /etc/nftables.conf (one table, `inet proxy_firewall`; other tables are left alone),
the `nftables` service (active, and enabled so the ruleset loads at boot), its drop-in
/etc/systemd/system/nftables.service.d/proxy-deploy.conf (templates/systemd/
nftables-proxy-deploy.conf: stopping the unit deletes our table only, where Debian's unit runs
`nft flush ruleset` and removes every other table too), and the firewall's activation
record /var/lib/proxy-deploy/active/firewall: the hash of the ruleset file it loaded and a hash of
the live table right after loading. A live table that differs (flushed or edited by hand), or a
ruleset installed but never loaded (a run killed in between), is drift; the run reloads it.
Reads: firewall_enabled, admin_cidrs, allowed_http_cidrs, listen_port;
pyinfra's ssh_port.
Leaves alone: the lockout guard (tasks/preflight.py refuses a run whose own address the new
SSH rule would not allow, before anything changes).
"""

from __future__ import annotations

import ipaddress

from pyinfra import host
from pyinfra.api import deploy, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.server import Command

from tasks import drift
from tasks.activation import (
    ACTIVE_DIR,
    STATE_DIR,
    install_validated,
    manages,
    recorded,
    render,
    sha1,
    template_text,
)
from tasks.facts import ask, asks
from tasks.settings import Settings, for_host, ssh_port_of
from tasks.units import install_units, service_state, watches

RULESET = "/etc/nftables.conf"
DROPIN = "/etc/systemd/system/nftables.service.d/proxy-deploy.conf"
manages(RULESET, DROPIN)
watches("nftables.service")
TABLE = "inet proxy_firewall"
PACKAGES = ("nftables",)
# sha1 of the live table (`-s`: without counters, which change with every packet).
LIST_TABLE = f"nft -s list table {TABLE} 2>/dev/null | sha1sum | cut -d' ' -f1"
NO_TABLE = sha1("")  # what LIST_TABLE prints when the table does not exist


@asks
def _live_table() -> tuple[type[Command], dict]:
    return Command, {"command": LIST_TABLE}


@deploy("Firewall: nftables allowlist")
def configure_firewall() -> None:
    settings = for_host(host)
    if not settings.firewall_enabled:
        host.noop("firewall_enabled is false: the host firewall is not managed")
        return
    content = nftables_conf(settings, ssh_port_of(host))
    ruleset = install_validated(
        name=f"Install {RULESET} (checked with nft -c first)",
        files={RULESET: content},
        check="nft -c -f {stage}" + RULESET,
        label="firewall",
        mode="755",
    )
    _load(ruleset, sha1(content))
    _stop_only_our_table()
    # Active, not only enabled: the ruleset is loaded either way, but an inactive unit cannot be
    # reloaded, and its stop (our table only, above) would do nothing until the next boot.
    service_state(
        name="Start nftables and enable it at boot", unit="nftables", running=True, enabled=True
    )


def nftables_conf(settings: Settings, ssh_port: int) -> str:
    """/etc/nftables.conf for SETTINGS, SSH on SSH_PORT."""
    admin_v4, admin_v6 = _by_family(settings.admin_cidrs)
    http_v4, http_v6 = _by_family(settings.allowed_http_cidrs)
    return render(
        "nftables/nftables.conf.j2",
        ssh_port=ssh_port,
        admin_v4=admin_v4,
        admin_v6=admin_v6,
        http_v4=http_v4,
        http_v6=http_v6,
        http_ports=[settings.listen_port],
    )


def _by_family(cidrs: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(IPv4 networks, IPv6 networks) of CIDRS, each in its order: an nftables set holds one
    address type."""
    networks = [(cidr, ipaddress.ip_network(cidr).version) for cidr in cidrs]
    return [c for c, v in networks if v == 4], [c for c, v in networks if v == 6]


def _stop_only_our_table() -> None:
    """The nftables.service drop-in, and a daemon-reload when it changed or systemd still runs
    an older definition of the unit (a run killed in between). Nothing else: the drop-in changes
    what stop and reload do, not the table loaded now."""
    install_units({DROPIN: template_text("systemd/nftables-proxy-deploy.conf")}, "nftables")


def _load(installed: OperationMeta | None, ruleset_sha1: str) -> None:
    """Load the ruleset after a new one is installed (`_if=`); or, when the file is the desired
    one, unless the record says this very ruleset is loaded and the live table is still the one
    loaded then (drift: reported, and loaded)."""
    name = f"Load the {TABLE} table (one atomic transaction)"
    if installed is not None and installed.will_change:
        ruleset_loaded(name=name, ruleset_sha1=ruleset_sha1, _if=installed.did_change)
        return
    live = (ask(_live_table) or "").strip()
    loaded_file, _, loaded_table = (recorded("firewall") or "").partition(" ")
    if (loaded_file, loaded_table) == (ruleset_sha1, live):
        host.noop(f"{TABLE} is loaded as deployed")
        return
    drift.state_differs(
        "nftables", _why_reload(ruleset_sha1, loaded_file, live, loaded_table), name
    )
    ruleset_loaded(name=name, ruleset_sha1=ruleset_sha1)


@operation()
def ruleset_loaded(ruleset_sha1: str):
    """
    Load /etc/nftables.conf in one transaction, then record its hash and the live table's.

    + ruleset_sha1: sha1 of /etc/nftables.conf as installed
    """
    record = f"{ACTIVE_DIR}/firewall"
    yield (
        f"nft -f {RULESET} && mkdir -p {ACTIVE_DIR}"
        f' && echo "{ruleset_sha1} $({LIST_TABLE})" > {record}.new && mv -f {record}.new {record}'
        f" && rm -f {STATE_DIR}/firewall.sha1"  # the record of versions before this one
    )


def _why_reload(wanted: str, loaded_file: str, live: str, loaded_table: str) -> str:
    """The drift line: what the kernel runs against what it should."""
    if live == NO_TABLE:
        return f"table {TABLE} is not loaded (flushed or deleted)"
    if loaded_file != wanted:
        return f"loaded ruleset older than {RULESET} (load pending)"
    return f"live table {TABLE} differs from the one the deploy loaded (edited by hand)"
