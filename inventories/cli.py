"""`python -m inventories.aws`: show what pyinfra would target, without deploying.

Prints one line per host (name, address, user, instance, groups), then the backends the proxies
will point at when they are not hosts themselves, or with `--json` the list of hosts described in
docs/CONTRACTS.md (backends appear there only as hosts, with EC2_INVENTORY_BACKENDS_AS_HOSTS; the
proxies carry their addresses as `ec2_backend_addresses`). `--settings-table` prints the README
table of the settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .errors import InventoryError
from .hosts import Ec2Inventory
from .loader import MESSAGE_PREFIX, collector_paused, fail, load_inventory
from .settings import PROXY_GROUP, InventorySettings, settings_table_markdown


def main(argv: Sequence[str] | None = None) -> int:
    """Run the listing; returns the exit status (2 on an inventory error)."""
    parser = argparse.ArgumentParser(
        prog="python -m inventories.aws",
        description="List the EC2 hosts pyinfra would target (settings: EC2_INVENTORY_*).",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--no-cache", action="store_true", help="query AWS even if a cached result is fresh"
    )
    parser.add_argument(
        "--settings-table", action="store_true", help="print the README settings table and exit"
    )
    options = parser.parse_args(argv)
    if options.settings_table:
        print(settings_table_markdown(), end="")
        return 0
    # Building the listing allocates as much as the load: no collector passes for either.
    with collector_paused():
        try:
            settings = InventorySettings.from_environ()
            inventory = load_inventory(settings, use_cache=not options.no_cache)
        except InventoryError as error:
            fail(error)
        for warning in inventory.warnings:
            print(f"{MESSAGE_PREFIX}: warning: {warning}", file=sys.stderr)
        if options.json:
            print(json.dumps([host.to_json() for host in inventory.hosts], indent=2))
        else:
            print(format_listing(inventory, settings))
    return 0


def format_listing(inventory: Ec2Inventory, settings: InventorySettings) -> str:
    """A table a person can read: one host per line, the backends if not hosts, a summary line."""
    rows = [
        (
            host.name,
            host.ssh_hostname,
            str(host.data["ssh_user"]),
            str(host.data["ec2_instance_id"]),
            " ".join(host.groups),
        )
        for host in inventory.hosts
    ]
    lines = _table(("NAME", "ADDRESS", "USER", "INSTANCE", "GROUPS"), rows)
    proxies = sum(1 for host in inventory.hosts if PROXY_GROUP in host.groups)
    source = settings.endpoint_url or "AWS"
    where = f"in {', '.join(settings.regions)} from {source}"
    if inventory.backends_as_hosts:
        backends = len(inventory.hosts) - proxies
        summary = f"{len(inventory.hosts)} hosts (proxies: {proxies}, backends: {backends}) {where}"
    else:
        summary = (
            f"{len(inventory.hosts)} hosts (proxies: {proxies}) and "
            f"{len(inventory.backends)} backends (not hosts) {where}"
        )
        if inventory.backends:
            lines += ["", "backends (not deploy targets; the proxies' ec2_backend_addresses):"]
            lines += _table(
                ("NAME", "ADDRESS", "REGION", "INSTANCE"),
                [
                    (b.name, b.private_ip or "(no private IP)", b.region, b.instance_id)
                    for b in inventory.backends
                ],
            )
    if settings.bastion is not None:
        summary += f", via bastion {settings.bastion.jump_spec}"
    return "\n".join([*lines, summary])


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns two spaces apart; the last one is not padded."""
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
