"""tools/shift/steps.py: the step plan, and whole shifts against a fake load balancer and fake
logs on a fake clock: through every step, rolled back, waiting for traffic, resumed, done."""

from __future__ import annotations

import json

import pytest
from shift_fakes import FakeElb, FakeFleet, fake_shift

from tools.shift.errors import EXIT_OK, EXIT_ROLLED_BACK
from tools.shift.report import render_text
from tools.shift.steps import plan_steps


@pytest.mark.parametrize(
    ("current", "plan"),
    [
        (0, [5, 25, 50, 100]),
        (5, [5, 25, 50, 100]),
        (25, [25, 50, 100]),  # killed during the 25% window: judged again, then on
        (33.33, [33.33, 50, 100]),  # weights set by hand
        (100, []),
    ],
)
def test_plan_resumes_from_the_share_found_checking_it_again(current, plan):
    assert plan_steps((5, 25, 50, 100), current) == plan


def test_healthy_group_goes_through_every_step_to_100(tmp_path):
    elb = FakeElb({"a": 100, "b": 0})
    run = fake_shift(tmp_path, elb, FakeFleet(elb, 0.9997), "--min-requests", "50")
    assert run.run() == EXIT_OK
    assert elb.history == [
        {"a": 95, "b": 5},
        {"a": 75, "b": 25},
        {"a": 50, "b": 50},
        {"a": 0, "b": 100},
    ]
    assert [s.share for s in run.report.steps] == [5, 25, 50, 100]
    assert run.report.steps[-1].baseline == "step 50%"  # no old traffic at 100%
    data = json.loads((tmp_path / "r.json").read_text())
    assert [s["verdict"] for s in data["steps"]] == ["pass"] * 4  # written as each step ends


def test_failing_group_is_rolled_back_at_the_first_step(tmp_path):
    elb = FakeElb({"a": 100, "b": 0})
    run = fake_shift(tmp_path, elb, FakeFleet(elb, 0.8), "--min-requests", "50")
    assert run.run() == EXIT_ROLLED_BACK
    assert elb.history == [{"a": 95, "b": 5}, {"a": 100, "b": 0}]
    assert run.report.outcome == "rolled-back"
    assert run.report.reason.startswith("step 5%: client success")
    text = render_text(run.report)
    assert "ROLLED-BACK" in text and "new b" in text and "old" in text


def test_too_little_traffic_waits_up_to_max_wait_then_rolls_back(tmp_path):
    elb = FakeElb({"a": 100, "b": 0})
    fleet = FakeFleet(elb, 0.9997)
    run = fake_shift(tmp_path, elb, fleet, "--min-requests", "500", "--max-wait", "12")
    assert run.run() == EXIT_ROLLED_BACK
    assert fleet.reads == 3 * 2  # windows of 5, 10, 12 s; two groups read each time
    assert "not enough traffic in 12s" in run.report.reason
    assert elb.weights == {"a": 100, "b": 0}


def test_rerun_after_a_kill_resumes_from_the_weights_it_reads(tmp_path):
    elb = FakeElb({"a": 75, "b": 25})  # what a shift killed during its 25% window leaves
    run = fake_shift(tmp_path, elb, FakeFleet(elb, 0.9997), "--min-requests", "50")
    assert run.run() == EXIT_OK
    assert [s.share for s in run.report.steps] == [25, 50, 100]
    assert elb.history == [{"a": 50, "b": 50}, {"a": 0, "b": 100}]  # 25% was there already


def test_already_at_100_changes_nothing(tmp_path):
    elb = FakeElb({"a": 0, "b": 100})
    run = fake_shift(tmp_path, elb, FakeFleet(elb, 0.9997))
    assert run.run() == EXIT_OK and elb.history == []
    assert run.report.reason == "already at 100%"
