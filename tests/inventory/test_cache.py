"""inventories/cache.py: the inventory's cache."""

from __future__ import annotations

import stat
from pathlib import Path

from inventories.cache import cache_path, read_cached, write_cached
from inventories.ec2 import plan_queries
from inventory.fakes import Fleet, fake_instance, load, names, settings_with


def test_cache_reuses_result_within_ttl_when_enabled(fleet: Fleet) -> None:
    fleet.launch("proxy-1")
    assert names(load(EC2_INVENTORY_CACHE_TTL="60")) == ["proxy-1"]
    fleet.launch("proxy-2")
    assert names(load(EC2_INVENTORY_CACHE_TTL="60")) == ["proxy-1"]  # cached
    assert names(load()) == ["proxy-1", "proxy-2"]  # TTL 0: always fresh
    assert names(load(EC2_INVENTORY_CACHE_TTL="60", ENVIRONMENT="lab")) == [
        "proxy-1",
        "proxy-2",
    ]  # other filters, other key


def test_cache_is_ignored_when_expired_or_corrupt(tmp_path: Path) -> None:
    settings = settings_with(EC2_INVENTORY_CACHE_TTL="60")
    path = cache_path(settings, plan_queries(settings))
    instance = fake_instance("i-0123456789abcdef0", "web")
    write_cached(path, [instance], now=1000.0)
    assert read_cached(path, 60, now=1030.0) == [instance]
    assert read_cached(path, 60, now=1061.0) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("{not json")
    assert read_cached(path, 60, now=1030.0) is None


def test_cache_key_differs_for_other_filters_and_credentials() -> None:
    settings = settings_with(EC2_INVENTORY_CACHE_TTL="60")
    plan = plan_queries(settings)
    other = settings_with(EC2_INVENTORY_CACHE_TTL="60", EC2_INVENTORY_EXCLUDE="tag:Skip=yes")
    assert cache_path(settings, plan, "AKIA1") == cache_path(settings, plan, "AKIA1")
    assert cache_path(settings, plan, "AKIA1") != cache_path(settings, plan, "AKIA2")
    assert cache_path(settings, plan) != cache_path(other, plan_queries(other))
