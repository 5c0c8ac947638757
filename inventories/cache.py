"""Optional short-lived cache of the EC2 query result, for repeated manual runs.

Off by default (EC2_INVENTORY_CACHE_TTL=0) and always off in CI, where every run must see AWS as
it is. The key covers everything that changes the query (regions, filters, credentials source,
endpoint), so changing a filter never returns stale hosts. What is cached is the list of
instances, not the hosts: naming, addresses and groups are recomputed from the current settings.
Files are private to the user (0600 in a 0700 directory): they hold addresses and tags.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .ec2 import Ec2Instance, QueryPlan
from .settings import InventorySettings

CACHE_FORMAT = 1  # bump when Ec2Instance changes shape, so old files are ignored


def cache_path(settings: InventorySettings, plan: QueryPlan, access_key_id: str = "") -> Path:
    """The cache file for this query, made with these credentials.

    `access_key_id` (not secret) tells apart two accounts reached through environment
    credentials, which profile and role alone would not.
    """
    material = {
        "format": CACHE_FORMAT,
        "regions": list(settings.regions),
        "plan": plan.cache_key_material(),
        "profile": settings.profile,
        "role_arn": settings.role_arn,
        "endpoint_url": settings.endpoint_url,
        "access_key_id": access_key_id,
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:24]
    return settings.cache_dir / f"query-{digest}.json"


def read_cached(path: Path, ttl: int, now: float | None = None) -> list[Ec2Instance] | None:
    """The cached instances if the file is younger than `ttl` seconds, else None.

    A missing, unreadable or malformed file is a cache miss, never an error.
    """
    if ttl <= 0:
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        age = (time.time() if now is None else now) - float(payload["written_at"])
        if payload.get("format") != CACHE_FORMAT or not 0 <= age < ttl:
            return None
        return [Ec2Instance.from_json(item) for item in payload["instances"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_cached(path: Path, instances: list[Ec2Instance], now: float | None = None) -> None:
    """Store the instances atomically; failing to write only costs the next run a query."""
    payload: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "written_at": time.time() if now is None else now,
        "instances": [instance.to_json() for instance in instances],
    }
    with contextlib.suppress(OSError):
        write_private_file(path, json.dumps(payload))


def write_private_file(path: Path, text: str) -> None:
    """Write `text` to `path` readable by the user only, replacing it atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
