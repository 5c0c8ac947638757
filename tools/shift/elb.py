"""The weighted listener rule on the load balancer, and the weights that give a share.

Owns: the few ELBv2 calls of a shift (find the rule, read its weights and groups, modify its
weights; boto3's default chain, AWS_ENDPOINT_URL honoured) and the arithmetic from a share to
weights. Leaves alone: which target groups the rule forwards to (Terraform, terraform/lb.tf).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tools.shift.errors import ShiftError, UsageError

GROUP_TAG = "ProxyGroup"  # terraform/lb.tf tags each target group with its proxy group's key


# --- weights (pure) -------------------------------------------------------------------------------


def share_of(weights: Mapping[str, int], new: str) -> float:
    """The new group's share of the traffic in percent (0 when every weight is 0)."""
    total = sum(weights.values())
    return round(100.0 * weights[new] / total, 2) if total else 0.0


def weights_for(share: float, current: Mapping[str, int], new: str) -> dict[str, int]:
    """Weights (summing to 100) giving NEW `share` percent; the others share the rest in the
    proportions they have now (equally when they all have 0). Largest remainders round."""
    others = [g for g in current if g != new]
    if not others:
        raise ShiftError("the rule forwards to the new group only: nothing to shift from")
    new_weight = round(share)
    rest = 100 - new_weight
    base = {g: current[g] for g in others}
    if sum(base.values()) == 0:
        base = dict.fromkeys(others, 1)
    total = sum(base.values())
    exact = {g: rest * base[g] / total for g in others}
    out = {g: math.floor(v) for g, v in exact.items()}
    left = rest - sum(out.values())
    for g in sorted(others, key=lambda g: exact[g] - out[g], reverse=True)[:left]:
        out[g] += 1
    return {**out, new: new_weight}


# --- the load balancer ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleGroups:
    """The weighted rule as the load balancer has it now."""

    rule_arn: str
    arn_of: dict[str, str]  # group -> target group ARN, in the rule's order
    weights: dict[str, int]  # group -> weight
    stickiness: dict[str, Any]


class Elb:
    """The few ELBv2 calls of a shift (boto3's default chain; AWS_ENDPOINT_URL honoured)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def find_rule(self, load_balancer: str) -> str:
        """The one rule of the load balancer that forwards to several target groups."""
        lbs = self.client.describe_load_balancers(Names=[load_balancer])["LoadBalancers"]
        found = []
        for listener in self._all(
            "describe_listeners", "Listeners", LoadBalancerArn=lbs[0]["LoadBalancerArn"]
        ):
            for rule in self._all("describe_rules", "Rules", ListenerArn=listener["ListenerArn"]):
                if not rule.get("IsDefault") and len(_forward(rule).get("TargetGroups", [])) > 1:
                    found.append(rule["RuleArn"])
        if len(found) != 1:
            raise UsageError(
                f"load balancer {load_balancer}: {len(found)} rules forward to several target "
                "groups (expected 1): give --rule-arn"
            )
        return found[0]

    def _all(self, method: str, key: str, **kwargs: Any) -> list[dict]:
        items, marker = [], None
        while True:
            page = getattr(self.client, method)(**kwargs, **({"Marker": marker} if marker else {}))
            items += page[key]
            marker = page.get("NextMarker")
            if not marker:
                return items

    def read(self, rule_arn: str) -> RuleGroups:
        rules = self.client.describe_rules(RuleArns=[rule_arn])["Rules"]
        forward = _forward(rules[0])
        arns = [tg["TargetGroupArn"] for tg in forward.get("TargetGroups", [])]
        if len(arns) < 2:
            raise UsageError(f"rule {rule_arn} forwards to {len(arns)} target group(s), not 2+")
        names = self.group_names(arns)
        return RuleGroups(
            rule_arn=rule_arn,
            arn_of={names[a]: a for a in arns},
            weights={
                names[tg["TargetGroupArn"]]: int(tg.get("Weight", 1))
                for tg in forward["TargetGroups"]
            },
            stickiness=forward.get("TargetGroupStickinessConfig") or {"Enabled": False},
        )

    def group_names(self, arns: Sequence[str]) -> dict[str, str]:
        """Target group ARN -> its proxy group (the ProxyGroup tag; else the target group name)."""
        tags = {
            d["ResourceArn"]: {t["Key"]: t["Value"] for t in d.get("Tags", [])}
            for d in self.client.describe_tags(ResourceArns=list(arns))["TagDescriptions"]
        }
        names = {}
        for arn in arns:
            names[arn] = tags.get(arn, {}).get(GROUP_TAG) or arn.split("/")[-2]
        if len(set(names.values())) != len(names):
            raise UsageError(f"two target groups of the rule have the same {GROUP_TAG}: {names}")
        return names

    def targets(self, target_group_arn: str) -> list[str]:
        """Instance ids (or IP addresses) registered in the target group."""
        health = self.client.describe_target_health(TargetGroupArn=target_group_arn)
        return [d["Target"]["Id"] for d in health["TargetHealthDescriptions"]]

    def set_weights(self, rule: RuleGroups, weights: Mapping[str, int]) -> None:
        self.client.modify_rule(
            RuleArn=rule.rule_arn,
            Actions=[
                {
                    "Type": "forward",
                    "ForwardConfig": {
                        "TargetGroups": [
                            {"TargetGroupArn": arn, "Weight": int(weights[g])}
                            for g, arn in rule.arn_of.items()
                        ],
                        "TargetGroupStickinessConfig": rule.stickiness,
                    },
                }
            ],
        )


def _forward(rule: Mapping[str, Any]) -> dict[str, Any]:
    for action in rule.get("Actions", []):
        if action.get("Type") == "forward":
            if action.get("ForwardConfig"):
                return action["ForwardConfig"]
            return {"TargetGroups": [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}]}
    return {}


def elbv2_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "elbv2", config=Config(retries={"mode": "standard", "max_attempts": 8})
    )
