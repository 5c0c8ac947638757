"""The modes: deploy, canary, fleet, verify, drift, repair and join-drift, each from settings to
an exit code, with their side effects (inventory, pyinfra, the gate) in one replaceable `Actions`
and their output printed and kept for --report (`Output`)."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from tools.rollout.drift import (
    SHARD_REPORT_GLOB,
    DryRun,
    drift_exit,
    drift_json,
    format_drift_report,
    join_drift_reports,
    read_shard_report,
)
from tools.rollout.errors import (
    EXIT_DRIFT,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    RolloutError,
)
from tools.rollout.gate import HealthResult, health_gate, url_for
from tools.rollout.hosts import (
    Host,
    describe_shard,
    load_hosts,
    pick_canary,
    plan_batches,
    shard_hosts,
)
from tools.rollout.lb_health import (
    FetchFn,
    describe_target_health,
    lb_gate,
    short_name,
    target_groups_of,
)
from tools.rollout.pyinfra_cmd import (
    deploy_command,
    dry_run_command,
    pyinfra_deploy,
    pyinfra_dry_run,
)
from tools.rollout.results import DeployRun
from tools.rollout.run import RolloutResult, roll_out
from tools.rollout.settings import Settings, describe_batches


class Output:
    """Prints as it goes and keeps the lines for --report."""

    def __init__(self, report: Path | None) -> None:
        self.report = report
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def error(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)
        self.lines.extend(text.splitlines())

    def write(self) -> None:
        if self.report:
            self.report.write_text("\n".join(self.lines) + "\n")


def _describe_plan(settings: Settings, batches: Sequence[Sequence[Host]], out: Output) -> None:
    out(
        "Dry: nothing is deployed. The rollout would run, stopping when more than "
        f"{settings.max_fail_percent}% of a batch fails:"
    )
    for i, batch in enumerate(batches, 1):
        out(f"  batch {i}: {shlex.join(deploy_command(settings, [h.name for h in batch]))}")
        for host in batch:
            checks = ", ".join(
                f"{url_for(host.address, settings.health_port, c.path)} -> {c.status}"
                for c in settings.health_checks
            )
            out(f"    then gate {host.name}: {checks}")
            if settings.target_group_arns:
                out(f"      and healthy in the load balancer's {_groups(settings)}")


def _finish_rollout(result: RolloutResult, out: Output) -> int:
    if result.ok:
        out(f"ROLLOUT DONE: deployed and healthy: {', '.join(result.healthy) or '-'}")
        return EXIT_OK
    out.error(result.summary())
    return EXIT_FAILED


def _groups(settings: Settings) -> str:
    if settings.load_balancer:
        names = ", ".join(short_name(arn) for arn in settings.target_group_arns)
        return f"target group(s) {names} of load balancer {settings.load_balancer}"
    return "target group(s) " + ", ".join(settings.target_group_arns)


def _groups_setting(settings: Settings) -> str:
    if settings.load_balancer:
        return "--load-balancer / ROLLOUT_LOAD_BALANCER"
    return "--target-group-arn / ROLLOUT_TARGET_GROUP_ARNS"


def gate_host(
    host: Host, settings: Settings, *, fetch: FetchFn = describe_target_health
) -> HealthResult:
    """The gate: the runner's probe of the host's own address, then, when target groups are
    known, the load balancer's own view of it (lb_health.py). Both must pass."""
    probe = health_gate(host, settings)
    if not probe.ok or not settings.target_group_arns:
        return probe
    seen = lb_gate(host, settings, fetch=fetch)
    return HealthResult(seen.ok, seen.attempts, probe.details + seen.details)


@dataclass
class Actions:
    """The side effects, replaceable in tests."""

    load_hosts: Callable[[Settings], list[Host]] = load_hosts
    deploy: Callable[[Settings, Sequence[Host]], DeployRun] = pyinfra_deploy
    dry_run: Callable[[Settings, Sequence[Host], Sequence[str]], DryRun] = pyinfra_dry_run
    gate: Callable[[Host, Settings], HealthResult] = lambda host, s: gate_host(host, s)
    target_health: FetchFn = describe_target_health
    lb_target_groups: Callable[[str], tuple[str, ...]] = target_groups_of


def with_load_balancer(settings: Settings, actions: Actions, out: Output) -> Settings:
    """--load-balancer NAME: its target groups become the gate's, looked up once before any host
    is touched, and said."""
    if not settings.load_balancer:
        return settings
    arns = actions.lb_target_groups(settings.load_balancer)
    settings = replace(settings, target_group_arns=arns)
    out(f"gate: the load balancer's view too, in its {_groups(settings)}")
    return settings


def _check_registered(settings: Settings, hosts: Sequence[Host], actions: Actions) -> None:
    """With target groups, every host the run gates must be registered in one of them: said
    before any host is touched (a stale ARN or a host outside the groups is a setting to fix).
    AWS errors (no credentials, an unknown ARN) end the run here too, with AWS's message."""
    if not settings.target_group_arns:
        return
    groups = actions.target_health(settings.target_group_arns)
    registered = {target for targets in groups.values() for target in targets}
    missing = [h for h in hosts if h.instance_id not in registered]
    if missing:
        raise RolloutError(
            "not registered in the load balancer's "
            + _groups(settings)
            + f" ({_groups_setting(settings)}), so the gate cannot see them "
            "as the load balancer does: "
            + ", ".join(f"{h.name} ({h.instance_id or 'no ec2_instance_id'})" for h in missing),
            EXIT_USAGE,
        )


def _roll_out(
    settings: Settings, actions: Actions, batches: list[list[Host]], out: Output
) -> RolloutResult:
    return roll_out(
        batches,
        deploy=lambda batch: actions.deploy(settings, batch),
        gate=lambda host: actions.gate(host, settings),
        max_fail_percent=settings.max_fail_percent,
        log=out,
    )


def _own_hosts(settings: Settings, hosts: list[Host], out: Output) -> list[Host]:
    """Every host, or in a shard the shard's own hosts (said first, with how they were chosen)."""
    if settings.shard is None:
        return hosts
    mine = shard_hosts(hosts, settings.shard)
    for line in describe_shard(settings.shard, hosts, mine):
        out(line)
    return mine


def cmd_rollout(mode: str, settings: Settings, actions: Actions, out: Output) -> int:
    hosts = actions.load_hosts(settings)
    # From the whole inventory, so that every shard agrees on the canary (deploy:canary's).
    canary = pick_canary(hosts, settings.canary)
    mine = _own_hosts(settings, hosts, out)
    if not mine:
        return EXIT_OK  # an empty shard; describe_shard said so
    _check_registered(settings, [canary] if mode == "canary" else [canary, *mine], actions)
    if mode == "canary":
        batches = [[canary]]
    elif canary in mine:
        batches = plan_batches(mine, canary, settings.batches, with_canary=(mode == "deploy"))
    else:  # a shard without the canary: its batches start with its own first host
        batches = plan_batches(mine, mine[0], settings.batches)
    where = "" if canary in mine else " (another shard's)"
    out(
        f"{mode}: {len(mine)} proxies, canary {canary.name}{where}, "
        f"batches {describe_batches(settings.batches)} "
        f"({', '.join(str(len(b)) for b in batches) or 'none'}), "
        f"max fail {settings.max_fail_percent}% per batch"
    )
    if settings.dry:
        if mode == "fleet":
            out(f"  first: gate the canary {canary.name} (it must already be healthy)")
        _describe_plan(settings, batches, out)
        return EXIT_OK
    if mode == "fleet":
        health = actions.gate(canary, settings)
        if not health.ok:
            result = RolloutResult(
                failed={
                    canary.name: "the canary is not healthy, so the fleet is not started: "
                    + "; ".join(health.details)
                },
                untouched=[h.name for b in batches for h in b],
                stopped_at=canary.name,
            )
            return _finish_rollout(result, out)
        out(f"canary {canary.name} is healthy; rolling out to the rest")
        if not batches:
            out("no other proxy to deploy")
    return _finish_rollout(_roll_out(settings, actions, batches, out), out)


def cmd_verify(settings: Settings, actions: Actions, out: Output) -> int:
    hosts = _own_hosts(settings, actions.load_hosts(settings), out)
    if not hosts:
        return EXIT_OK
    _check_registered(settings, hosts, actions)
    unhealthy = []
    for host in hosts:
        health = actions.gate(host, settings)
        state = "healthy" if health.ok else "UNHEALTHY"
        out(f"{host.name}: {state}: {'; '.join(health.details)}")
        if not health.ok:
            unhealthy.append(host.name)
    if unhealthy:
        out(f"VERIFY FAILED: unhealthy: {', '.join(unhealthy)}")
        return EXIT_FAILED
    out(f"VERIFY OK: {len(hosts)} proxies healthy")
    return EXIT_OK


def _write_drift_report(settings: Settings, dry: DryRun, text: str) -> None:
    if settings.report:
        settings.report.write_text(text)
        settings.report.with_suffix(".json").write_text(
            json.dumps(drift_json(dry, settings.shard), indent=2) + "\n"
        )


def _dry_run_limits(settings: Settings, hosts: Sequence[Host]) -> list[str]:
    """--limit proxies for the whole fleet; a shard names its hosts (pyinfra reaches only them)."""
    return [h.name for h in hosts] if settings.shard else [settings.group]


def _empty_shard_report(settings: Settings, title: str) -> int:
    """An empty shard still writes its report: `join-drift` then knows the shard ran."""
    assert settings.shard is not None
    now = datetime.now(UTC)
    text = f"{title} ({now:%Y-%m-%d %H:%M} UTC)\nShard {settings.shard}: no hosts.\n"
    _write_drift_report(settings, DryRun(hosts=[]), text)
    return EXIT_OK


def _checked_drift(
    settings: Settings, actions: Actions, hosts: list[Host], title: str, out: Output
) -> tuple[DryRun, str]:
    """A dry run over HOSTS and its report under TITLE, printed."""
    limits = _dry_run_limits(settings, hosts)
    dry = actions.dry_run(settings, hosts, limits)
    text = format_drift_report(
        dry, title=title, command=dry_run_command(settings, limits), shard=settings.shard
    )
    out(text.rstrip("\n"))
    return dry, text


def cmd_drift(settings: Settings, actions: Actions, out: Output) -> int:
    hosts = _own_hosts(settings, actions.load_hosts(settings), out)
    if not hosts:
        return _empty_shard_report(settings, "Drift report")
    dry, text = _checked_drift(settings, actions, hosts, "Drift report", out)
    _write_drift_report(settings, dry, text)
    return drift_exit(dry)


def cmd_repair(settings: Settings, actions: Actions, out: Output) -> int:
    hosts = _own_hosts(settings, actions.load_hosts(settings), out)
    if not hosts:
        return _empty_shard_report(settings, "Drift before repair")
    before, report = _checked_drift(settings, actions, hosts, "Drift before repair", out)
    drifted = [h for h in hosts if h.name in before.drifted]
    if before.error:
        _write_drift_report(settings, before, report)
        return EXIT_ERROR
    if not drifted:
        out("Nothing to repair.")
        _write_drift_report(settings, before, report)
        return drift_exit(before)
    _check_registered(settings, drifted, actions)
    batches = plan_batches(drifted, drifted[0], settings.batches)
    if settings.dry:
        _describe_plan(settings, batches, out)
        _write_drift_report(settings, before, report)
        return EXIT_DRIFT
    result = _roll_out(settings, actions, batches, out)
    code = _finish_rollout(result, out)
    if code != EXIT_OK:
        _write_drift_report(settings, before, report + "\n" + result.summary() + "\n")
        return code
    names = [h.name for h in drifted]
    after = actions.dry_run(settings, drifted, names)
    after_text = format_drift_report(
        after,
        title="Drift after repair",
        command=dry_run_command(settings, names),
        shard=settings.shard,
    )
    out(after_text.rstrip("\n"))
    if after.drifted:
        out(
            "STILL DRIFTED right after the deploy: those operations report a change on every run "
            "(not idempotent); fix them in tasks/."
        )
    _write_drift_report(settings, after, report + "\n" + after_text)
    if after.drifted or after.error:
        return drift_exit(after)
    return EXIT_ERROR if before.not_checked else EXIT_OK


def cmd_join_drift(settings: Settings, out: Output) -> int:
    """drift-report-shard-*-of-*.json -> drift-report.txt and .json, the whole fleet's."""
    target = settings.report or Path("drift-report.txt")
    pattern = SHARD_REPORT_GLOB.format(stem=target.stem)
    paths = sorted(target.parent.glob(pattern))
    if not paths:
        whole = target.with_suffix(".json")
        if whole.is_file():
            out(
                f"no shard report ({pattern}): the drift check ran unsharded, so {target} is "
                "already the whole fleet's report"
            )
            return EXIT_OK
        raise RolloutError(f"no drift report to join: neither {pattern} nor {whole}")
    joined, total, missing = join_drift_reports([read_shard_report(p) for p in paths])
    text = format_drift_report(
        joined,
        title=f"Drift report of the whole fleet ({total - len(missing)} of {total} shards)",
        command=None,
        sources=[p.name for p in paths],
    )
    out(text.rstrip("\n"))
    target.write_text(text)
    doc = drift_json(joined) | {"shards": {"total": total, "missing": missing}}
    target.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    return EXIT_ERROR if missing else EXIT_OK
