"""The host firewall: an nftables allowlist, loaded atomically, persisted, enabled at boot.

Owns: /etc/nftables.conf (one table, `inet proxy_firewall`; other tables are left alone),
the `nftables` package and service (enabled, so the ruleset loads at boot), and
/var/lib/proxy-deploy/firewall.sha1 (a fingerprint of the loaded table, to notice drift).
Reads: firewall_enabled, admin_cidrs, allowed_http_cidrs, https_enabled, listen_port;
pyinfra's ssh_port.
Leaves alone: the lockout guard (tasks/preflight.py refuses a run whose own address the new
SSH rule would not allow, before anything changes).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy, operation
from pyinfra.facts.server import Command
from pyinfra.operations import apt, systemd

from tasks.activation import STATE_DIR, install_validated, render
from tasks.settings import for_host, ssh_port_of

RULESET = "/etc/nftables.conf"
TABLE = "inet proxy_firewall"
FINGERPRINT = f"{STATE_DIR}/firewall.sha1"
LIST_TABLE = f"nft -s list table {TABLE} 2>/dev/null | sha1sum"


@deploy("Firewall: nftables allowlist")
def configure_firewall() -> None:
    settings = for_host(host)
    if not settings.firewall_enabled:
        host.noop("firewall_enabled is false: the host firewall is not managed")
        return
    apt.packages(name="Install nftables", packages=["nftables"])
    ruleset = install_validated(
        name=f"Install {RULESET} (checked with nft -c first)",
        files={
            RULESET: render("nftables/nftables.conf.j2", s=settings, ssh_port=ssh_port_of(host))
        },
        check="nft -c -f {stage}" + RULESET,
        label="firewall",
        mode="755",
    )
    ruleset_loaded(
        name=f"Load the {TABLE} table (one atomic transaction)", force=ruleset.will_change
    )
    systemd.service(name="Enable nftables at boot", service="nftables", enabled=True)


@operation()
def ruleset_loaded(force: bool = False):
    """
    Load /etc/nftables.conf when it changed or when the live table differs from the one the
    deploy loaded last (a flushed or hand-edited firewall).

    + force: load even if the live table looks as deployed (the ruleset file is changing)
    """
    live = host.get_fact(Command, command=f"{LIST_TABLE}; cat {FINGERPRINT} 2>/dev/null || true")
    lines = (live or "").splitlines()
    matches = len(lines) == 2 and lines[0] == lines[1]
    if matches and not force:
        host.noop(f"{TABLE} is loaded as deployed")
        return
    yield f"nft -f {RULESET} && mkdir -p {STATE_DIR} && {LIST_TABLE} > {FINGERPRINT}"
