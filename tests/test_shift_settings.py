"""tools/shift/settings.py: the step list and every option, refused with the option named."""

from __future__ import annotations

import pytest
from shift_fakes import args

from tools.shift.cli import build_parser
from tools.shift.errors import UsageError
from tools.shift.settings import parse_steps, settings_from


@pytest.mark.parametrize(
    ("text", "steps"),
    [("5,25,50,100", (5, 25, 50, 100)), ("100", (100,)), ("10%, 50%,100%", (10, 50, 100))],
)
def test_parse_steps_accepts_rising_percentages_ending_at_100(text, steps):
    assert parse_steps(text) == steps


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("5,25,50", "last step must be 100"),
        ("5,5,100", "must rise"),
        ("50,25,100", "must rise"),
        ("0,100", "from 1 to 100"),
        ("5,x,100", "whole percentages"),
        ("5.5,100", "whole percentages"),
        ("", "whole percentages"),
    ],
)
def test_parse_steps_refuses_bad_lists_naming_the_option(text, why):
    with pytest.raises(UsageError, match=f"--steps.*{why}"):
        parse_steps(text)


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--interval", "0"], "--interval 0.0"),
        (["--interval", "10", "--max-wait", "5"], "--max-wait 5.0"),
        (["--min-requests", "0"], "--min-requests 0"),
        (["--success-margin", "1.5"], "--success-margin 1.5"),
        (["--p99-ratio", "0.5"], "--p99-ratio 0.5"),
        (["--settle", "-1"], "--settle -1.0"),
        (["--rule-arn", "arn:aws:elasticloadbalancing:x:1:targetgroup/a/1"], "not a listener"),
        (["--report", "/no/such/dir/r"], "--report"),
    ],
)
def test_bad_settings_are_refused_with_the_option_named(argv, why):
    with pytest.raises(UsageError, match=why):
        settings_from(args(*argv), {})


def test_settings_need_a_group_and_a_rule():
    parser = build_parser()
    with pytest.raises(UsageError, match="--to GROUP"):
        settings_from(parser.parse_args(["--load-balancer", "x"]), {})
    with pytest.raises(UsageError, match="which rule"):
        settings_from(parser.parse_args(["--to", "b"]), {})
    from_env = settings_from(
        parser.parse_args([]), {"SHIFT_TO": "b", "SHIFT_LOAD_BALANCER": "proxy-lab"}
    )
    assert (from_env.to, from_env.load_balancer) == ("b", "proxy-lab")
    assert from_env.max_wait == 3 * from_env.interval
