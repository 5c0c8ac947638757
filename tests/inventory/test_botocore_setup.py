"""inventories/botocore_setup.py: one botocore session factory, timestamps, regions."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from inventories import ec2 as ec2_module
from inventories import loader as loader_module
from inventories.ec2 import new_botocore_session
from inventories.errors import InventoryError
from inventory.fakes import Fleet, load, names


@pytest.mark.parametrize(
    "value",
    [
        "2025-01-01T10:30:00.000Z",  # what EC2 sends
        "2025-01-01T10:30:00Z",
        "2025-01-01T12:30:00.123456+02:00",
        "2025-01-01T10:30:00",  # no zone: botocore's parser decides
        "1735727400",  # epoch seconds
        "Wed, 01 Jan 2025 10:30:00 GMT",  # RFC 822
    ],
)
def test_timestamp_parser_gives_the_instant_botocore_gives(value: str) -> None:
    from botocore.utils import parse_timestamp as botocore_parse_timestamp

    from inventories.botocore_setup import parse_timestamp

    parsed, expected = parse_timestamp(value), botocore_parse_timestamp(value)
    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()


def test_sessions_share_one_data_loader_and_the_timestamp_parser() -> None:
    from inventories.botocore_setup import parse_timestamp, shared_data_loader

    first, second = new_botocore_session(), new_botocore_session()
    assert first.get_component("data_loader") is shared_data_loader()
    assert second.get_component("data_loader") is shared_data_loader()
    parser = first.get_component("response_parser_factory").create_parser("ec2")
    assert parser._timestamp_parser is parse_timestamp


def test_known_regions_are_those_botocore_lists_for_ec2() -> None:
    from botocore.session import get_session

    from inventories.botocore_setup import known_regions

    session = get_session()
    expected = {
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("ec2", partition_name=partition)
    }
    assert known_regions() == expected
    assert {"eu-west-1", "us-east-1", "cn-north-1", "us-gov-west-1"} <= known_regions()


@pytest.mark.parametrize("enabled_before", [True, False])
def test_collector_is_paused_while_loading_then_as_before(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, enabled_before: bool
) -> None:
    fleet.launch("proxy-1")
    seen: list[bool] = []
    original = ec2_module.fetch_instances

    def fetch_noting_collector(*args: Any) -> Any:
        seen.append(gc.isenabled())
        return original(*args)

    monkeypatch.setattr(loader_module, "fetch_instances", fetch_noting_collector)
    if not enabled_before:
        gc.disable()
    try:
        assert names(load()) == ["proxy-1"]
        assert seen == [False]
        assert gc.isenabled() is enabled_before
        with pytest.raises(InventoryError):
            load(ENVIRONMENT="nowhere")  # an error restores it too
        assert gc.isenabled() is enabled_before
    finally:
        gc.enable()
