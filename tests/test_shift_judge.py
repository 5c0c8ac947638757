"""tools/shift/judge.py: a window's figures and the verdict of a step."""

from __future__ import annotations

import pytest
from shift_fakes import samples

from tools.shift.judge import Figures, Sample, Thresholds, figures_of, percentile, verdict

T = Thresholds(min_requests=100)


def test_figures_count_success_first_attempts_and_p99():
    window = [Sample(True, False, 0.001 * i) for i in range(1, 100)]
    window += [Sample(False, True, 1.0), Sample(True, None, 0.0)]  # one failure, one not proxied
    fig = figures_of(window)
    assert (fig.requests, fig.ok, fig.reached_backend, fig.first_failed) == (101, 100, 100, 1)
    assert fig.p99 == pytest.approx(0.099)
    assert percentile([], 99) is None and percentile([3.0], 99) == 3.0


def test_equal_groups_pass_over_many_seeds():
    """A healthy new group is not rolled back by chance: the noise allowance at work."""
    for seed in range(200):
        old = figures_of(samples(2000, 0.999, 0.2, seed=seed))
        new = figures_of(samples(120, 0.999, 0.2, seed=seed + 1000))
        assert verdict(new, old, T).outcome == "pass", seed


def test_new_group_failing_one_request_in_five_fails_on_client_success():
    old = figures_of(samples(2000, 0.9997, 0.2))
    new = figures_of(samples(120, 0.8, 0.2, seed=2))
    v = verdict(new, old, T)
    assert v.outcome == "fail"
    assert v.reasons[0].startswith("client success 7") and "against 100.00%" in v.reasons[0]


def test_first_attempt_failures_and_p99_are_judged_too():
    old = figures_of(samples(2000, 1.0, 0.2))
    broken_upstream = figures_of(samples(300, 1.0, 0.9, seed=3))
    assert "first-attempt failure" in verdict(broken_upstream, old, T).reasons[0]
    slow = figures_of(samples(300, 1.0, 0.2, seconds=0.5, seed=4))
    reasons = verdict(slow, old, T).reasons
    assert len(reasons) == 1 and reasons[0].startswith("p99 latency")


def test_requests_nginx_answers_itself_count_against_the_new_group():
    """A rate limit keyed on the load balancer: 429s are a success for the report, but the new
    group reaches the backend for fewer of the same requests."""
    old = figures_of(samples(2000, 1.0, 0.2))
    limited = [Sample(True, None, 0.0)] * 60 + samples(240, 1.0, 0.2, seed=5)
    reasons = verdict(figures_of(limited), old, T).reasons
    assert len(reasons) == 1 and reasons[0].startswith("answered without a backend 20.00%")


def test_too_few_requests_give_no_verdict():
    old = figures_of(samples(2000, 1.0, 0.2))
    v = verdict(figures_of(samples(99, 0.0, 1.0)), old, T)
    assert v.outcome == "insufficient"
    assert v.reasons == ("new group: 99 requests, 100 needed",)


def test_figures_json_carries_the_rates():
    data = Figures(requests=10, ok=9, reached_backend=10, first_failed=2, p99=0.01).to_json()
    assert data["success_rate"] == 0.9 and data["first_attempt_failure_rate"] == 0.2
