"""Constants and helpers of the inventory tests: moto's fleet, settings, fake instances."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

from inventories.ec2 import Ec2Instance, new_botocore_session
from inventories.hosts import Ec2Inventory, build_inventory
from inventories.loader import load_inventory
from inventories.settings import InventorySettings

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


# Region -> EC2 client of the tests' own (not the inventory's), kept for the whole session: making
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
