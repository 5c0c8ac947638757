"""tools/shift/elb.py: the weights for a share, the share of any weights, and the ELBv2 calls
against moto (in-process)."""

from __future__ import annotations

import pytest
from shift_fakes import moto_rule

from tools.shift.elb import share_of, weights_for


def test_weights_give_the_new_group_its_share_and_the_rest_in_proportion():
    assert weights_for(5, {"a": 100, "b": 0}, "b") == {"a": 95, "b": 5}
    assert weights_for(0, {"a": 75, "b": 25}, "b") == {"a": 100, "b": 0}
    three = weights_for(25, {"a": 60, "c": 30, "b": 10}, "b")
    assert three == {"a": 50, "c": 25, "b": 25}
    # every old group at 0 (the new one had it all): rolled back equally
    assert weights_for(0, {"a": 0, "c": 0, "b": 100}, "b") == {"a": 50, "c": 50, "b": 0}
    odd = weights_for(50, {"a": 1, "c": 1, "d": 1, "b": 0}, "b")
    assert sum(odd.values()) == 100 and odd["b"] == 50 and sorted(odd.values()) == [16, 17, 17, 50]


def test_share_is_read_from_any_weights():
    assert share_of({"a": 90, "b": 10}, "b") == 10
    assert share_of({"a": 2, "b": 1}, "b") == 33.33
    assert share_of({"a": 0, "b": 0}, "b") == 0


@pytest.fixture
def rule(monkeypatch):
    with moto_rule(monkeypatch) as found:
        yield found


def test_elb_finds_the_weighted_rule_reads_and_moves_its_weights(rule):
    elb, rule_arn = rule
    assert elb.find_rule("proxy-test") == rule_arn  # the default action is not a rule
    found = elb.read(rule_arn)
    assert found.weights == {"a": 100, "b": 0}
    elb.set_weights(found, weights_for(25, found.weights, "b"))
    assert elb.read(rule_arn).weights == {"a": 75, "b": 25}
