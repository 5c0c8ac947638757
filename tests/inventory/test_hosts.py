"""Unit tests of the EC2 inventory (inventories/) against moto's in-process EC2 and STS.

No network: moto intercepts boto3 in-process, IMDS is disabled, and the only real sockets are
on loopback (an unreachable endpoint, and the moto_server the pyinfra CLI tests start).
"""

from __future__ import annotations

import gc
import json
import os
import re
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws
from moto import settings as moto_settings
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.authorization import ActionAuthenticatorMixin
from moto.ec2.models import ec2_backends
from pyinfra.api import Inventory
from pyinfra.api.exceptions import NoGroupError
from pyinfra.connectors.sshuserclient.config import SSHConfig

from inventories import ec2 as ec2_module
from inventories import loader as loader_module
from inventories.cache import cache_path, read_cached, write_cached
from inventories.cli import format_listing, main
from inventories.ec2 import Ec2Instance, explain_error, new_botocore_session, plan_queries
from inventories.errors import InventoryError
from inventories.hosts import Ec2Inventory, assign_names, build_inventory
from inventories.loader import load_inventory, pyinfra_groups_or_exit
from inventories.settings import SETTINGS, InventorySettings, settings_table_markdown
from tools.rollout import parse_inventory_json

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
OTHER_REGION = "us-east-1"
AMI = "ami-12c6146b"  # any id: moto does not validate AMIs by default
CONTRACT_DATA_KEYS = {
    "ssh_hostname",
    "ssh_user",
    "ec2_instance_id",
    "ec2_region",
    "ec2_availability_zone",
    "ec2_private_ip",
    "ec2_public_ip",
    "ec2_public_dns",
    "ec2_instance_type",
    "ec2_launch_time",
    "ec2_tags",
    "ec2_role",
}


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only the variables a test sets; fake credentials; no instance metadata service."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "EC2_INVENTORY_")) or name in {"ENVIRONMENT", "CI"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # Never reach 169.254.169.254 for credentials, nor read the user's ~/.aws.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("EC2_INVENTORY_CACHE_DIR", str(tmp_path / "cache"))
    # moto's ~1,300 default AMIs make every launch scan them; the inventory never reads AMIs.
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


# Region -> EC2 client of the tests' own (not the inventory's), kept for the whole module: making
# a botocore client costs ~50 ms, and moto intercepts a client whenever a mock is active, whenever
# the client was made. Fixed fake credentials, so it is the default moto account whatever the
# test sets in the environment.
_FLEET_CLIENTS: dict[str, Any] = {}


class Fleet:
    """Launches tagged instances in moto's in-process EC2."""

    def client(self, region: str = REGION) -> Any:
        """A botocore EC2 client for the region."""
        if region not in _FLEET_CLIENTS:
            # The inventory's session factory: botocore's models are parsed once per process.
            _FLEET_CLIENTS[region] = new_botocore_session().create_client(
                "ec2",
                region_name=region,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return _FLEET_CLIENTS[region]

    def launch(
        self,
        name: str | None,
        role: str = "reverse-proxy",
        *,
        region: str = REGION,
        count: int = 1,
        environment: str | None = "lab",
        tags: dict[str, str] | None = None,
        **run_args: Any,
    ) -> list[str]:
        """Launch `count` instances with Name/Role/Environment tags; return their ids."""
        all_tags = {"Role": role, **({"Name": name} if name else {}), **(tags or {})}
        if environment:
            all_tags["Environment"] = environment
        response = self.client(region).run_instances(
            ImageId=AMI,
            MinCount=count,
            MaxCount=count,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()],
                }
            ],
            **{"InstanceType": "t3.micro", **run_args},
        )
        return [instance["InstanceId"] for instance in response["Instances"]]

    def stop(self, instance_ids: list[str], region: str = REGION) -> None:
        """Stop instances (moto stops them at once)."""
        self.client(region).stop_instances(InstanceIds=instance_ids)

    def private_subnet(self, region: str = REGION) -> str:
        """A subnet that gives no public IP, in a new VPC."""
        client = self.client(region)
        vpc = client.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
        return client.create_subnet(VpcId=vpc, CidrBlock="10.77.0.0/24")["Subnet"]["SubnetId"]


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    """An empty in-process fake AWS account."""
    with mock_aws():
        yield Fleet()


def launch_in_backend(count: int, tags: dict[str, str], account: str = DEFAULT_ACCOUNT_ID) -> None:
    """Launch instances through moto's backend directly (fast: no API response to render)."""
    ec2_backends[account][REGION].run_instances(
        AMI,
        count,
        "",
        [],
        tags={"instance": tags},
        instance_type="t3.micro",
        is_instance_type_default=False,
    )


def load(**env: str) -> Ec2Inventory:
    """Build the inventory with these settings added to the environment."""
    return load_inventory(InventorySettings.from_environ({**os.environ, **env}))


def settings_with(**env: str) -> InventorySettings:
    """Validated settings with these variables added to the environment."""
    return InventorySettings.from_environ({**os.environ, **env})


def names(inventory: Ec2Inventory, group: str | None = None) -> list[str]:
    """Host names, optionally of one group only."""
    return [host.name for host in inventory.hosts if group is None or group in host.groups]


def host(inventory: Ec2Inventory, name: str) -> Any:
    """The host called `name`."""
    return next(h for h in inventory.hosts if h.name == name)


def backend_names(inventory: Ec2Inventory) -> list[str]:
    """Names of the backends found (hosts or not)."""
    return [backend.name for backend in inventory.backends]


def private_ip(fleet: Fleet, instance_id: str, region: str = REGION) -> str:
    """The private IPv4 address moto gave an instance."""
    response = fleet.client(region).describe_instances(InstanceIds=[instance_id])
    return str(response["Reservations"][0]["Instances"][0]["PrivateIpAddress"])


def build(*instances: Ec2Instance, **env: str) -> Ec2Inventory:
    """The inventory of these instances, as if AWS had returned them (no AWS, no moto)."""
    return build_inventory(instances, settings_with(**env))


def fake_instance(instance_id: str, name: str | None, role: str = "proxy", **fields: Any) -> Any:
    """An Ec2Instance without AWS: hosts.py is pure, so naming, addresses and groups are tested
    on these; the tests with moto cover what AWS answers and its translation."""
    values: dict[str, Any] = {
        "instance_id": instance_id,
        "role": role,
        "region": REGION,
        "availability_zone": f"{REGION}a",
        "state": "running",
        "instance_type": "t3.micro",
        "launch_time": "2025-01-01T00:00:00+00:00",
        "private_ip": "10.0.0.1",
        "public_ip": None,
        "private_dns": None,
        "public_dns": None,
        "vpc_id": None,
        "subnet_id": None,
        "image_id": None,
        "tags": {"Name": name} if name else {},
    }
    values.update(fields)
    return Ec2Instance(**values)


# --- settings -------------------------------------------------------------------------------


def test_settings_defaults_when_only_region_is_set() -> None:
    settings = settings_with()
    assert settings.regions == (REGION,)
    assert [(f.name, f.values) for f in settings.proxy_tags] == [("tag:Role", ("reverse-proxy",))]
    assert settings.backend_tags is not None
    assert [(f.name, f.values) for f in settings.backend_tags] == [("tag:Role", ("app",))]
    assert not settings.backends_as_hosts
    assert settings.states == ("running",)
    assert settings.hostname_preference == ("private-ip",)
    assert settings.ssh_user == "admin"
    assert settings.retry_mode == "standard"
    assert settings.cache_ttl == 0
    assert settings.bastion is None
    assert not settings.allow_empty


def test_regions_setting_wins_over_aws_region_variables() -> None:
    settings = settings_with(EC2_INVENTORY_REGIONS="eu-west-1, us-east-1", AWS_REGION="eu-west-3")
    assert settings.regions == ("eu-west-1", "us-east-1")


def test_aws_region_wins_over_aws_default_region_when_both_set() -> None:
    assert settings_with(AWS_REGION="eu-central-1").regions == ("eu-central-1",)


def test_environment_adds_environment_tag_filter_when_set() -> None:
    settings = settings_with(ENVIRONMENT="lab")
    filters = settings.selection_filters(settings.proxy_tags)
    assert ("tag:Environment", ("lab",)) in [(f.name, f.values) for f in filters]


def test_tag_filters_accept_alternatives_and_wildcards() -> None:
    settings = settings_with(EC2_INVENTORY_TAGS="Role=edge-*;Team=a, b")
    assert [(f.name, f.values) for f in settings.proxy_tags] == [
        ("tag:Role", ("edge-*",)),
        ("tag:Team", ("a", "b")),
    ]


def test_bastion_defaults_to_ssh_user_and_port_22_when_not_given() -> None:
    bastion = settings_with(EC2_INVENTORY_BASTION="jump.example.com").bastion
    assert bastion is not None
    assert bastion.jump_spec == "admin@jump.example.com:22"


def test_cache_ttl_is_forced_off_when_ci_is_true() -> None:
    assert settings_with(EC2_INVENTORY_CACHE_TTL="60").cache_ttl == 60
    assert settings_with(EC2_INVENTORY_CACHE_TTL="60", CI="true").cache_ttl == 0


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("EC2_INVENTORY_REGIONS", "eu-west-9", "not an AWS region (did you mean eu-west-3?)"),
        ("EC2_INVENTORY_REGIONS", "eu-west-1,eu-west-1", "lists a region twice"),
        ("EC2_INVENTORY_TAGS", "Role", "is not `key=value"),
        ("EC2_INVENTORY_TAGS", "", "every instance would become a proxy"),
        ("EC2_INVENTORY_TAGS", "Role=a;Role=b", "'Role' is given twice"),
        ("EC2_INVENTORY_BACKEND_TAGS", "=app", "is not `key=value"),
        ("EC2_INVENTORY_STATES", "running,sleeping", "'sleeping' is not allowed"),
        ("EC2_INVENTORY_STATES", "", "is not allowed"),
        ("EC2_INVENTORY_FILTERS", "vpc-id=", "is not `key=value"),
        ("EC2_INVENTORY_EXCLUDE", "tag:Maintenance", "is not `key=value"),
        ("EC2_INVENTORY_ROLE_ARN", "arn:aws:iam::1:user/x", "expected arn:aws:iam::"),
        ("EC2_INVENTORY_ROLE_SESSION_NAME", "x", "expected 2-64 characters"),
        ("EC2_INVENTORY_RETRY_MODE", "legacy", "expected one of standard, adaptive"),
        ("EC2_INVENTORY_MAX_ATTEMPTS", "0", "from 1 to 20"),
        ("EC2_INVENTORY_CONNECT_TIMEOUT", "soon", "number of seconds"),
        ("EC2_INVENTORY_PAGE_SIZE", "2000", "from 5 to 1000"),
        ("EC2_INVENTORY_HOSTNAME_TAG", "", "one non-empty word"),
        ("EC2_INVENTORY_DUPLICATE_NAMES", "rename", "expected one of suffix, always, error"),
        ("EC2_INVENTORY_NAME_SUFFIX_LENGTH", "18", "from 1 to 17"),
        ("EC2_INVENTORY_HOSTNAME_PREFERENCE", "private-ip,ipv6", "'ipv6' is not allowed"),
        ("EC2_INVENTORY_HOSTNAME_PREFERENCE", ",", "is empty"),
        ("EC2_INVENTORY_SSH_USER", "two words", "one non-empty word"),
        ("EC2_INVENTORY_BASTION", "jump host", "expected [user@]host[:port]"),
        ("EC2_INVENTORY_BASTION", "jump:99999", "expected [user@]host[:port]"),
        ("EC2_INVENTORY_KEYED_GROUPS", "Env=tag:Environment", "is not `prefix=source`"),
        ("EC2_INVENTORY_KEYED_GROUPS", "zone=placement", "is not `prefix=source`"),
        ("EC2_INVENTORY_KEYED_GROUPS", "proxies=region", "is a fixed group"),
        ("EC2_INVENTORY_ALLOW_EMPTY", "maybe", "expected true or false"),
        ("EC2_INVENTORY_BACKENDS_AS_HOSTS", "sometimes", "expected true or false"),
        ("EC2_INVENTORY_CACHE_TTL", "-1", "from 0 to"),
        ("AWS_ENDPOINT_URL", "127.0.0.1:5077", "expected an http:// or https:// URL"),
    ],
)
def test_settings_reject_bad_value_naming_variable_and_value(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(InventoryError) as caught:
        settings_with(**{variable: value})
    message = str(caught.value)
    assert variable in message
    assert expected in message
    if value.strip(",;"):
        assert value.split(",")[-1].split(";")[-1].strip() in message


def test_unknown_setting_is_rejected_with_suggestion() -> None:
    with pytest.raises(InventoryError, match="EC2_INVENTORY_REGION is not an inventory setting; "):
        settings_with(EC2_INVENTORY_REGION="eu-west-1")


def test_no_region_is_an_error_when_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(InventoryError, match="no region to query: set EC2_INVENTORY_REGIONS"):
        InventorySettings.from_environ()


def test_backends_as_hosts_without_backend_tags_is_an_error() -> None:
    assert settings_with(EC2_INVENTORY_BACKENDS_AS_HOSTS="yes").backends_as_hosts
    with pytest.raises(
        InventoryError, match="BACKENDS_AS_HOSTS=true but EC2_INVENTORY_BACKEND_TAGS"
    ):
        settings_with(EC2_INVENTORY_BACKENDS_AS_HOSTS="true", EC2_INVENTORY_BACKEND_TAGS="")


def test_environment_conflicts_with_environment_tag_filter_when_both_set() -> None:
    with pytest.raises(InventoryError, match="EC2_INVENTORY_TAGS filters on Environment"):
        settings_with(ENVIRONMENT="lab", EC2_INVENTORY_TAGS="Role=x;Environment=prod")


def test_settings_table_lists_every_variable_once() -> None:
    table = settings_table_markdown()
    for setting in SETTINGS:
        assert table.count(f"| `{setting.env}` |") == 1


def test_docs_table_is_current_when_settings_change() -> None:
    docs = (REPO_ROOT / "docs" / "inventory.md").read_text(encoding="utf-8")
    assert settings_table_markdown() in docs, (
        "docs/inventory.md is stale: paste `python -m inventories.aws --settings-table`"
    )


# --- which instances ------------------------------------------------------------------------


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


# --- where: regions, pagination, credentials ------------------------------------------------


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


# --- botocore setup -------------------------------------------------------------------------


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


# --- host names -----------------------------------------------------------------------------


def test_duplicate_names_get_instance_id_suffix_and_unique_names_stay() -> None:
    asg = [fake_instance(f"i-0a1b2c3d4e5f6000{n}", "proxy-asg") for n in (3, 1, 2)]
    inventory = build(*asg, fake_instance("i-0a1b2c3d4e5f60009", "proxy-1"))
    assert names(inventory) == [
        "proxy-1",
        "proxy-asg-e5f60001",
        "proxy-asg-e5f60002",
        "proxy-asg-e5f60003",
    ]


def test_duplicate_names_always_mode_suffixes_every_named_host() -> None:
    inventory = build(
        fake_instance("i-0a1b2c3d4e5f60001", "proxy-1"),
        fake_instance("i-0a1b2c3d4e5f60002", None),  # named by its id already
        EC2_INVENTORY_DUPLICATE_NAMES="always",
        EC2_INVENTORY_NAME_SUFFIX_LENGTH="4",
    )
    assert names(inventory) == ["i-0a1b2c3d4e5f60002", "proxy-1-0001"]


def test_duplicate_names_error_mode_fails_naming_the_instances() -> None:
    asg = [fake_instance(f"i-0a1b2c3d4e5f6000{n}", "proxy-asg") for n in (1, 2)]
    with pytest.raises(InventoryError, match="2 instances are named 'proxy-asg'"):
        build(*asg, EC2_INVENTORY_DUPLICATE_NAMES="error")


def test_suffix_is_lengthened_when_short_suffixes_collide() -> None:
    instances = [
        fake_instance("i-0000000000000aaaa", "web"),
        fake_instance("i-0000000000001aaaa", "web"),
        fake_instance("i-000000000000000bb", "web"),
    ]
    settings = settings_with(EC2_INVENTORY_NAME_SUFFIX_LENGTH="2")
    assert sorted(assign_names(instances, settings).values()) == [
        "web-0aaaa",
        "web-1aaaa",
        "web-bb",
    ]


def test_suffixed_name_equal_to_another_name_is_an_error() -> None:
    instances = [
        fake_instance("i-00000000000000001", "web"),
        fake_instance("i-00000000000000002", "web"),
        fake_instance("i-00000000000000003", "web-00000001"),
    ]
    with pytest.raises(InventoryError, match="'web-00000001' is used by"):
        assign_names(instances, settings_with())


def test_missing_name_tag_uses_instance_id() -> None:
    assert names(build(fake_instance("i-0a1b2c3d4e5f60001", None))) == ["i-0a1b2c3d4e5f60001"]


def test_hostname_tag_setting_picks_the_name_tag() -> None:
    instance = fake_instance("i-0a1b2c3d4e5f60001", "ignored", tags={"Hostname": "edge-7"})
    assert names(build(instance, EC2_INVENTORY_HOSTNAME_TAG="Hostname")) == ["edge-7"]


@pytest.mark.parametrize(
    ("tag", "expected"),
    [("@local", "local"), ("web 1/a", "web-1-a"), ("..", None), ("proxy_2.eu", "proxy_2.eu")],
)
def test_unsafe_name_characters_are_replaced(tag: str, expected: str | None) -> None:
    instance = fake_instance("i-0123456789abcdef0", tag)
    assert assign_names([instance], settings_with())[instance.instance_id] == (
        expected or instance.instance_id
    )


@pytest.mark.parametrize("name", ["backends", "env_lab", "aws"])
def test_host_named_like_a_group_is_an_error(name: str) -> None:
    # `backends` too, even when the backends are not hosts: a name must not depend on the mode.
    instance = fake_instance("i-0a1b2c3d4e5f60001", name, tags={"Name": name, "Environment": "lab"})
    with pytest.raises(InventoryError, match=rf"'{name}' .* is also a group name"):
        build(instance)


# --- how to reach a host --------------------------------------------------------------------


ADDRESSED = {
    "private_ip": "10.0.0.7",
    "public_ip": "203.0.113.7",
    "private_dns": "ip-10-0-0-7.eu-west-1.compute.internal",
    "public_dns": "ec2-203-0-113-7.eu-west-1.compute.amazonaws.com",
    "tags": {"Name": "proxy-1", "SshAddress": "proxy-1.internal.example"},
}


@pytest.mark.parametrize(
    ("preference", "expected"),
    [
        ("", ADDRESSED["private_ip"]),  # the default, private-ip: CI runs inside the VPC
        ("public-ip,private-ip", ADDRESSED["public_ip"]),
        ("public-dns", ADDRESSED["public_dns"]),
        ("private-dns", ADDRESSED["private_dns"]),
        ("tag:SshAddress,private-ip", "proxy-1.internal.example"),
        ("tag:Missing,public-ip", ADDRESSED["public_ip"]),
    ],
)
def test_ssh_hostname_follows_preference(preference: str, expected: str) -> None:
    env = {"EC2_INVENTORY_HOSTNAME_PREFERENCE": preference} if preference else {}
    inventory = build(fake_instance("i-0a1b2c3d4e5f60001", "proxy-1", **ADDRESSED), **env)
    assert host(inventory, "proxy-1").data["ssh_hostname"] == expected


def test_ssh_hostname_falls_back_when_preferred_address_missing(fleet: Fleet) -> None:
    fleet.launch("proxy-1", SubnetId=fleet.private_subnet())
    data = host(load(EC2_INVENTORY_HOSTNAME_PREFERENCE="public-ip,private-ip"), "proxy-1").data
    assert data["ec2_public_ip"] is None
    assert data["ssh_hostname"] == data["ec2_private_ip"]


def test_instance_without_any_preferred_address_is_an_error() -> None:
    private_only = fake_instance("i-0a1b2c3d4e5f60001", "proxy-1", public_ip=None)
    with pytest.raises(InventoryError, match=r"no address among .*=public-ip,public-dns"):
        build(private_only, EC2_INVENTORY_HOSTNAME_PREFERENCE="public-ip,public-dns")


def test_ssh_user_comes_from_tag_else_setting() -> None:
    ubuntu = fake_instance("i-0a1b2c3d4e5f60001", None, tags={"Name": "u", "SshUser": "ubuntu"})
    debian = fake_instance("i-0a1b2c3d4e5f60002", "d")
    inventory = build(ubuntu, debian)
    assert host(inventory, "u").data["ssh_user"] == "ubuntu"
    assert host(inventory, "d").data["ssh_user"] == "admin"
    inventory = build(
        ubuntu, debian, EC2_INVENTORY_SSH_USER="deploy", EC2_INVENTORY_SSH_USER_TAG=""
    )
    assert {h.data["ssh_user"] for h in inventory.hosts} == {"deploy"}


def test_bastion_routes_hosts_through_proxyjump_in_ssh_config(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("bastion.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA\n")
    monkeypatch.setenv("DEPLOY_SSH_KNOWN_HOSTS", str(known_hosts))
    monkeypatch.delenv("DEPLOY_SSH_TRUST_ON_FIRST_USE", raising=False)
    fleet.launch("proxy-1")
    (app_1,) = fleet.launch("app-1", role="app")
    inventory = load(
        EC2_INVENTORY_BASTION="jump@bastion.example.com:2222",
        EC2_INVENTORY_BASTION_KEY="/keys/bastion",
    )
    data = host(inventory, "proxy-1").data
    path = Path(data["ssh_config_file"])
    assert private_ip(fleet, app_1) not in path.read_text()  # not a target: no route to it
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = SSHConfig()  # pyinfra's own parser, as its SSH connector uses it
    with path.open(encoding="utf-8") as stream:
        config.parse(stream)
    target = config.lookup(data["ssh_hostname"])
    assert target["proxyjump"] == "jump@bastion.example.com:2222"
    hop = config.lookup("bastion.example.com")
    assert "proxyjump" not in hop
    assert (hop["user"], hop["port"]) == ("jump", "2222")
    assert hop["identityfile"] == ["/keys/bastion"]
    # The hop is checked strictly against the deploy's known_hosts (issue 13 item 1), ...
    assert hop["stricthostkeychecking"] == "yes"
    assert hop["userknownhostsfile"] == str(known_hosts)
    # ... and trusted on first use only when the operator said so.
    monkeypatch.setenv("DEPLOY_SSH_TRUST_ON_FIRST_USE", "true")
    tofu = load(EC2_INVENTORY_BASTION="jump@bastion.example.com:2222")
    config = SSHConfig()
    with Path(host(tofu, "proxy-1").data["ssh_config_file"]).open(encoding="utf-8") as stream:
        config.parse(stream)
    assert config.lookup("bastion.example.com")["stricthostkeychecking"] == "accept-new"


# --- groups and host data -------------------------------------------------------------------


def test_keyed_groups_come_from_tags_and_placement() -> None:
    instance = fake_instance(
        "i-0a1b2c3d4e5f60001",
        None,
        availability_zone="eu-west-1b",
        tags={"Name": "proxy-1", "Environment": "lab"},
    )
    assert host(build(instance), "proxy-1").groups == (
        "proxies",
        "env_lab",
        "az_eu_west_1b",
        "region_eu_west_1",
    )
    custom = build(instance, EC2_INVENTORY_KEYED_GROUPS="type=instance-type,team=tag:Team")
    assert host(custom, "proxy-1").groups == ("proxies", "type_t3_micro")


def test_pyinfra_groups_put_host_data_in_role_groups_only() -> None:
    lab = {"Environment": "lab"}
    groups = build(
        fake_instance("i-0a1b2c3d4e5f60001", None, tags={"Name": "proxy-1", **lab}),
        fake_instance("i-0a1b2c3d4e5f60002", None, "backend", tags={"Name": "app-1", **lab}),
        EC2_INVENTORY_BACKENDS_AS_HOSTS="true",
    ).pyinfra_groups()
    assert [name for name, _ in groups["proxies"]] == ["proxy-1"]
    assert [name for name, _ in groups["backends"]] == ["app-1"]
    assert groups["env_lab"] == ["app-1", "proxy-1"]
    assert all(not name.startswith("_") for name in groups)


def test_host_data_carries_ec2_facts(fleet: Fleet) -> None:
    (instance_id,) = fleet.launch("proxy-1", Placement={"AvailabilityZone": "eu-west-1c"})
    data = host(load(), "proxy-1").data
    assert set(data) >= CONTRACT_DATA_KEYS
    assert data["ec2_instance_id"] == instance_id
    (raw,) = fleet.client().describe_instances(InstanceIds=[instance_id])["Reservations"][0][
        "Instances"
    ]
    assert (
        data["ec2_private_ip"],
        data["ec2_public_ip"],
        data["ec2_private_dns"],
        data["ec2_public_dns"],
        data["ec2_vpc_id"],
        data["ec2_subnet_id"],
    ) == (
        raw["PrivateIpAddress"],
        raw["PublicIpAddress"],
        raw["PrivateDnsName"],
        raw["PublicDnsName"],
        raw["VpcId"],
        raw["SubnetId"],
    )
    assert data["ssh_hostname"] == raw["PrivateIpAddress"]  # private-ip by default
    assert data["ec2_region"] == REGION
    assert data["ec2_availability_zone"] == "eu-west-1c"
    assert data["ec2_instance_type"] == "t3.micro"
    assert data["ec2_role"] == "proxy"
    assert data["ec2_launch_time"].endswith("+00:00")
    assert data["ec2_tags"] == {"Role": "reverse-proxy", "Name": "proxy-1", "Environment": "lab"}
    assert data["ec2_backend_addresses"] == []
    json.dumps(data)  # pyinfra's debug-inventory --json must be able to print it


def test_backend_addresses_sorted_by_backend_name_and_deduplicated() -> None:
    instances = [
        fake_instance("i-00000000000000001", "proxy-1"),
        fake_instance("i-0000000000000000b", "app-b", "backend", private_ip="10.0.0.2"),
        fake_instance("i-0000000000000000a", "app-a", "backend", private_ip="10.0.0.3"),
        fake_instance("i-0000000000000000c", "app-c", "backend", private_ip="10.0.0.2"),
    ]
    inventory = build_inventory(instances, settings_with())
    assert host(inventory, "proxy-1").data["ec2_backend_addresses"] == ["10.0.0.3", "10.0.0.2"]
    assert backend_names(inventory) == ["app-a", "app-b", "app-c"]
    assert inventory.warnings == ()


def test_backend_without_private_ip_is_skipped_with_a_warning() -> None:
    instances = [
        fake_instance("i-00000000000000001", "proxy-1"),
        fake_instance("i-0000000000000000a", "app-a", "backend", private_ip=None),
        fake_instance("i-0000000000000000b", "app-b", "backend", private_ip="10.0.0.2"),
    ]
    inventory = build_inventory(instances, settings_with())
    assert host(inventory, "proxy-1").data["ec2_backend_addresses"] == ["10.0.0.2"]
    assert inventory.warnings == (
        "backend app-a (i-0000000000000000a, eu-west-1) has no private IPv4 address; it is left "
        "out of the proxies' ec2_backend_addresses",
    )


def test_backend_needs_an_ssh_address_only_when_it_is_a_host() -> None:
    instances = [
        fake_instance("i-00000000000000001", "proxy-1", public_ip="203.0.113.1"),
        fake_instance("i-0000000000000000a", "app-a", "backend", private_ip="10.0.0.2"),
    ]
    public = {"EC2_INVENTORY_HOSTNAME_PREFERENCE": "public-ip"}
    inventory = build_inventory(instances, settings_with(**public))
    assert host(inventory, "proxy-1").data["ec2_backend_addresses"] == ["10.0.0.2"]
    as_hosts = settings_with(**public, EC2_INVENTORY_BACKENDS_AS_HOSTS="true")
    with pytest.raises(InventoryError, match=r"i-0000000000000000a \(app-a, eu-west-1\) has no"):
        build_inventory(instances, as_hosts)


def test_proxies_and_backends_in_several_vpcs_of_a_region_give_a_warning() -> None:
    instances = [
        fake_instance("i-00000000000000001", "proxy-1", vpc_id="vpc-a"),
        fake_instance("i-0000000000000000a", "app-a", "backend", vpc_id="vpc-a"),
        fake_instance("i-0000000000000000b", "app-b", "backend", vpc_id="vpc-b"),
    ]
    (warning,) = build_inventory(instances, settings_with()).warnings
    assert warning.startswith("the proxies and backends in eu-west-1 are in 2 VPCs (vpc-a, vpc-b)")
    assert "EC2_INVENTORY_FILTERS=vpc-id=" in warning
    same_vpc = [i for i in instances if i.vpc_id == "vpc-a"]
    assert build_inventory(same_vpc, settings_with()).warnings == ()


def test_backend_names_do_not_depend_on_backends_as_hosts() -> None:
    instances = [
        fake_instance("i-00000000000000001", "web"),
        fake_instance("i-00000000000000002", "web", "backend"),
    ]
    default = build_inventory(instances, settings_with())
    as_hosts = build_inventory(instances, settings_with(EC2_INVENTORY_BACKENDS_AS_HOSTS="1"))
    assert names(default) == ["web-00000001"]
    assert backend_names(default) == backend_names(as_hosts) == ["web-00000002"]
    assert names(as_hosts) == ["web-00000001", "web-00000002"]


# --- errors ---------------------------------------------------------------------------------


def closed_loopback_port() -> int:
    """A loopback port with nothing listening (so connections are refused at once)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in the default credential chain (and nothing reachable if it tried)."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_loopback_port()}")


def enforce_iam_after(monkeypatch: pytest.MonkeyPatch, free_actions: int) -> None:
    """Make moto check credentials and IAM policies after `free_actions` unchecked calls.

    What moto's `set_initial_no_auth_action_count` decorator does, for a fixture's lifetime.
    """
    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", free_actions)
    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)


@pytest.fixture
def invalid_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto checking credentials: the environment's keys belong to no IAM user."""
    with mock_aws():
        enforce_iam_after(monkeypatch, 0)
        yield


@pytest.fixture
def assume_role_forbidden(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An IAM user allowed to describe instances but not to assume roles."""
    with mock_aws():
        enforce_iam_after(monkeypatch, 3)
        iam = new_botocore_session().create_client("iam", region_name=REGION)
        iam.create_user(UserName="ci")
        key = iam.create_access_key(UserName="ci")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="ci", PolicyName="ec2", PolicyDocument=json.dumps(policy))
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        yield


@pytest.fixture
def unreachable_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_ENDPOINT_URL pointing at a loopback port nobody listens on."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_loopback_port()}")
    monkeypatch.setenv("EC2_INVENTORY_MAX_ATTEMPTS", "2")


@pytest.fixture
def empty_account() -> Iterator[None]:
    """A fake account with no instances at all."""
    with mock_aws():
        yield


@pytest.mark.parametrize(
    ("situation", "env", "expected"),
    [
        ("no_credentials", {}, "no AWS credentials found: set AWS_ACCESS_KEY_ID"),
        ("empty_account", {"EC2_INVENTORY_PROFILE": "ops"}, "AWS profile 'ops' (EC2_INVENTORY"),
        ("empty_account", {"EC2_INVENTORY_REGIONS": "mars-1"}, "'mars-1' is not an AWS region"),
        (
            "invalid_credentials",
            {},
            "access denied for ec2:DescribeInstances in eu-west-1 (AuthFailure: ",
        ),
        (
            "assume_role_forbidden",
            {"EC2_INVENTORY_ROLE_ARN": "arn:aws:iam::123456789012:role/deploy"},
            "access denied for sts:AssumeRole in eu-west-1 (AccessDenied: ",
        ),
        ("unreachable_endpoint", {}, "cannot reach http://127.0.0.1:"),
        (
            "empty_account",
            {"ENVIRONMENT": "lab"},
            "no running EC2 instances match the proxy filters "
            "(tag:Role=reverse-proxy Environment=lab) in eu-west-1",
        ),
    ],
)
def test_error_is_one_clear_line_and_exit_2_when_aws_is_unusable(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    situation: str,
    env: dict[str, str],
    expected: str,
) -> None:
    request.getfixturevalue(situation)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as caught:
        pyinfra_groups_or_exit()
    assert caught.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("EC2 inventory: error: ")
    assert expected in stderr
    assert stderr.count("\n") == 1
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("UnauthorizedOperation", "the credentials need ec2:DescribeInstances"),
        ("OptInRequired", "enable the region for the account"),
        ("ExpiredToken", "refresh the credentials"),
        ("RequestLimitExceeded", "throttled by AWS for ec2:DescribeInstances in eu-west-1"),
        ("InvalidParameterValue", "check EC2_INVENTORY_FILTERS"),
        ("InternalError", "AWS error for ec2:DescribeInstances in eu-west-1 (InternalError"),
    ],
)
def test_aws_error_codes_are_explained(code: str, expected: str) -> None:
    error = ClientError({"Error": {"Code": code, "Message": "m"}}, "DescribeInstances")
    message = str(explain_error(error, "ec2:DescribeInstances", REGION, settings_with()))
    assert expected in message


def test_connection_error_names_the_endpoint_setting() -> None:
    error = EndpointConnectionError(endpoint_url="https://ec2.eu-west-1.amazonaws.com/")
    message = str(explain_error(error, "ec2:DescribeInstances", REGION, settings_with()))
    assert "cannot reach the AWS endpoint of eu-west-1" in message
    assert "AWS_ENDPOINT_URL" in message


# --- cache ----------------------------------------------------------------------------------


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


# --- listing and the pyinfra inventory file -------------------------------------------------


def test_listing_prints_hosts_then_backends_that_are_not_targets(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    (proxy_1,) = fleet.launch("proxy-1")
    (app_1,) = fleet.launch("app-1", role="app")
    assert main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "ADDRESS", "USER", "INSTANCE", "GROUPS"]
    assert lines[1].split() == [
        "proxy-1",
        private_ip(fleet, proxy_1),
        "admin",
        proxy_1,
        *("proxies", "env_lab", "az_eu_west_1a", "region_eu_west_1"),
    ]
    assert lines[2:5] == [
        "",
        "backends (not deploy targets; the proxies' ec2_backend_addresses):",
        lines[4],
    ]
    assert lines[4].split() == ["NAME", "ADDRESS", "REGION", "INSTANCE"]
    assert lines[5].split() == ["app-1", private_ip(fleet, app_1), REGION, app_1]
    assert lines[-1] == "1 hosts (proxies: 1) and 1 backends (not hosts) in eu-west-1 from AWS"


def test_listing_counts_backends_as_hosts_when_set(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.launch("proxy-1")
    fleet.launch("app-1", role="app")
    monkeypatch.setenv("EC2_INVENTORY_BACKENDS_AS_HOSTS", "true")
    assert main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == ["app-1", "proxy-1"]
    assert lines[1].endswith(" backends env_lab az_eu_west_1a region_eu_west_1")
    assert lines[-1] == "2 hosts (proxies: 1, backends: 1) in eu-west-1 from AWS"


@pytest.mark.parametrize("as_hosts", [False, True])
def test_listing_json_follows_contract_sorted_by_name(
    fleet: Fleet,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    as_hosts: bool,
) -> None:
    fleet.launch("proxy-2")
    fleet.launch("proxy-1")
    (app_1,) = fleet.launch("app-1", role="app")
    monkeypatch.setenv("EC2_INVENTORY_BACKENDS_AS_HOSTS", str(as_hosts).lower())
    assert main(["--json"]) == 0
    output = capsys.readouterr().out
    listing = json.loads(output)
    proxies = ["proxy-1", "proxy-2"]
    assert [entry["name"] for entry in listing] == (["app-1", *proxies] if as_hosts else proxies)
    for entry in listing:
        assert set(entry) == {"name", "ssh_hostname", "groups", "data"}
        assert entry["ssh_hostname"] == entry["data"]["ssh_hostname"]
        is_proxy = entry["name"] in proxies
        assert entry["groups"][0] == ("proxies" if is_proxy else "backends")
        if is_proxy:
            assert entry["data"]["ec2_backend_addresses"] == [private_ip(fleet, app_1)]
    # tools/rollout.py reads this listing and deploys group `proxies` only, in this order.
    assert [h.name for h in parse_inventory_json(output)] == proxies


def test_listing_error_exits_2_without_traceback(
    empty_account: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert capsys.readouterr().err.startswith("EC2 inventory: error: no running EC2 instances")


def test_listing_mentions_bastion_when_set(fleet: Fleet) -> None:
    fleet.launch("proxy-1")
    settings = settings_with(EC2_INVENTORY_BASTION="jump@10.0.0.5")
    inventory = load_inventory(settings)
    assert format_listing(inventory, settings).endswith("via bastion jump@10.0.0.5:22")


def execute_inventory_file() -> dict[str, Any]:
    """The groups `inventories/aws.py` defines, found as pyinfra 3.10 finds them.

    pyinfra execs the file with only __file__ set, then keeps list/tuple globals not starting
    with `_`. (Not pyinfra_cli's own loader in process: importing pyinfra_cli monkey-patches the
    whole test process with gevent.)
    """
    path = REPO_ROOT / "inventories" / "aws.py"
    namespace: dict[str, Any] = {"__file__": str(path)}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
    return {
        key: value
        for key, value in namespace.items()
        if not key.startswith("_") and isinstance(value, list | tuple)
    }


@pytest.mark.parametrize("as_hosts", [False, True])
def test_inventory_file_gives_pyinfra_proxies_with_backend_addresses(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, as_hosts: bool
) -> None:
    fleet.launch("proxy-1")
    (app_1,) = fleet.launch("app-1", role="app")
    monkeypatch.setenv("EC2_INVENTORY_BACKENDS_AS_HOSTS", str(as_hosts).lower())
    groups = execute_inventory_file()
    keyed = {"env_lab", "az_eu_west_1a", "region_eu_west_1"}
    assert set(groups) == {"proxies", *keyed, *(["backends"] if as_hosts else [])}
    # As pyinfra_cli builds it: `all` made of every group's hosts, each group (hosts, data).
    all_hosts = list(
        dict.fromkeys(entry[0] for entry in groups["proxies"] + groups.get("backends", []))
    )
    inventory = Inventory((all_hosts, {}), **{name: (hosts, {}) for name, hosts in groups.items()})
    expected = ["app-1", "proxy-1"] if as_hosts else ["proxy-1"]
    assert sorted(h.name for h in inventory) == expected
    assert sorted(h.name for h in inventory.get_group("env_lab")) == expected
    assert inventory.get_host("proxy-1").data.ec2_backend_addresses == [private_ip(fleet, app_1)]
    if as_hosts:
        assert [h.name for h in inventory.get_group("backends")] == ["app-1"]
    else:
        with pytest.raises(NoGroupError):
            inventory.get_group("backends")


def test_settings_table_option_prints_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--settings-table"]) == 0
    assert capsys.readouterr().out == settings_table_markdown()


@pytest.fixture(scope="module")
def moto_server_url() -> Iterator[str]:
    """A real moto_server on loopback, for pyinfra's CLI running in a subprocess."""
    from bench.inventory_build import running_moto_server

    with running_moto_server(Path(sys.executable).with_name("moto_server")) as url:
        client = boto3.client(
            "ec2",
            region_name=REGION,
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for name, role in [
            ("proxy-1", "reverse-proxy"),
            ("proxy-2", "reverse-proxy"),
            ("app-1", "app"),
        ]:
            tags = {"Name": name, "Role": role, "Environment": "lab", "SshAddress": "127.0.0.1"}
            client.run_instances(
                ImageId=AMI,
                MinCount=1,
                MaxCount=1,
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                    }
                ],
            )
        yield url


def run_pyinfra(url: str, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """pyinfra's CLI on the inventory file, from `cwd`, against the moto_server."""
    environment = {
        **os.environ,
        "AWS_ENDPOINT_URL": url,
        "ENVIRONMENT": "lab",
        # Only loopback: pyinfra connects to 127.0.0.1 on a closed port, which fails at once.
        "EC2_INVENTORY_HOSTNAME_PREFERENCE": "tag:SshAddress",
        **env,
    }
    command = [
        str(Path(sys.executable).with_name("pyinfra")),
        str(REPO_ROOT / "inventories/aws.py"),
    ]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def hosts_pyinfra_tries(url: str, cwd: Path, *limits: str, **env: str) -> list[str]:
    """Hosts pyinfra tries to reach with these `--limit`s; each fails at once (127.0.0.1:1)."""
    limit_options = [option for limit in limits for option in ("--limit", limit)]
    result = run_pyinfra(
        url,
        cwd,
        *limit_options,
        *("--port", "1", "--dry", "-y"),
        *("--data", f"ssh_known_hosts_file={cwd / 'known_hosts'}"),
        *("exec", "--", "true"),
        **env,
    )
    tried = re.findall(r"^\s*\[([^\]]+)\]\s+Could not connect", result.stderr, re.MULTILINE)
    return sorted(tried)


@pytest.mark.slow
def test_pyinfra_connects_to_the_proxies_only_by_default(
    moto_server_url: str, tmp_path: Path
) -> None:
    # Run from another directory: pyinfra execs the file without the repository on sys.path.
    assert hosts_pyinfra_tries(moto_server_url, tmp_path) == ["proxy-1", "proxy-2"]


@pytest.mark.slow
def test_pyinfra_limit_selects_host_by_name_and_group(moto_server_url: str, tmp_path: Path) -> None:
    # One run, two --limit values (pyinfra ORs them): a host name and a group name.
    tried = hosts_pyinfra_tries(
        moto_server_url, tmp_path, "proxy-2", "backends", EC2_INVENTORY_BACKENDS_AS_HOSTS="true"
    )
    assert tried == ["app-1", "proxy-2"]


@pytest.mark.slow
def test_pyinfra_shows_one_error_line_without_traceback_when_inventory_fails(
    moto_server_url: str, tmp_path: Path
) -> None:
    result = run_pyinfra(moto_server_url, tmp_path, "debug-inventory", ENVIRONMENT="nowhere")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("EC2 inventory")]
    assert errors == [
        "EC2 inventory: error: no running EC2 instances match the proxy filters "
        "(tag:Role=reverse-proxy Environment=nowhere) in eu-west-1; check ENVIRONMENT, "
        "EC2_INVENTORY_TAGS, EC2_INVENTORY_REGIONS, or set EC2_INVENTORY_ALLOW_EMPTY=true"
    ]
    assert "Traceback" not in result.stderr + result.stdout
