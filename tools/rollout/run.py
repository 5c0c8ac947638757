"""The rollout itself: deploy batch by batch, each deployed host through the gate, and stop when
one batch's failures exceed --max-fail-percent; what happened to every host (`RolloutResult`).
Deploying and gating are passed in, so this module runs nothing itself."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tools.rollout.gate import HealthResult
from tools.rollout.hosts import Host
from tools.rollout.results import DeployRun, HostRun


@dataclass
class RolloutResult:
    healthy: list[str] = field(default_factory=list)  # deployed and through the gate
    failed: dict[str, str] = field(default_factory=dict)  # host -> why, in the order they failed
    unchecked: list[str] = field(default_factory=list)  # deployed in the stopping batch, not gated
    untouched: list[str] = field(default_factory=list)
    stopped_at: str | None = None  # the host whose failure stopped the rollout
    stop_reason: str = ""  # why that failure was one too many

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """What an operator needs after a failure: where it stopped and why, then every host."""
        if self.stopped_at:
            lines = [f"ROLLOUT ABORTED at {self.stopped_at}: {self.failed[self.stopped_at]}"]
            if self.stop_reason:
                lines.append(f"  {self.stop_reason}")
        else:
            lines = [
                f"ROLLOUT FINISHED WITH FAILURES: {len(self.failed)} host(s) failed "
                "(within --max-fail-percent, so the rollout went on)"
            ]
        lines.append("  failed:")
        lines += [f"    {host}: {why}" for host, why in self.failed.items()]
        lines.append(f"  deployed and healthy: {', '.join(self.healthy) or '-'}")
        if self.unchecked:
            lines.append(f"  deployed in the same batch, not checked: {', '.join(self.unchecked)}")
        lines.append(f"  untouched: {', '.join(self.untouched) or '-'}")
        return "\n".join(lines)


def too_many_failures(failed: int, batch_size: int, max_fail_percent: int) -> bool:
    """More than `max_fail_percent` of the batch failed (0: any failure is too many)."""
    return failed * 100 > max_fail_percent * batch_size


DeployFn = Callable[[Sequence[Host]], DeployRun]
GateFn = Callable[[Host], HealthResult]


@dataclass
class _BatchFailures:
    """One batch's failures, counted against the tolerance as they come."""

    result: RolloutResult
    label: str  # "batch 2/4"
    size: int
    max_fail_percent: int
    log: Callable[[str], None]
    count: int = 0

    def fail(self, host: str, reason: str) -> bool:
        """Record a failure; True when it is one too many: the rollout stops here."""
        self.result.failed[host] = reason
        self.count += 1
        self.log(f"    {host}: FAILED: {reason}")
        if not too_many_failures(self.count, self.size, self.max_fail_percent):
            return False
        self.result.stopped_at = host
        self.result.stop_reason = (
            f"{self.label}: {self.count} of {self.size} host(s) failed, more than the "
            f"{self.max_fail_percent}% tolerated (--max-fail-percent / ROLLOUT_MAX_FAIL_PERCENT)"
        )
        return True


def roll_out(
    batches: Sequence[Sequence[Host]],
    *,
    deploy: DeployFn,
    gate: GateFn,
    max_fail_percent: int = 0,
    log: Callable[[str], None] = print,
) -> RolloutResult:
    """Deploy batch by batch; after each batch its deployed hosts go through the gate, in order.
    When the failures of one batch exceed `max_fail_percent` of it, stop there: the rest of the
    batch is not gated and later batches are not touched."""
    result = RolloutResult()
    for index, batch in enumerate(batches):
        names = [h.name for h in batch]
        later = [h.name for b in batches[index + 1 :] for h in b]
        label = f"batch {index + 1}/{len(batches)}"
        log(f"==> {label}: deploying {', '.join(names)}")
        failures = _BatchFailures(result, label, len(batch), max_fail_percent, log)
        run = deploy(batch)
        missing = HostRun(failure="pyinfra gave no result for it")
        runs = {name: run.hosts.get(name, missing) for name in names}
        deployed = [h for h in batch if runs[h.name].failure is None]
        for host in deployed:
            log(f"    {host.name}: deployed: {runs[host.name].summary()}")
        if run.log_tail:
            log("    pyinfra's last lines (its whole log is above):")
            log("\n".join(f"      {line}" for line in run.log_tail))
        for name in names:
            why = runs[name].failure
            if why and failures.fail(name, f"deploy failed: {why}"):
                result.unchecked = [h.name for h in deployed]
                result.untouched = later
                return result
        for position, host in enumerate(deployed):
            health = gate(host)
            if health.ok:
                log(f"    {host.name}: healthy ({'; '.join(health.details)})")
                result.healthy.append(host.name)
                continue
            reason = f"health gate failed after {health.attempts} attempt(s): " + "; ".join(
                health.details
            )
            if failures.fail(host.name, reason):
                result.unchecked = [h.name for h in deployed[position + 1 :]]
                result.untouched = later
                return result
    return result
