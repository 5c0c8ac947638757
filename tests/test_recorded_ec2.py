"""The recorded-pages fake EC2 (bench/recorded_ec2.py): it serves what moto answered, page by
page, and builds the same inventory as moto does.

moto runs in this process (ThreadedMotoServer on a loopback port: no subprocess to wait for);
the recording proxy sits in front of it, then the fake serves the recording alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from bench.recorded_ec2 import (
    RecordedResponse,
    Recording,
    RequestKey,
    recording_proxy,
    replay,
    serving,
)
from inventories.botocore_setup import new_botocore_session
from inventories.loader import load_inventory
from inventories.settings import InventorySettings

REGION = "eu-west-1"
ENVIRONMENT = "recorded"  # only this module's instances, whatever else the process's moto holds
FILTERS = [
    {"Name": "tag:Environment", "Values": [ENVIRONMENT]},
    {"Name": "tag:Role", "Values": ["reverse-proxy"]},
]
PAGE_SIZE = 5
PROXIES = 12  # pages of 5, 5 and 2
PROXY_NAMES = ["proxy-asg"] * 8 + ["proxy-1", "proxy-2", "proxy-3", "proxy-4"]


@dataclass
class Recorded:
    """What the module recorded through the proxy, and what moto's answers gave."""

    recording: Recording
    pages: list[list[str]]  # instance ids of each DescribeInstances page, in order
    inventory: Any  # the Ec2Inventory built against moto
    upstream_seconds: float


def aws_environment(endpoint: str) -> dict[str, str]:
    """The process environment of a client of `endpoint`: fake keys, no ~/.aws, no IMDS."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "EC2_INVENTORY_")) and name not in {"ENVIRONMENT", "CI"}
    }
    return {
        **environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "ENVIRONMENT": ENVIRONMENT,
        "EC2_INVENTORY_BACKENDS_AS_HOSTS": "true",
    }


def ec2_client(endpoint: str) -> Any:
    """A botocore EC2 client of `endpoint`, made the way the inventory makes its clients."""
    return new_botocore_session().create_client(
        "ec2",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def read_pages(client: Any) -> list[list[str]]:
    """Instance ids of every page of the proxies, PAGE_SIZE per page."""
    paginator = client.get_paginator("describe_instances")
    return [
        [i["InstanceId"] for r in page["Reservations"] for i in r["Instances"]]
        for page in paginator.paginate(Filters=FILTERS, PaginationConfig={"PageSize": PAGE_SIZE})
    ]


def build_inventory_from(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The inventory built, in this process, against `endpoint`."""
    environ = aws_environment(endpoint)
    with monkeypatch.context() as patch:
        for name in [n for n in os.environ if n not in environ]:
            patch.delenv(name)
        for name, value in environ.items():
            patch.setenv(name, value)
        return load_inventory(InventorySettings.from_environ(), use_cache=False)


@pytest.fixture(scope="module")
def recorded() -> Iterator[Recorded]:
    """moto seeded once (one reservation per instance), then read through the recording proxy:
    the paginated proxies and a whole inventory build."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            moto_url = f"http://{host}:{port}"
            seed(ec2_client(moto_url))
            with recording_proxy(moto_url) as proxy:
                pages = read_pages(ec2_client(proxy.url))
                inventory = build_inventory_from(proxy.url, patch)
                yield Recorded(proxy.recording, pages, inventory, proxy.upstream_seconds)
        finally:
            server.stop()


def seed(client: Any) -> None:
    """PROXIES proxies (some sharing a Name) and two backends, one run_instances each."""
    fleet = [(name, "reverse-proxy") for name in PROXY_NAMES] + [("app", "app"), ("app", "app")]
    for name, role in fleet:
        tags = {"Name": name, "Role": role, "Environment": ENVIRONMENT}
        client.run_instances(
            ImageId="ami-12c6146b",
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                }
            ],
        )


# --- serving pages --------------------------------------------------------------------------


def test_pages_are_served_in_order_with_their_next_tokens(recorded: Recorded) -> None:
    assert [len(page) for page in recorded.pages] == [5, 5, 2]
    with serving(recorded.recording) as fake:
        assert read_pages(ec2_client(fake.url)) == recorded.pages
        assert fake.requests == 3


def test_unknown_next_token_gets_ec2s_invalid_parameter_value(recorded: Recorded) -> None:
    with serving(recorded.recording) as fake:
        client = ec2_client(fake.url)
        with pytest.raises(ClientError) as caught:
            client.describe_instances(Filters=FILTERS, MaxResults=PAGE_SIZE, NextToken="r-0bogus")
    error = caught.value.response
    assert error["Error"]["Code"] == "InvalidParameterValue"
    assert error["Error"]["Message"] == (
        "Value ( r-0bogus ) for parameter NextToken is invalid. The token is invalid."
    )
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize(
    "call",
    [
        {"Filters": FILTERS, "MaxResults": PAGE_SIZE + 1},  # another page size
        {"Filters": FILTERS[:1], "MaxResults": PAGE_SIZE},  # other filters
    ],
)
def test_unrecorded_request_gets_an_error_not_another_querys_pages(
    recorded: Recorded, call: dict[str, Any]
) -> None:
    with serving(recorded.recording) as fake, pytest.raises(ClientError) as caught:
        ec2_client(fake.url).describe_instances(**call)
    assert caught.value.response["Error"]["Code"] == "UnrecordedRequest"


def test_request_key_ignores_field_order_and_separates_the_page() -> None:
    first = RequestKey.from_form("Action=DescribeInstances&MaxResults=5&Version=2016-11-15")
    same = RequestKey.from_form("Version=2016-11-15&MaxResults=5&Action=DescribeInstances")
    page_two = RequestKey.from_form(
        "Action=DescribeInstances&NextToken=r-1&MaxResults=5&Version=2016-11-15"
    )
    assert first == same
    assert page_two.query() == first.query()
    assert (page_two.next_token, first.next_token) == ("r-1", "")
    recording = Recording()
    recording.add(first, RecordedResponse(200, "text/xml", b"<page-one/>"))
    assert replay(recording, same).body == b"<page-one/>"
    assert b"InvalidParameterValue" in replay(recording, page_two).body


def test_recording_is_the_same_after_saving_and_loading(recorded: Recorded, tmp_path: Path) -> None:
    path = tmp_path / "recording.json"
    recorded.recording.save(path)
    loaded = Recording.load(path)
    assert loaded.responses == recorded.recording.responses
    with serving(loaded) as fake:
        assert read_pages(ec2_client(fake.url)) == recorded.pages


def test_proxy_records_every_request_and_the_time_moto_took(recorded: Recorded) -> None:
    # 3 pages read by the test, then the inventory's proxies and backends queries (one page
    # each at MaxResults=1000): 5 DescribeInstances answers, nothing else.
    assert recorded.recording.page_counts() == {"DescribeInstances": 5}
    assert all(r.status == 200 for r in recorded.recording.responses.values())
    assert recorded.upstream_seconds > 0


# --- the inventory through the fake ---------------------------------------------------------


def test_inventory_built_through_the_fake_equals_the_one_built_through_moto(
    recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(recorded.recording) as fake:
        inventory = build_inventory_from(fake.url, monkeypatch)
    expected = recorded.inventory
    assert len(expected.hosts) == PROXIES + 2
    assert [h.to_json() for h in inventory.hosts] == [h.to_json() for h in expected.hosts]
    assert inventory.backends == expected.backends
    assert inventory.warnings == expected.warnings
    assert inventory.pyinfra_groups() == expected.pyinfra_groups()
