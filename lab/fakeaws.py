"""The fake AWS: moto's HTTP server on the lab bridge's address (the machine's side of the lab
network, so the hosts can reach its S3 for log shipping), seeded with the lab's hosts as EC2
instances and the log bucket."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3

from lab import config, state
from lab.config import Node
from lab.sh import LabError

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def endpoint() -> str:
    return f"http://{config.BRIDGE_ADDRESS}:{config.AWS_PORT}"


def ec2_client():
    return boto3.client(
        "ec2", region_name=config.AWS_REGION, endpoint_url=endpoint(), **CREDENTIALS
    )


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((config.BRIDGE_ADDRESS, port)) == 0


def start(lab_state: dict) -> None:
    """Start moto_server (unless the lab's own already runs) and wait until it answers."""
    if state.pid_alive(lab_state["pids"].get("moto")):
        return
    if _port_taken(config.AWS_PORT):
        raise LabError(
            f"port {config.AWS_PORT} on {config.BRIDGE_ADDRESS} is taken by another program: "
            "stop it, or choose another port with LAB_AWS_PORT=... (the fake AWS listens there)"
        )
    moto = Path(sys.executable).with_name("moto_server")
    log = open(config.STATE_DIR / "moto.log", "wb")  # noqa: SIM115 (the child keeps it)
    proc = subprocess.Popen(
        [str(moto), "-H", config.BRIDGE_ADDRESS, "-p", str(config.AWS_PORT)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    state.record_pid(lab_state, "moto", proc.pid)
    deadline = time.monotonic() + 30
    while not _port_taken(config.AWS_PORT):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"moto_server did not start; see {config.STATE_DIR / 'moto.log'}")
        time.sleep(0.2)


def seed(members: list[Node]) -> None:
    """One EC2 instance per lab host (proxies and backend), with its real address and tags, and
    the bucket the proxies ship their logs to."""
    s3 = boto3.client("s3", region_name=config.AWS_REGION, endpoint_url=endpoint(), **CREDENTIALS)
    if config.LOG_BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(
            Bucket=config.LOG_BUCKET,
            CreateBucketConfiguration={"LocationConstraint": config.AWS_REGION},
        )
    ec2 = ec2_client()
    existing = {
        tag["Value"]
        for reservation in ec2.describe_instances()["Reservations"]
        for instance in reservation["Instances"]
        for tag in instance.get("Tags", [])
        if tag["Key"] == "Name" and instance["State"]["Name"] != "terminated"
    }
    hosts = [n for n in members if n.role in ("reverse-proxy", "app")]
    if {n.name for n in hosts} <= existing:
        return
    vpc = ec2.create_vpc(CidrBlock=config.VPC_CIDR)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(
        VpcId=vpc, CidrBlock=str(config.SUBNET), AvailabilityZone=config.AWS_ZONE
    )["Subnet"]["SubnetId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    for node in hosts:
        if node.name in existing:
            continue
        tags = {"Name": node.name, "Role": node.role, "Environment": config.ENVIRONMENT}
        ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            SubnetId=subnet,
            PrivateIpAddress=node.address,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                }
            ],
        )


def instances() -> list[dict]:
    """What the fake EC2 returns now: name, address, role, state (for `status` and tests)."""
    found = []
    for reservation in ec2_client().describe_instances()["Reservations"]:
        for instance in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            found.append(
                {
                    "id": instance["InstanceId"],
                    "name": tags.get("Name"),
                    "role": tags.get("Role"),
                    "private_ip": instance.get("PrivateIpAddress"),
                    "state": instance["State"]["Name"],
                }
            )
    return sorted(found, key=lambda i: i["name"] or "")
