"""Unit tests of lab/honest_aws.py: the lab's fake AWS answers DescribeTargetHealth with what the
lab's load balancer really saw (its lb.json), through the real moto application on loopback, and
leaves every other request to moto."""

from __future__ import annotations

import json
import threading
import time

import boto3
import pytest

from lab.honest_aws import HEALTHY, INITIAL, UNHEALTHY, UNKNOWN, HonestTargetHealth, lb_health

NOW = 1_000_000.0


def lb_state(healthy: dict[str, bool], instances: dict[str, str], age: float = 0.0) -> dict:
    return {"time": NOW - age, "healthy": healthy, "instances": instances}


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (lb_state({"10.0.0.5": True}, {"i-1": "10.0.0.5"}), HEALTHY),
        (lb_state({"10.0.0.5": False}, {"i-1": "10.0.0.5"}), UNHEALTHY),
        (lb_state({}, {"i-1": "10.0.0.5"}), INITIAL),  # not checked twice yet
        (lb_state({"10.0.0.5": True}, {}), INITIAL),  # the balancer does not know it yet
        (lb_state({"10.0.0.5": True}, {"i-1": "10.0.0.5"}, age=60), UNKNOWN),
        (None, UNKNOWN),
    ],
)
def test_lb_health_from_the_state_file(state, expected):
    assert lb_health(state, "i-1", NOW) == expected


@pytest.fixture
def honest_aws(tmp_path, monkeypatch):
    """The real moto application behind the middleware on 127.0.0.1; (endpoint, lb.json)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    state = tmp_path / "lb.json"
    app = HonestTargetHealth(DomainDispatcherApplication(create_backend_app), state)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    try:
        yield f"http://127.0.0.1:{server.server_port}", state
    finally:
        server.shutdown()
        thread.join()


def test_describe_target_health_tells_what_the_lab_load_balancer_saw(honest_aws):
    endpoint, state = honest_aws
    ec2 = boto3.client("ec2", region_name="eu-west-1", endpoint_url=endpoint)
    elb = boto3.client("elbv2", region_name="eu-west-1", endpoint_url=endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.0.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instances = ec2.run_instances(
        ImageId=image, MinCount=2, MaxCount=2, SubnetId=subnet, InstanceType="t3.micro"
    )["Instances"]
    ids = {i["InstanceId"]: i["PrivateIpAddress"] for i in instances}
    tg = elb.create_target_group(
        Name="proxies-a", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": i} for i in ids])
    good, bad = ids
    seen = {ids[good]: True, ids[bad]: False}
    state.write_text(json.dumps({"time": time.time(), "healthy": seen, "instances": ids}))

    answer = elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
    health = {d["Target"]["Id"]: d["TargetHealth"] for d in answer}
    assert health[good] == {"State": "healthy"}
    assert health[bad] == {
        "State": "unhealthy",
        "Reason": "Target.FailedHealthChecks",
        "Description": "Health checks failed",
    }
    # every other request is moto's own
    assert elb.describe_target_groups(TargetGroupArns=[tg])["TargetGroups"][0]["Port"] == 80
