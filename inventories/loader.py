"""Load the inventory end to end: settings, cache or AWS, hosts; and the pyinfra entry point.

Owns the order of the steps, the one place where an `InventoryError` becomes a message on
stderr and exit status 2 (pyinfra would otherwise print a traceback for it), and pausing Python's
cyclic garbage collector while the inventory is built.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Iterator, Mapping
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
    with collector_paused():
        return _load_inventory(settings, use_cache=use_cache)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block, then as it was.

    botocore turns each DescribeInstances page into many thousands of small dicts, lists and
    strings; for 1,000 instances the collector ran 238 times during the load, twice over every
    object of the process (botocore's EC2 model included), for about 0.06 s of CPU (docs/
    inventory.md, Performance). It has nothing to find there: the parsed pages and the hosts
    hold no reference cycles (a collection after a paused load frees 0 objects), reference
    counting frees them, and the peak memory is the same.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_inventory(settings: InventorySettings, *, use_cache: bool) -> Ec2Inventory:
    """`load_inventory`, collector aside."""
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
