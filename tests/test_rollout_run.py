"""Unit tests of tools/rollout/run.py: the rollout over batches, with a fake deploy and gate, and
the failure tolerance (--max-fail-percent)."""

from __future__ import annotations

import pytest
from rollout_fakes import HOSTS, Recorder, roll, spec

from tools.rollout.hosts import plan_batches

# --- The rollout: batches and the failure tolerance -------------------------------------------


def test_roll_out_deploys_and_gates_every_host_in_order():
    rec = Recorder()
    result = roll(rec, plan_batches(HOSTS, HOSTS[0], spec("1,2")))
    assert result.ok
    assert rec.deployed == rec.gated == [h.name for h in HOSTS]
    assert result.healthy == [h.name for h in HOSTS]


def test_roll_out_logs_changed_operations_per_host():
    lines = []
    roll(Recorder(), [[HOSTS[0]]], log=lines.append)
    assert "    proxy-a-1: deployed: 3 operation(s) changed, 0 unchanged" in "\n".join(lines)


def test_roll_out_stops_at_first_unhealthy_host_and_leaves_the_rest_untouched():
    rec = Recorder(unhealthy={"proxy-a-2"})
    result = roll(rec, plan_batches(HOSTS, HOSTS[0], spec("1")))
    assert not result.ok
    assert result.stopped_at == "proxy-a-2"
    assert "health gate failed" in result.failed["proxy-a-2"]
    assert rec.deployed == ["proxy-a-1", "proxy-a-2"]
    assert result.untouched == ["proxy-a-3", "proxy-a-4", "proxy-a-5"]
    assert result.summary().startswith("ROLLOUT ABORTED at proxy-a-2: health gate failed")


def test_roll_out_gate_failure_inside_a_batch_lists_the_unchecked_hosts():
    rec = Recorder(unhealthy={"proxy-a-2"})
    result = roll(rec, plan_batches(HOSTS, HOSTS[0], spec("1,3")))
    assert result.stopped_at == "proxy-a-2"
    assert result.unchecked == ["proxy-a-3", "proxy-a-4"]
    assert result.untouched == ["proxy-a-5"]
    assert "proxy-a-5" not in rec.deployed


def test_roll_out_failed_operation_is_a_deploy_failure_not_gated():
    rec = Recorder(deploy_fail={"proxy-a-2": "op"})
    result = roll(rec, [[HOSTS[0], HOSTS[1]], HOSTS[2:]])
    assert result.failed == {"proxy-a-2": "deploy failed: operation 'Run the site check' failed"}
    assert rec.gated == []  # stopped before the gate: proxy-a-1 deployed, not checked
    assert result.unchecked == ["proxy-a-1"]
    assert result.untouched == ["proxy-a-3", "proxy-a-4", "proxy-a-5"]


def test_roll_out_unreachable_host_fails_from_failed_hosts():
    rec = Recorder(deploy_fail={"proxy-a-2": "unreachable"})
    result = roll(rec, [[HOSTS[0], HOSTS[1]]])
    assert "marked it failed before any operation ran" in result.failed["proxy-a-2"]


def test_roll_out_missing_json_fails_the_whole_batch_and_shows_pyinfra_last_lines():
    lines = []
    rec = Recorder(deploy_fail={"proxy-a-1": "op", "proxy-a-2": "op"})
    result = roll(rec, [HOSTS[:2], HOSTS[2:]], log=lines.append)
    assert result.failed["proxy-a-1"] == "deploy failed: pyinfra exited 1 without results"
    assert "--> pyinfra error: No hosts remaining!" in "\n".join(lines)
    assert rec.deployed == ["proxy-a-1", "proxy-a-2"]


def test_roll_out_max_fail_percent_tolerates_failures_and_goes_on():
    rec = Recorder(deploy_fail={"proxy-a-2": "op"}, unhealthy={"proxy-a-5"})
    result = roll(rec, [HOSTS[:2], HOSTS[2:4], HOSTS[4:]], max_fail_percent=100)
    assert rec.deployed == [h.name for h in HOSTS]
    assert list(result.failed) == ["proxy-a-2", "proxy-a-5"]
    assert result.healthy == ["proxy-a-1", "proxy-a-3", "proxy-a-4"]
    assert result.stopped_at is None and not result.ok
    summary = result.summary()
    assert summary.startswith("ROLLOUT FINISHED WITH FAILURES: 2 host(s) failed")
    assert "    proxy-a-2: deploy failed: operation 'Run the site check' failed" in summary
    assert "  deployed and healthy: proxy-a-1, proxy-a-3, proxy-a-4" in summary
    assert "  untouched: -" in summary


@pytest.mark.parametrize(
    ("unhealthy", "max_fail", "stopped_at"),
    [
        ({"proxy-a-1", "proxy-a-2"}, 50, None),  # 2 of 4 = 50%: not more than 50%
        ({"proxy-a-1", "proxy-a-2", "proxy-a-3"}, 50, "proxy-a-3"),  # 75% > 50%
        ({"proxy-a-1"}, 25, None),
        ({"proxy-a-1"}, 24, "proxy-a-1"),
        ({"proxy-a-4"}, 0, "proxy-a-4"),
    ],
)
def test_roll_out_max_fail_percent_stops_when_a_batch_exceeds_it(unhealthy, max_fail, stopped_at):
    rec = Recorder(unhealthy=unhealthy)
    result = roll(rec, [HOSTS[:4], HOSTS[4:]], max_fail_percent=max_fail)
    assert result.stopped_at == stopped_at
    assert set(result.failed) == unhealthy
    if stopped_at:
        assert result.untouched == ["proxy-a-5"]
        assert "more than the" in result.summary()
        assert f"{max_fail}% tolerated" in result.summary()
    else:
        assert rec.deployed[-1] == "proxy-a-5"
