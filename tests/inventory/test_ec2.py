"""inventories/ec2.py: which instances the EC2 queries select, and where: regions, pagination,
credentials."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from inventories import ec2 as ec2_module
from inventories.errors import InventoryError
from inventories.settings import InventorySettings
from inventory.fakes import (
    OTHER_REGION,
    REGION,
    Fleet,
    backend_names,
    build,
    fake_instance,
    host,
    launch_in_backend,
    load,
    names,
    private_ip,
    settings_with,
)


def test_proxies_are_the_only_hosts_and_get_backend_addresses_by_default(fleet: Fleet) -> None:
    fleet.launch("proxy-1")
    fleet.launch("proxy-2")
    (app_2,) = fleet.launch("app-2", role="app")
    (app_1,) = fleet.launch("app-1", role="app")
    fleet.launch("db-1", role="database")
    inventory = load()
    assert names(inventory) == ["proxy-1", "proxy-2"]
    assert backend_names(inventory) == ["app-1", "app-2"]
    expected = [private_ip(fleet, app_1), private_ip(fleet, app_2)]  # by backend name
    for name in ("proxy-1", "proxy-2"):
        assert host(inventory, name).data["ec2_backend_addresses"] == expected
    groups = inventory.pyinfra_groups()
    assert "backends" not in groups
    assert groups["env_lab"] == ["proxy-1", "proxy-2"]
    assert inventory.warnings == ()


def test_backends_are_hosts_too_when_backends_as_hosts_is_set(fleet: Fleet) -> None:
    fleet.launch("proxy-1")
    (app_1,) = fleet.launch("app-1", role="app")
    inventory = load(EC2_INVENTORY_BACKENDS_AS_HOSTS="true")
    assert names(inventory, "proxies") == ["proxy-1"]
    assert names(inventory, "backends") == ["app-1"]
    assert backend_names(inventory) == ["app-1"]
    assert host(inventory, "app-1").data["ec2_role"] == "backend"
    assert "ec2_backend_addresses" not in host(inventory, "app-1").data
    assert host(inventory, "proxy-1").data["ec2_backend_addresses"] == [private_ip(fleet, app_1)]
    assert host(inventory, "app-1").groups == (
        "backends",
        "env_lab",
        "az_eu_west_1a",
        "region_eu_west_1",
    )


def test_environment_limits_both_roles_when_set(fleet: Fleet) -> None:
    fleet.launch("proxy-lab")
    fleet.launch("proxy-prod", environment="prod")
    fleet.launch("app-lab", role="app")
    fleet.launch("app-prod", role="app", environment="prod")
    lab = load(ENVIRONMENT="lab")
    assert (names(lab), backend_names(lab)) == (["proxy-lab"], ["app-lab"])
    everywhere = load()
    assert names(everywhere) == ["proxy-lab", "proxy-prod"]
    assert backend_names(everywhere) == ["app-lab", "app-prod"]


def test_stopped_instances_are_left_out_unless_states_include_them(fleet: Fleet) -> None:
    fleet.launch("proxy-1")
    fleet.stop(fleet.launch("proxy-2"))
    assert names(load()) == ["proxy-1"]
    assert names(load(EC2_INVENTORY_STATES="running,stopped")) == ["proxy-1", "proxy-2"]


def test_custom_tags_select_proxies_when_set(fleet: Fleet) -> None:
    fleet.launch("edge-a", role="edge", tags={"Team": "a"})
    fleet.launch("edge-c", role="edge", tags={"Team": "c"})
    fleet.launch("proxy-1")
    inventory = load(EC2_INVENTORY_TAGS="Role=edge;Team=a,b")
    assert names(inventory, "proxies") == ["edge-a"]


def test_extra_filters_narrow_both_queries(fleet: Fleet) -> None:
    fleet.launch("proxy-small")
    fleet.launch("proxy-large", InstanceType="m5.large")
    fleet.launch("app-large", role="app", InstanceType="m5.large")
    inventory = load(EC2_INVENTORY_FILTERS="instance-type=m5.large,m5.xlarge")
    assert (names(inventory), backend_names(inventory)) == (["proxy-large"], ["app-large"])


def test_exclude_filters_drop_instances_matching_any_entry(fleet: Fleet) -> None:
    fleet.launch("proxy-1")
    fleet.launch("proxy-2", tags={"Maintenance": "true"})
    fleet.launch("proxy-3", InstanceType="t2.nano")
    fleet.launch("app-1", role="app", tags={"Maintenance": "true"})
    inventory = load(EC2_INVENTORY_EXCLUDE="tag:Maintenance=true;instance-type=t2.nano")
    assert (names(inventory), backend_names(inventory)) == (["proxy-1"], [])


def test_backends_are_not_queried_when_backend_tags_empty(fleet: Fleet) -> None:
    fleet.launch("proxy-1")
    fleet.launch("app-1", role="app")
    inventory = load(EC2_INVENTORY_BACKEND_TAGS="")
    assert (names(inventory), backend_names(inventory)) == (["proxy-1"], [])
    assert host(inventory, "proxy-1").data["ec2_backend_addresses"] == []
    assert inventory.warnings == ()  # the deploy's upstream_servers says where to go


@pytest.mark.parametrize("as_hosts", [False, True])
def test_missing_backends_give_a_warning_not_an_error(fleet: Fleet, as_hosts: bool) -> None:
    fleet.launch("proxy-1")
    inventory = load(ENVIRONMENT="lab", EC2_INVENTORY_BACKENDS_AS_HOSTS=str(as_hosts))
    assert inventory.warnings == (
        "no running EC2 instances match the backend filters (tag:Role=app Environment=lab) in "
        "eu-west-1: every proxy gets an empty ec2_backend_addresses (the deploy then needs "
        "upstream_servers)" + ("; group `backends` is empty" if as_hosts else ""),
    )
    assert host(inventory, "proxy-1").data["ec2_backend_addresses"] == []
    assert ("backends" in inventory.pyinfra_groups()) is as_hosts


def test_instance_matching_both_roles_is_an_error(fleet: Fleet) -> None:
    fleet.launch("both", tags={"Tier": "web"})
    with pytest.raises(InventoryError, match="matches both EC2_INVENTORY_TAGS"):
        load(EC2_INVENTORY_BACKEND_TAGS="Tier=web")


def test_zero_instances_allowed_with_setting_warns(fleet: Fleet) -> None:
    inventory = load(ENVIRONMENT="nowhere", EC2_INVENTORY_ALLOW_EMPTY="true")
    assert inventory.hosts == ()
    assert any("no running EC2 instances match" in w for w in inventory.warnings)
    assert inventory.pyinfra_groups() == {"proxies": []}


def test_every_region_is_queried_and_names_stay_unique(fleet: Fleet) -> None:
    fleet.launch("proxy-1", region=REGION)
    fleet.launch("proxy-1", region=OTHER_REGION)
    fleet.launch("proxy-2", region=OTHER_REGION)
    inventory = load(EC2_INVENTORY_REGIONS=f"{REGION},{OTHER_REGION}")
    assert len(names(inventory)) == 3
    assert "proxy-2" in names(inventory)
    assert names(inventory, "region_us_east_1") == sorted(
        h.name for h in inventory.hosts if h.data["ec2_region"] == OTHER_REGION
    )
    assert all(name.startswith("proxy-1-") for name in names(inventory, "region_eu_west_1"))


def test_proxy_gets_the_backends_of_its_own_region_only(fleet: Fleet) -> None:
    fleet.launch("proxy-eu", region=REGION)
    fleet.launch("proxy-us", region=OTHER_REGION)
    (app_eu,) = fleet.launch("app-eu", role="app", region=REGION)
    (app_us,) = fleet.launch("app-us", role="app", region=OTHER_REGION)
    inventory = load(EC2_INVENTORY_REGIONS=f"{REGION},{OTHER_REGION}")
    addresses = {h.name: h.data["ec2_backend_addresses"] for h in inventory.hosts}
    assert addresses == {
        "proxy-eu": [private_ip(fleet, app_eu)],
        "proxy-us": [private_ip(fleet, app_us, OTHER_REGION)],
    }
    assert inventory.warnings == ()


def test_region_without_backends_gives_its_proxies_none_with_a_warning() -> None:
    inventory = build(
        fake_instance("i-00000000000000001", "proxy-eu"),
        fake_instance("i-00000000000000002", "proxy-de", region="eu-central-1"),
        fake_instance("i-00000000000000003", "app-eu", "backend", private_ip="10.0.0.9"),
        EC2_INVENTORY_REGIONS=f"{REGION},eu-central-1",
    )
    assert host(inventory, "proxy-eu").data["ec2_backend_addresses"] == ["10.0.0.9"]
    assert host(inventory, "proxy-de").data["ec2_backend_addresses"] == []
    assert inventory.warnings == (
        "no backend with a private IPv4 address in eu-central-1: its 1 proxies get an empty "
        "ec2_backend_addresses (a proxy gets the backends of its own region only)",
    )


def test_regions_are_queried_concurrently(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    regions = [REGION, OTHER_REGION, "eu-central-1"]
    for region in regions:
        fleet.launch(f"proxy-{region}", region=region)
    # Each region's worker waits for the others: a sequential loop would time out here.
    barrier = threading.Barrier(len(regions), timeout=10)
    original = ec2_module.fetch_region

    def fetch_after_meeting_others(*args: Any) -> Any:
        barrier.wait()
        return original(*args)

    monkeypatch.setattr(ec2_module, "fetch_region", fetch_after_meeting_others)
    assert len(load(EC2_INVENTORY_REGIONS=",".join(regions)).hosts) == 3


@pytest.mark.slow
def test_pagination_reads_every_page_of_1001_instances(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seed through moto's backend: the API would spend seconds rendering launch responses.
    # moto pages by reservation: 5 reservations of 200 fill page one, the 1,001st is on page two.
    for count in (200, 200, 200, 200, 200, 1):
        launch_in_backend(count, {"Role": "reverse-proxy"})
    pages = count_describe_calls(monkeypatch)
    inventory = load(EC2_INVENTORY_PAGE_SIZE="5", EC2_INVENTORY_BACKEND_TAGS="")
    assert len(inventory.hosts) == 1001
    assert len({h.data["ec2_instance_id"] for h in inventory.hosts}) == 1001
    assert pages == [5, 5]  # two pages of MaxResults=5, the second via NextToken


def count_describe_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record MaxResults of every DescribeInstances call the inventory makes."""
    calls: list[int] = []
    original = ec2_module.open_session

    def open_counting_session(settings: InventorySettings) -> Any:
        session = original(settings)
        session.register(
            "provide-client-params.ec2.DescribeInstances",
            lambda params, **_: calls.append(params.get("MaxResults")),
        )
        return session

    monkeypatch.setattr(ec2_module, "open_session", open_counting_session)
    return calls


def test_assumed_role_reads_instances_of_role_account(fleet: Fleet) -> None:
    fleet.launch("proxy-own-account")
    # moto maps credentials of a role in account 111111111111 to that account's resources.
    launch_in_backend(1, {"Role": "reverse-proxy", "Name": "proxy-assumed"}, "111111111111")
    inventory = load(EC2_INVENTORY_ROLE_ARN="arn:aws:iam::111111111111:role/deploy")
    assert names(inventory) == ["proxy-assumed"]


def test_named_profile_is_used_when_set(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fleet.launch("proxy-1")
    credentials = tmp_path / "credentials"
    credentials.write_text("[ops]\naws_access_key_id = ops\naws_secret_access_key = ops\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    session = ec2_module.open_session(settings_with(EC2_INVENTORY_PROFILE="ops"))
    assert session.get_credentials().access_key == "ops"
    assert names(load(AWS_PROFILE="ops")) == ["proxy-1"]


def test_retry_mode_and_attempts_reach_botocore_when_set() -> None:
    config = ec2_module.make_botocore_config(
        settings_with(EC2_INVENTORY_RETRY_MODE="adaptive", EC2_INVENTORY_MAX_ATTEMPTS="8")
    )
    assert config.retries == {"mode": "adaptive", "max_attempts": 8}
    assert config.connect_timeout == 5


def test_queries_filter_server_side_and_ask_1000_per_page_by_default(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.launch("proxy-1")
    calls: list[dict[str, Any]] = []
    original = ec2_module.open_session

    def open_recording_session(settings: InventorySettings) -> Any:
        session = original(settings)
        session.register(
            "provide-client-params.ec2.DescribeInstances",
            lambda params, **_: calls.append(params),
        )
        return session

    monkeypatch.setattr(ec2_module, "open_session", open_recording_session)
    load(ENVIRONMENT="lab")
    # EC2 has no field projection: the filters are what keeps the answers small.
    assert [call["MaxResults"] for call in calls] == [1000, 1000]
    assert [{f["Name"]: f["Values"] for f in call["Filters"]} for call in calls] == [
        {
            "tag:Role": [role],
            "tag:Environment": ["lab"],
            "instance-state-name": ["running"],
        }
        for role in ("reverse-proxy", "app")
    ]
