"""The fake AWS: moto's HTTP server on the lab bridge's address (the machine's side of the lab
network, so the hosts can reach its S3 for log shipping), seeded with the lab's hosts as EC2
instances, the log bucket, and the ELBv2 load balancer whose weighted rule the lab's load balancer
applies (lab/lb.py) and a traffic shift moves (tools/shift/). Its DescribeTargetHealth tells
what the lab's load balancer really sees (lab/honest_aws.py)."""

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
# What the running fake AWS is, recorded in the lab's state: a lab whose fake AWS is of another
# kind (plain moto_server, whose target health ignores the real health checks) is rebuilt by `up`.
KIND = "moto+honest-target-health"


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
    log = open(config.STATE_DIR / "moto.log", "wb")  # noqa: SIM115 (the child keeps it)
    # moto's server with DescribeTargetHealth answered from the lab load balancer's real health
    # checks (lab/honest_aws.py), not from the instances' state alone.
    cmd = [sys.executable, "-m", "lab.honest_aws", "-H", config.BRIDGE_ADDRESS]
    cmd += ["-p", str(config.AWS_PORT), "--lb-state", str(config.STATE_DIR / "lb.json")]
    proc = subprocess.Popen(
        cmd,
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lab_state["fakeaws"] = KIND
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


def elbv2_client():
    return boto3.client(
        "elbv2", region_name=config.AWS_REGION, endpoint_url=endpoint(), **CREDENTIALS
    )


def seed_load_balancer(members: list[Node]) -> None:
    """What terraform/lb.tf makes, for the lab's load balancer (lab/lb.py): the load balancer, a
    target group per proxy group (tagged ProxyGroup, its proxies registered by instance id), an
    HTTP listener (the lab has no certificate) and the weighted rule: group a 100, b 0."""
    elb = elbv2_client()
    try:
        elb.describe_load_balancers(Names=[config.LB_NAME])
        return
    except elb.exceptions.LoadBalancerNotFoundException:
        pass
    ec2 = ec2_client()
    vpc = ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": [config.VPC_CIDR]}])["Vpcs"][0]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    lb_subnets = [s["SubnetId"] for s in subnets["Subnets"]]
    if len(lb_subnets) < 2:  # a load balancer spans two zones
        lb_subnets.append(
            ec2.create_subnet(
                VpcId=vpc["VpcId"], CidrBlock="10.77.1.0/24", AvailabilityZone="eu-west-1b"
            )["Subnet"]["SubnetId"]
        )
    lb = elb.create_load_balancer(
        Name=config.LB_NAME, Subnets=lb_subnets, Scheme="internal", Type="application"
    )["LoadBalancers"][0]
    ids = {i["name"]: i["id"] for i in instances() if i["state"] == "running"}
    proxies = [n for n in members if n.role == "reverse-proxy"]
    groups: dict[str, list[str]] = {"a": [], "b": []}
    for index, node in enumerate(proxies, 1):
        groups[config.proxy_group(index, len(proxies))].append(ids[node.name])
    forward = []
    for group, targets in groups.items():
        tg = elb.create_target_group(
            Name=f"{config.LB_NAME}-{group}",
            Protocol="HTTP",
            Port=80,
            VpcId=vpc["VpcId"],
            TargetType="instance",
            HealthCheckPath="/healthz",
            Tags=[{"Key": "ProxyGroup", "Value": group}],
        )["TargetGroups"][0]["TargetGroupArn"]
        if targets:
            elb.register_targets(
                TargetGroupArn=tg, Targets=[{"Id": i, "Port": 80} for i in targets]
            )
        forward.append({"TargetGroupArn": tg, "Weight": 100 if group == "a" else 0})
    action = {
        "Type": "forward",
        "ForwardConfig": {
            "TargetGroups": forward,
            "TargetGroupStickinessConfig": {"Enabled": False},
        },
    }
    listener = elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80, DefaultActions=[action]
    )["Listeners"][0]
    elb.create_rule(
        ListenerArn=listener["ListenerArn"],
        Priority=100,
        Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/*"]}}],
        Actions=[action],
    )
