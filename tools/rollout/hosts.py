"""Which hosts a run touches, and in what order: the proxies of the inventory's JSON listing
(`python -m inventories.aws --json`), the canary, a shard's own hosts (sha256 of the EC2 instance
id), and the batches of the plan. It leaves alone how they are deployed and checked."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.rollout.errors import EXIT_USAGE, RolloutError
from tools.rollout.settings import PROXY_GROUP, BatchItem, Settings, Shard


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # ssh_hostname: where SSH and the health checks go
    instance_id: str | None = None  # ec2_instance_id: what places the host in a shard

    @property
    def shard_key(self) -> str:
        return self.instance_id or self.name


def inventory_module(path: str) -> str:
    """`inventories/aws.py` -> `inventories.aws` (run as `python -m inventories.aws --json`)."""
    p = Path(path)
    if p.suffix != ".py" or p.is_absolute() or ".." in p.parts:
        raise RolloutError(
            f"--inventory={path!r}: expected a relative path to a Python inventory module, "
            "e.g. inventories/aws.py",
            EXIT_USAGE,
        )
    return ".".join(p.with_suffix("").parts)


def parse_inventory_json(text: str, group: str = PROXY_GROUP) -> list[Host]:
    """Hosts of `group` from the inventory's --json output, in the inventory's order."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as e:
        raise RolloutError(f"inventory printed no JSON list ({e})") from None
    if not isinstance(entries, list):
        raise RolloutError("inventory JSON is not a list of hosts")
    hosts = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise RolloutError(f"inventory entry {i} has no host name: {entry!r}")
        groups = entry.get("groups") or []
        if group not in groups:
            continue
        data = entry.get("data") or {}
        address = entry.get("ssh_hostname") or data.get("ssh_hostname")
        if not isinstance(address, str) or not address:
            raise RolloutError(f"inventory host {entry['name']} has no ssh_hostname")
        instance_id = data.get("ec2_instance_id")
        if not (isinstance(instance_id, str) and instance_id.strip()):
            instance_id = None
        hosts.append(Host(entry["name"], address, instance_id))
    names = [h.name for h in hosts]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RolloutError(f"inventory lists these hosts twice: {', '.join(duplicates)}")
    return hosts


def load_hosts(settings: Settings) -> list[Host]:
    module = inventory_module(settings.inventory)
    cmd = [sys.executable, "-m", module, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode == 0 and proc.stderr.strip():
        sys.stderr.write(proc.stderr)  # the inventory's warnings
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RolloutError(f"`{shlex.join(cmd)}` failed (exit {proc.returncode}):\n{tail}")
    hosts = parse_inventory_json(proc.stdout, settings.group)
    if not hosts:
        raise RolloutError(
            f"the inventory has no host in group {settings.group!r} "
            "(check ENVIRONMENT, EC2_INVENTORY_REGIONS and the instances' tags)"
        )
    return hosts


def pick_canary(hosts: Sequence[Host], name: str | None) -> Host:
    """The named host, or the first one when no name is given."""
    if not name:
        return hosts[0]
    for host in hosts:
        if host.name == name:
            return host
    raise RolloutError(
        f"canary host {name!r} is not a proxy in the inventory; proxies: "
        + ", ".join(h.name for h in hosts),
        EXIT_USAGE,
    )


def shard_of(key: str, total: int) -> int:
    """The shard (1 to `total`) of a host whose key is `key`: the first 8 bytes of its sha256,
    mod `total`, plus 1. The same on every machine and run (Python's hash() is not)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % total + 1


def shard_hosts(hosts: Sequence[Host], shard: Shard) -> list[Host]:
    """The hosts of `shard`, in inventory order."""
    return [h for h in hosts if shard_of(h.shard_key, shard.total) == shard.index]


def describe_shard(shard: Shard, hosts: Sequence[Host], mine: Sequence[Host]) -> list[str]:
    """What a sharded run says first: which hosts are its own, and how they were chosen."""
    if not mine:
        return [
            f"shard {shard}: no hosts (the inventory's {len(hosts)} proxies are all in other "
            "shards); nothing to do"
        ]
    lines = [
        f"shard {shard}: {len(mine)} of {len(hosts)} proxies (by sha256 of the EC2 instance "
        f"id, mod {shard.total}): {', '.join(h.name for h in mine)}"
    ]
    by_name = [h.name for h in mine if not h.instance_id]
    if by_name:
        lines.append(
            "  placed by host name, the inventory gave them no ec2_instance_id: "
            + ", ".join(by_name)
        )
    return lines


def batch_sizes(items: Sequence[BatchItem], total: int) -> list[int]:
    """Sizes of the consecutive batches covering `total` hosts: the items in turn, the last one
    repeating; the final batch takes whatever is left."""
    sizes: list[int] = []
    covered = 0
    while covered < total:
        item = items[min(len(sizes), len(items) - 1)]
        size = min(item.size(total), total - covered)
        sizes.append(size)
        covered += size
    return sizes


def plan_batches(
    hosts: Sequence[Host],
    canary: Host,
    items: Sequence[BatchItem],
    *,
    with_canary: bool = True,
) -> list[list[Host]]:
    """The canary first, then the other hosts in inventory order, cut into batches by `items`
    (percentages of all these hosts, canary included). Without the canary (`fleet`: the canary
    job deployed it) the plan is the same, minus the canary and any batch left empty."""
    ordered = [canary, *(h for h in hosts if h != canary)]
    batches: list[list[Host]] = []
    start = 0
    for size in batch_sizes(items, len(ordered)):
        batches.append(ordered[start : start + size])
        start += size
    if not with_canary:
        batches = [[h for h in batch if h != canary] for batch in batches]
        batches = [batch for batch in batches if batch]
    return batches
