"""The command line: the parser of `python -m tools.rollout` and `main`, which builds the
settings, runs the mode and turns a `RolloutError` into its message and exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from tools.rollout.commands import (
    Actions,
    Output,
    cmd_drift,
    cmd_join_drift,
    cmd_repair,
    cmd_rollout,
    cmd_verify,
    with_load_balancer,
)
from tools.rollout.errors import RolloutError
from tools.rollout.settings import (
    DEFAULT_DEPLOY_FILE,
    DEFAULT_INVENTORY,
    HEALTH_PORT,
    check_mode_takes_shard,
    settings_from,
)

MODES = ("deploy", "canary", "fleet", "verify", "drift", "repair", "join-drift")
GATED_MODES = ("deploy", "canary", "fleet", "verify", "repair")  # the modes that run the gate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.rollout",
        description="Canary-first, health-gated rollout of deploy.py to the proxies; "
        "verify; drift detection and repair.",
        epilog="Exit codes: 0 ok, 1 a host failed, 2 bad usage, "
        "3 drift, 4 could not work (inventory, pyinfra, a host not checked).",
    )
    parser.add_argument("mode", nargs="?", default="deploy", choices=MODES, help="default: deploy")
    parser.add_argument("--inventory", help=f"pyinfra inventory (default {DEFAULT_INVENTORY})")
    parser.add_argument("--canary", help="canary host name (default: the first proxy)")
    parser.add_argument(
        "--batches",
        help="batch sizes, counts or percentages of all the hosts, the last one repeating "
        "(default 1,1; e.g. 1,25%%,100%%)",
    )
    parser.add_argument("--batch-size", help="N: the same as --batches 1,N")
    parser.add_argument(
        "--max-fail-percent",
        help="stop when more than this percentage of a batch failed (0-100, default 0)",
    )
    parser.add_argument("--dry", action="store_true", help="print the plan; deploy nothing")
    parser.add_argument("--report", help="also write the output (drift: the report) to FILE")
    parser.add_argument("--health-port", help=f"port of the health checks (default {HEALTH_PORT})")
    parser.add_argument(
        "--health-check",
        dest="health_checks",
        action="append",
        help="PATH=STATUS, repeatable (default /healthz=200 and /readyz=200)",
    )
    parser.add_argument("--health-timeout", help="seconds per request (default 5)")
    parser.add_argument("--health-attempts", help="tries before a host is unhealthy (default 6)")
    parser.add_argument("--health-interval", help="seconds between tries (default 5)")
    parser.add_argument("--health-host", help="Host header of the checks (default: the address)")
    parser.add_argument(
        "--target-group-arn",
        dest="target_group_arns",
        action="append",
        help="the load balancer's target group, repeatable: the gate also waits until the load "
        "balancer sees each proxy healthy there (default: ROLLOUT_TARGET_GROUP_ARNS, else none)",
    )
    parser.add_argument(
        "--load-balancer",
        help="the load balancer by name (Terraform's <name_prefix>-<environment>): the gate "
        "waits for its view in each of its target groups, as with --target-group-arn "
        "(default: ROLLOUT_LOAD_BALANCER, else none)",
    )
    parser.add_argument(
        "--shard",
        help="I/N: only the proxies of shard I of N, by EC2 instance id (fleet, verify, drift, "
        "repair; default: CI_NODE_INDEX/CI_NODE_TOTAL when set, else every proxy)",
    )
    parser.add_argument("--deploy-file", default=DEFAULT_DEPLOY_FILE, help=argparse.SUPPRESS)
    parser.add_argument("--pyinfra", help="pyinfra command (default: this Python's -m pyinfra)")
    return parser


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    actions: Actions | None = None,
) -> int:
    args = build_parser().parse_args(argv)
    actions = actions or Actions()
    try:
        settings = settings_from(args, os.environ if environ is None else environ)
        check_mode_takes_shard(args.mode, settings.shard)
        out = Output(
            settings.report if args.mode not in ("drift", "repair", "join-drift") else None
        )
        if args.mode in GATED_MODES:
            settings = with_load_balancer(settings, actions, out)
        if args.mode in ("deploy", "canary", "fleet"):
            code = cmd_rollout(args.mode, settings, actions, out)
        elif args.mode == "verify":
            code = cmd_verify(settings, actions, out)
        elif args.mode == "drift":
            code = cmd_drift(settings, actions, out)
        elif args.mode == "repair":
            code = cmd_repair(settings, actions, out)
        else:
            code = cmd_join_drift(settings, out)
        out.write()
        return code
    except RolloutError as e:
        print(f"rollout: {e}", file=sys.stderr)
        return e.exit_code
