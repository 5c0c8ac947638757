"""What the tests of tools/shift/ share (not a test module): the option parser with the lab's
group and load balancer, random samples, a fake load balancer and fake logs driving whole
shifts on a fake clock, and a weighted rule in moto (in-process)."""

from __future__ import annotations

import argparse
import contextlib
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tools.shift.cli import build_parser
from tools.shift.elb import Elb, RuleGroups
from tools.shift.errors import ShiftError
from tools.shift.judge import Sample
from tools.shift.report import Report
from tools.shift.settings import settings_from
from tools.shift.steps import Shift


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["--to", "b", "--load-balancer", "lb", *argv])


def samples(n: int, success: float, first_fail: float, seconds: float = 0.004, seed: int = 1):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        first_failed = rng.random() < first_fail
        out.append(Sample(rng.random() < success, first_failed, seconds * rng.uniform(0.5, 1.5)))
    return out


class FakeElb:
    def __init__(self, weights: dict[str, int]) -> None:
        self.weights = dict(weights)
        self.history: list[dict[str, int]] = []
        self.fail_modify = False

    def read(self, rule_arn: str) -> RuleGroups:
        return RuleGroups(rule_arn, {g: f"arn:{g}" for g in self.weights}, dict(self.weights), {})

    def set_weights(self, rule, weights) -> None:
        self.weights = dict(weights)
        self.history.append(dict(weights))


class FakeFleet:
    """Traffic of 2000 requests a window, split by the fake load balancer's weights; the new
    group succeeds with NEW_SUCCESS."""

    def __init__(self, elb: FakeElb, new_success: float, fail_at: int | None = None) -> None:
        self.elb, self.new_success, self.reads, self.fail_at = elb, new_success, 0, fail_at
        self.logs = {"a": [], "b": []}

    def marks(self):
        return {}

    def samples(self, group, marks, start, end):
        self.reads += 1
        if self.fail_at is not None and self.reads >= self.fail_at:
            raise ShiftError("proxy-3: `sudo -n tail` exited 1: no such file")
        share = self.elb.weights[group] / sum(self.elb.weights.values())
        rate = self.new_success if group == "b" else 0.9997
        return samples(int(2000 * share), rate, 0.2, seed=self.reads)

    def close(self):
        pass


def fake_shift(tmp_path: Path, elb: FakeElb, fleet: FakeFleet, *argv: str) -> Shift:
    settings = settings_from(
        args("--interval", "5", "--settle", "0", "--report", str(tmp_path / "r"), *argv), {}
    )
    clock = [datetime(2026, 11, 29, 14, 0, tzinfo=UTC)]

    def sleep(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)

    report = Report(
        rule_arn="arn:rule",
        new_group="b",
        old_groups=["a"],
        hosts={"a": ["proxy-1", "proxy-2"], "b": ["proxy-3"]},
        thresholds=settings.thresholds,
        started=clock[0],
        initial_weights=dict(elb.weights),
    )
    rule = elb.read("arn:rule")
    return Shift(settings, elb, rule, fleet, report, sleep, lambda: clock[0], lambda s: None)


@contextlib.contextmanager
def moto_rule(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Elb, str]]:
    """A load balancer in moto whose weighted rule forwards to groups a (100) and b (0)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        ec2 = boto3.client("ec2")
        elb = boto3.client("elbv2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=zone)[
                "Subnet"
            ]["SubnetId"]
            for i, zone in enumerate(("eu-west-1a", "eu-west-1b"))
        ]
        lb = elb.create_load_balancer(Name="proxy-test", Subnets=subnets)["LoadBalancers"][0]
        tgs = [
            elb.create_target_group(
                Name=f"proxy-test-{g}",
                Protocol="HTTP",
                Port=80,
                VpcId=vpc,
                Tags=[{"Key": "ProxyGroup", "Value": g}],
            )["TargetGroups"][0]["TargetGroupArn"]
            for g in ("a", "b")
        ]
        forward = {
            "Type": "forward",
            "ForwardConfig": {
                "TargetGroups": [
                    {"TargetGroupArn": tgs[0], "Weight": 100},
                    {"TargetGroupArn": tgs[1], "Weight": 0},
                ]
            },
        }
        listener = elb.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"],
            Protocol="HTTP",
            Port=80,
            DefaultActions=[forward],
        )["Listeners"][0]
        rule = elb.create_rule(
            ListenerArn=listener["ListenerArn"],
            Priority=100,
            Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/*"]}}],
            Actions=[forward],
        )["Rules"][0]["RuleArn"]
        yield Elb(elb), rule
