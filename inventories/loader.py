"""Load the inventory end to end: settings, cache or AWS, hosts; and the pyinfra entry point.

Owns the order of the steps and the one place where an `InventoryError` becomes a message on
stderr and exit status 2 (pyinfra would otherwise print a traceback for it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

from .cache import cache_path, read_cached, write_cached, write_private_file
from .ec2 import fetch_instances, plan_queries
from .errors import InventoryError
from .hosts import Ec2Inventory, build_inventory
from .settings import InventorySettings

EXIT_INVENTORY_ERROR = 2
MESSAGE_PREFIX = "EC2 inventory"


def load_inventory(settings: InventorySettings, *, use_cache: bool = True) -> Ec2Inventory:
    """Query AWS (or reuse a fresh cached result) and build the hosts."""
    plan = plan_queries(settings)
    path = cache_path(settings, plan, os.environ.get("AWS_ACCESS_KEY_ID", ""))
    instances = read_cached(path, settings.cache_ttl) if use_cache else None
    if instances is None:
        instances = fetch_instances(settings, plan)
        if settings.cache_ttl > 0:
            write_cached(path, instances)
    inventory = build_inventory(instances, settings)
    if inventory.ssh_config is not None:
        try:
            write_private_file(inventory.ssh_config.path, inventory.ssh_config.text)
        except OSError as error:
            raise InventoryError(
                f"cannot write the bastion ssh_config {inventory.ssh_config.path}: {error}; "
                "set EC2_INVENTORY_CACHE_DIR to a writable directory"
            ) from error
    return inventory


def pyinfra_groups_or_exit(environ: Mapping[str, str] | None = None) -> dict[str, list[Any]]:
    """The groups for `inventories/aws.py`, or a one-line error and exit status 2."""
    try:
        inventory = load_inventory(InventorySettings.from_environ(environ))
    except InventoryError as error:
        fail(error)
    for warning in inventory.warnings:
        print(f"{MESSAGE_PREFIX}: warning: {warning}", file=sys.stderr)
    return inventory.pyinfra_groups()


def fail(error: InventoryError) -> NoReturn:
    """Print the error as one line and exit before any host is touched.

    SystemExit, unlike an Exception, passes through pyinfra's exec of the inventory file
    without being wrapped into a traceback.
    """
    print(f"{MESSAGE_PREFIX}: error: {error}", file=sys.stderr)
    raise SystemExit(EXIT_INVENTORY_ERROR)
