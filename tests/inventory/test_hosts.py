"""inventories/hosts.py: host names, how to reach a host, groups and host data."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pyinfra.connectors.sshuserclient.config import SSHConfig

from inventories.errors import InventoryError
from inventories.hosts import assign_names, build_inventory
from inventory.fakes import (
    CONTRACT_DATA_KEYS,
    REGION,
    Fleet,
    backend_names,
    build,
    fake_instance,
    host,
    load,
    names,
    private_ip,
    settings_with,
)


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
