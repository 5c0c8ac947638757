"""The load balancer's half of the health gate: whether the load balancer itself sees a proxy
healthy, from ELBv2 DescribeTargetHealth of the known target groups (--target-group-arn,
ROLLOUT_TARGET_GROUP_ARNS: Terraform's output `target_group_arns`; or every target group of the
load balancer named by --load-balancer, ROLLOUT_LOAD_BALANCER, which CI sets by default).

The runner's probe (gate.py) reaches each proxy's private address from the runner; the load
balancer connects from its own subnets. A firewall that admits the runner but not those subnets
passes the probe while the load balancer marks the proxy unhealthy: only the load balancer's own
view catches it. A proxy must be registered (by its EC2 instance id) in at least one known target
group, and `healthy` in every one it is in, within the gate's attempts; otherwise the gate fails
with the State, Reason and Description AWS gives.

boto3 is imported only when target groups are given, so the rest of tools/rollout/ stays
standard library only (the CI job that joins drift reports has no venv). AWS errors (no
credentials, an unknown or malformed ARN, no endpoint) end the run with a message, not a
traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tools.rollout.errors import EXIT_ERROR, RolloutError
from tools.rollout.gate import HealthResult
from tools.rollout.hosts import Host
from tools.rollout.settings import Settings, is_target_group_arn


@dataclass(frozen=True)
class TargetState:
    """One target's health as DescribeTargetHealth gives it."""

    state: str
    reason: str | None = None
    description: str | None = None

    def __str__(self) -> str:
        extra = ", ".join(t for t in (self.reason, self.description) if t)
        return f"{self.state} ({extra})" if extra else self.state


# target group ARN -> instance id -> its health there
GroupsHealth = dict[str, dict[str, TargetState]]
FetchFn = Callable[[Sequence[str]], GroupsHealth]


def region_of(arn: str) -> str:
    """arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID -> REGION."""
    if not is_target_group_arn(arn):
        raise RolloutError(f"{arn!r} is not a target group ARN", EXIT_ERROR)
    return arn.split(":")[3]


def parse_target_health(response: Mapping[str, Any]) -> dict[str, TargetState]:
    """DescribeTargetHealth's answer -> instance id -> its health."""
    found = {}
    for item in response.get("TargetHealthDescriptions", []):
        health = item.get("TargetHealth") or {}
        found[item["Target"]["Id"]] = TargetState(
            health.get("State", "unknown"), health.get("Reason"), health.get("Description")
        )
    return found


def _aws_error(arn: str, error: Exception) -> RolloutError:
    """An AWS error as one line: what failed, on which target group, and AWS's own words."""
    response = getattr(error, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    text = response.get("Error", {}).get("Message") or str(error)
    hint = {
        "TargetGroupNotFound": " (is --target-group-arn / ROLLOUT_TARGET_GROUP_ARNS current? "
        "Terraform's output target_group_arns)",
        "AccessDenied": " (the runner's role needs elasticloadbalancing:DescribeTargetHealth)",
    }.get(code or "", "")
    what = f"{code}: {text}" if code else f"{type(error).__name__}: {text}"
    return RolloutError(f"DescribeTargetHealth of {arn} failed: {what}{hint}", EXIT_ERROR)


def describe_target_health(arns: Sequence[str]) -> GroupsHealth:
    """Each target group's targets and their health, one DescribeTargetHealth call per group
    (the API has no paging: it answers every registered target at once)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.session.Session()  # its own: never boto3's shared default session
    clients: dict[str, Any] = {}
    found: GroupsHealth = {}
    for arn in arns:
        region = region_of(arn)
        try:
            client = clients.get(region) or session.client("elbv2", region_name=region)
            clients[region] = client
            found[arn] = parse_target_health(client.describe_target_health(TargetGroupArn=arn))
        except (BotoCoreError, ClientError) as e:
            raise _aws_error(arn, e) from None
    return found


def target_groups_of(load_balancer: str) -> tuple[str, ...]:
    """The target groups of the load balancer named LOAD_BALANCER, in the session's region
    (AWS_DEFAULT_REGION): DescribeLoadBalancers by name, then DescribeTargetGroups of its ARN.
    Every group it forwards to, the weighted rule's included; an error when there is none."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.session.Session()
    where = f"load balancer {load_balancer} (--load-balancer / ROLLOUT_LOAD_BALANCER)"
    if not session.region_name:
        raise RolloutError(f"{where}: no AWS region: set AWS_DEFAULT_REGION", EXIT_ERROR)
    try:
        client = session.client("elbv2")
        found = client.describe_load_balancers(Names=[load_balancer])["LoadBalancers"]
        pages = client.get_paginator("describe_target_groups").paginate(
            LoadBalancerArn=found[0]["LoadBalancerArn"]
        )
        arns = [group["TargetGroupArn"] for page in pages for group in page["TargetGroups"]]
    except (BotoCoreError, ClientError) as e:
        response = getattr(e, "response", None) or {}
        code = response.get("Error", {}).get("Code")
        hint = {
            "LoadBalancerNotFound": f" in {session.region_name}: Terraform names it "
            "<name_prefix>-<environment>, e.g. proxy-production",
            "AccessDenied": " (the runner's role needs elasticloadbalancing:DescribeLoadBalancers "
            "and DescribeTargetGroups)",
        }.get(code or "", "")
        text = response.get("Error", {}).get("Message") or str(e)
        raise RolloutError(
            f"{where}: {code or type(e).__name__}: {text}{hint}", EXIT_ERROR
        ) from None
    if not arns:
        raise RolloutError(f"{where} has no target group: nothing to gate on", EXIT_ERROR)
    return tuple(sorted(arns))


def lb_verdict(host: Host, groups: GroupsHealth) -> tuple[bool, bool, tuple[str, ...]]:
    """(final, ok, details) of one look at the load balancer's view of `host`. Final: waiting
    cannot change it (healthy everywhere, or registered nowhere)."""
    if not host.instance_id:
        why = "the inventory gives it no ec2_instance_id, so its target health cannot be read"
        return True, False, (f"load balancer: {why}",)
    states = {arn: g[host.instance_id] for arn, g in groups.items() if host.instance_id in g}
    if not states:
        known = ", ".join(groups) or "-"
        why = f"{host.instance_id} is registered in none of the target groups ({known})"
        return True, False, (f"load balancer: {why}",)
    details = tuple(
        f"load balancer: target group {short_name(arn)}: {state}" for arn, state in states.items()
    )
    ok = all(state.state == "healthy" for state in states.values())
    return ok, ok, details


def short_name(arn: str) -> str:
    """arn:...:targetgroup/proxy-lab-a/0123 -> proxy-lab-a (the name is what people know)."""
    return arn.split(":")[-1].split("/")[1] if "targetgroup/" in arn else arn


def lb_gate(
    host: Host,
    settings: Settings,
    *,
    fetch: FetchFn = describe_target_health,
    sleep: Callable[[float], None] = time.sleep,
) -> HealthResult:
    """Wait until the load balancer sees `host` healthy in every known target group it is
    registered in: up to `health_attempts` looks, `health_interval` apart (the gate's bounds)."""
    details: tuple[str, ...] = ()
    for attempt in range(1, settings.health_attempts + 1):
        final, ok, details = lb_verdict(host, fetch(settings.target_group_arns))
        if final:
            return HealthResult(ok, attempt, details)
        if attempt < settings.health_attempts:
            sleep(settings.health_interval)
    return HealthResult(False, settings.health_attempts, details)
