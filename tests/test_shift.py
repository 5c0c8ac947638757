"""tools/shift.py without the lab: the step plan, the weights, the verdict, the report, a whole
shift against a fake load balancer and fake logs, and the ELBv2 calls against moto (in-process)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tools import shift
from tools.shift import Figures, Sample, Thresholds, UsageError

REPO = Path(__file__).resolve().parent.parent
T = Thresholds(min_requests=100)


# --- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "steps"),
    [("5,25,50,100", (5, 25, 50, 100)), ("100", (100,)), ("10%, 50%,100%", (10, 50, 100))],
)
def test_parse_steps_accepts_rising_percentages_ending_at_100(text, steps):
    assert shift.parse_steps(text) == steps


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
        shift.parse_steps(text)


def _args(*argv: str):
    return shift.build_parser().parse_args(["--to", "b", "--load-balancer", "lb", *argv])


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
        shift.settings_from(_args(*argv), {})


def test_settings_need_a_group_and_a_rule():
    parser = shift.build_parser()
    with pytest.raises(UsageError, match="--to GROUP"):
        shift.settings_from(parser.parse_args(["--load-balancer", "x"]), {})
    with pytest.raises(UsageError, match="which rule"):
        shift.settings_from(parser.parse_args(["--to", "b"]), {})
    from_env = shift.settings_from(
        parser.parse_args([]), {"SHIFT_TO": "b", "SHIFT_LOAD_BALANCER": "proxy-lab"}
    )
    assert (from_env.to, from_env.load_balancer) == ("b", "proxy-lab")
    assert from_env.max_wait == 3 * from_env.interval


def test_bad_settings_exit_2_before_the_load_balancer_is_asked(monkeypatch, capsys):
    def no_aws():
        raise AssertionError("AWS asked despite bad settings")

    monkeypatch.setattr(shift, "elbv2_client", no_aws)
    assert shift.main(["--to", "b", "--load-balancer", "x", "--steps", "5,50"], {}) == 2
    assert "--steps '5,50'" in capsys.readouterr().err


# --- weights and plan -----------------------------------------------------------------------------


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
    assert shift.plan_steps((5, 25, 50, 100), current) == plan


def test_weights_give_the_new_group_its_share_and_the_rest_in_proportion():
    assert shift.weights_for(5, {"a": 100, "b": 0}, "b") == {"a": 95, "b": 5}
    assert shift.weights_for(0, {"a": 75, "b": 25}, "b") == {"a": 100, "b": 0}
    three = shift.weights_for(25, {"a": 60, "c": 30, "b": 10}, "b")
    assert three == {"a": 50, "c": 25, "b": 25}
    # every old group at 0 (the new one had it all): rolled back equally
    assert shift.weights_for(0, {"a": 0, "c": 0, "b": 100}, "b") == {"a": 50, "c": 50, "b": 0}
    odd = shift.weights_for(50, {"a": 1, "c": 1, "d": 1, "b": 0}, "b")
    assert sum(odd.values()) == 100 and odd["b"] == 50 and sorted(odd.values()) == [16, 17, 17, 50]


def test_share_is_read_from_any_weights():
    assert shift.share_of({"a": 90, "b": 10}, "b") == 10
    assert shift.share_of({"a": 2, "b": 1}, "b") == 33.33
    assert shift.share_of({"a": 0, "b": 0}, "b") == 0


# --- figures and verdict --------------------------------------------------------------------------


def _samples(n: int, success: float, first_fail: float, seconds: float = 0.004, seed: int = 1):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        first_failed = rng.random() < first_fail
        out.append(Sample(rng.random() < success, first_failed, seconds * rng.uniform(0.5, 1.5)))
    return out


def test_figures_count_success_first_attempts_and_p99():
    samples = [Sample(True, False, 0.001 * i) for i in range(1, 100)]
    samples += [Sample(False, True, 1.0), Sample(True, None, 0.0)]  # one failure, one not proxied
    fig = shift.figures_of(samples)
    assert (fig.requests, fig.ok, fig.reached_backend, fig.first_failed) == (101, 100, 100, 1)
    assert fig.p99 == pytest.approx(0.099)
    assert shift.percentile([], 99) is None and shift.percentile([3.0], 99) == 3.0


def test_equal_groups_pass_over_many_seeds():
    """A healthy new group is not rolled back by chance: the noise allowance at work."""
    for seed in range(200):
        old = shift.figures_of(_samples(2000, 0.999, 0.2, seed=seed))
        new = shift.figures_of(_samples(120, 0.999, 0.2, seed=seed + 1000))
        assert shift.verdict(new, old, T).outcome == "pass", seed


def test_new_group_failing_one_request_in_five_fails_on_client_success():
    old = shift.figures_of(_samples(2000, 0.9997, 0.2))
    new = shift.figures_of(_samples(120, 0.8, 0.2, seed=2))
    v = shift.verdict(new, old, T)
    assert v.outcome == "fail"
    assert v.reasons[0].startswith("client success 7") and "against 100.00%" in v.reasons[0]


def test_first_attempt_failures_and_p99_are_judged_too():
    old = shift.figures_of(_samples(2000, 1.0, 0.2))
    broken_upstream = shift.figures_of(_samples(300, 1.0, 0.9, seed=3))
    assert "first-attempt failure" in shift.verdict(broken_upstream, old, T).reasons[0]
    slow = shift.figures_of(_samples(300, 1.0, 0.2, seconds=0.5, seed=4))
    reasons = shift.verdict(slow, old, T).reasons
    assert len(reasons) == 1 and reasons[0].startswith("p99 latency")


def test_requests_nginx_answers_itself_count_against_the_new_group():
    """A rate limit keyed on the load balancer: 429s are a success for the report, but the new
    group reaches the backend for fewer of the same requests."""
    old = shift.figures_of(_samples(2000, 1.0, 0.2))
    limited = [Sample(True, None, 0.0)] * 60 + _samples(240, 1.0, 0.2, seed=5)
    reasons = shift.verdict(shift.figures_of(limited), old, T).reasons
    assert len(reasons) == 1 and reasons[0].startswith("answered without a backend 20.00%")


def test_too_few_requests_give_no_verdict():
    old = shift.figures_of(_samples(2000, 1.0, 0.2))
    v = shift.verdict(shift.figures_of(_samples(99, 0.0, 1.0)), old, T)
    assert v.outcome == "insufficient"
    assert v.reasons == ("new group: 99 requests, 100 needed",)


LINE = {
    "time": "2026-11-29T14:40:03+00:00",
    "request_id": "x",
    "remote_addr": "10.77.0.40",
    "method": "GET",
    "uri": "/pets/1",
    "path": "/pets/1",
    "status": 200,
    "request_time": 0.012,
    "upstream_status": "502, 200",
    "upstream_addr": "10.77.0.10:8080, 10.77.0.10:8080",
    "blocked": 0,
}


def test_a_log_line_becomes_a_sample_with_the_reports_meaning():
    when, sample = shift.sample_of(json.dumps(LINE).encode())
    assert when == datetime(2026, 11, 29, 14, 40, 3, tzinfo=UTC)
    assert sample == Sample(client_ok=True, first_failed=True, seconds=0.012)
    assert shift.sample_of(json.dumps({**LINE, "blocked": 1, "status": 404})) is None
    assert shift.sample_of(b"not json\n") is None and shift.sample_of(b"\n") is None
    answered_by_nginx = shift.sample_of(
        json.dumps({**LINE, "upstream_status": "", "upstream_addr": ""})
    )
    assert answered_by_nginx[1].first_failed is None


def test_window_takes_whole_seconds_from_start_to_before_end():
    start = datetime(2026, 11, 29, 14, 40, 3, tzinfo=UTC)
    lines = [
        json.dumps({**LINE, "time": (start + timedelta(seconds=s)).isoformat()})
        for s in (-1, 0, 1, 4, 5)
    ]
    assert len(shift.in_window(lines, start, start + timedelta(seconds=5))) == 3


# --- a whole shift, with a fake load balancer and fake logs ---------------------------------------


class FakeElb:
    def __init__(self, weights: dict[str, int]) -> None:
        self.weights = dict(weights)
        self.history: list[dict[str, int]] = []
        self.fail_modify = False

    def read(self, rule_arn: str) -> shift.RuleGroups:
        return shift.RuleGroups(
            rule_arn, {g: f"arn:{g}" for g in self.weights}, dict(self.weights), {}
        )

    def set_weights(self, rule, weights) -> None:
        self.weights = dict(weights)
        self.history.append(dict(weights))


class FakeFleet:
    """Traffic of 2000 requests a window, split by the fake load balancer's weights; the new
    group succeeds with NEW_SUCCESS."""

    def __init__(self, elb: FakeElb, new_success: float, fail_at: int | None = None) -> None:
        self.elb, self.new_success, self.reads, self.fail_at = elb, new_success, 0, fail_at
        self.logs = {"a": [], "b": []}

    def marks(self):
        return {}

    def samples(self, group, marks, start, end):
        self.reads += 1
        if self.fail_at is not None and self.reads >= self.fail_at:
            raise shift.ShiftError("proxy-3: `sudo -n tail` exited 1: no such file")
        share = self.elb.weights[group] / sum(self.elb.weights.values())
        rate = self.new_success if group == "b" else 0.9997
        return _samples(int(2000 * share), rate, 0.2, seed=self.reads)

    def close(self):
        pass


def _shift(tmp_path: Path, elb: FakeElb, fleet: FakeFleet, *argv: str) -> shift.Shift:
    settings = shift.settings_from(
        _args("--interval", "5", "--settle", "0", "--report", str(tmp_path / "r"), *argv), {}
    )
    clock = [datetime(2026, 11, 29, 14, 0, tzinfo=UTC)]

    def sleep(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)

    report = shift.Report(
        rule_arn="arn:rule",
        new_group="b",
        old_groups=["a"],
        hosts={"a": ["proxy-1", "proxy-2"], "b": ["proxy-3"]},
        thresholds=settings.thresholds,
        started=clock[0],
        initial_weights=dict(elb.weights),
    )
    rule = elb.read("arn:rule")
    return shift.Shift(settings, elb, rule, fleet, report, sleep, lambda: clock[0], lambda s: None)


def test_healthy_group_goes_through_every_step_to_100(tmp_path):
    elb = FakeElb({"a": 100, "b": 0})
    run = _shift(tmp_path, elb, FakeFleet(elb, 0.9997), "--min-requests", "50")
    assert run.run() == shift.EXIT_OK
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
    run = _shift(tmp_path, elb, FakeFleet(elb, 0.8), "--min-requests", "50")
    assert run.run() == shift.EXIT_ROLLED_BACK
    assert elb.history == [{"a": 95, "b": 5}, {"a": 100, "b": 0}]
    assert run.report.outcome == "rolled-back"
    assert run.report.reason.startswith("step 5%: client success")
    text = shift.render_text(run.report)
    assert "ROLLED-BACK" in text and "new b" in text and "old" in text


def test_too_little_traffic_waits_up_to_max_wait_then_rolls_back(tmp_path):
    elb = FakeElb({"a": 100, "b": 0})
    fleet = FakeFleet(elb, 0.9997)
    run = _shift(tmp_path, elb, fleet, "--min-requests", "500", "--max-wait", "12")
    assert run.run() == shift.EXIT_ROLLED_BACK
    assert fleet.reads == 3 * 2  # windows of 5, 10, 12 s; two groups read each time
    assert "not enough traffic in 12s" in run.report.reason
    assert elb.weights == {"a": 100, "b": 0}


def test_rerun_after_a_kill_resumes_from_the_weights_it_reads(tmp_path):
    elb = FakeElb({"a": 75, "b": 25})  # what a shift killed during its 25% window leaves
    run = _shift(tmp_path, elb, FakeFleet(elb, 0.9997), "--min-requests", "50")
    assert run.run() == shift.EXIT_OK
    assert [s.share for s in run.report.steps] == [25, 50, 100]
    assert elb.history == [{"a": 50, "b": 50}, {"a": 0, "b": 100}]  # 25% was there already


def test_already_at_100_changes_nothing(tmp_path):
    elb = FakeElb({"a": 0, "b": 100})
    run = _shift(tmp_path, elb, FakeFleet(elb, 0.9997))
    assert run.run() == shift.EXIT_OK and elb.history == []
    assert run.report.reason == "already at 100%"


def test_report_text_has_both_groups_at_each_step(tmp_path):
    elb = FakeElb({"a": 100, "b": 0})
    run = _shift(tmp_path, elb, FakeFleet(elb, 0.9997), "--min-requests", "50")
    run.run()
    run.report.final_weights = elb.weights
    text = shift.render_text(run.report)
    rows = [line for line in text.splitlines() if " new b " in line or " old " in line]
    assert len(rows) == 8
    assert "(baseline: step 50%)" in text
    assert "proxies: a: proxy-1, proxy-2; b: proxy-3" in text


# --- the ELBv2 calls, against moto in-process -----------------------------------------------------


@pytest.fixture
def moto_rule(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        ec2 = boto3.client("ec2")
        elb = boto3.client("elbv2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=zone)[
                "Subnet"
            ]["SubnetId"]
            for i, zone in enumerate(("eu-west-1a", "eu-west-1b"))
        ]
        lb = elb.create_load_balancer(Name="proxy-test", Subnets=subnets)["LoadBalancers"][0]
        tgs = [
            elb.create_target_group(
                Name=f"proxy-test-{g}",
                Protocol="HTTP",
                Port=80,
                VpcId=vpc,
                Tags=[{"Key": "ProxyGroup", "Value": g}],
            )["TargetGroups"][0]["TargetGroupArn"]
            for g in ("a", "b")
        ]
        forward = {
            "Type": "forward",
            "ForwardConfig": {
                "TargetGroups": [
                    {"TargetGroupArn": tgs[0], "Weight": 100},
                    {"TargetGroupArn": tgs[1], "Weight": 0},
                ]
            },
        }
        listener = elb.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"],
            Protocol="HTTP",
            Port=80,
            DefaultActions=[forward],
        )["Listeners"][0]
        rule = elb.create_rule(
            ListenerArn=listener["ListenerArn"],
            Priority=100,
            Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/*"]}}],
            Actions=[forward],
        )["Rules"][0]["RuleArn"]
        yield shift.Elb(elb), rule


def test_elb_finds_the_weighted_rule_reads_and_moves_its_weights(moto_rule):
    elb, rule_arn = moto_rule
    assert elb.find_rule("proxy-test") == rule_arn  # the default action is not a rule
    rule = elb.read(rule_arn)
    assert rule.weights == {"a": 100, "b": 0}
    elb.set_weights(rule, shift.weights_for(25, rule.weights, "b"))
    assert elb.read(rule_arn).weights == {"a": 75, "b": 25}


def test_rollback_option_puts_the_new_group_to_zero_and_writes_the_report(
    moto_rule, tmp_path, monkeypatch
):
    elb, rule_arn = moto_rule
    elb.set_weights(elb.read(rule_arn), {"a": 50, "b": 50})
    monkeypatch.setattr(shift, "elbv2_client", lambda: elb.client)
    argv = ["--to", "b", "--rule-arn", rule_arn, "--rollback", "--report", str(tmp_path / "r")]
    assert shift.main(argv, {}) == shift.EXIT_OK
    assert elb.read(rule_arn).weights == {"a": 100, "b": 0}
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["outcome"] == "rollback" and data["final_weights"] == {"a": 100, "b": 0}


def test_unknown_group_is_refused_before_anything_moves(moto_rule, monkeypatch, capsys):
    elb, rule_arn = moto_rule
    monkeypatch.setattr(shift, "elbv2_client", lambda: elb.client)
    assert shift.main(["--to", "c", "--rule-arn", rule_arn], {}) == shift.EXIT_USAGE
    assert "--to c: not a group of the rule (a, b)" in capsys.readouterr().err
    assert elb.read(rule_arn).weights == {"a": 100, "b": 0}


def test_figures_json_carries_the_rates():
    data = Figures(requests=10, ok=9, reached_backend=10, first_failed=2, p99=0.01).to_json()
    assert data["success_rate"] == 0.9 and data["first_attempt_failure_rate"] == 0.2


# --- make shift ----------------------------------------------------------------------------------


def _make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-n", "shift", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_make_shift_passes_its_variables_to_the_tool():
    done = _make("TO=b", "STEPS=5,25,100", "INTERVAL=30", "ROLLBACK=false")
    assert done.returncode == 0, done.stderr
    command = " ".join(done.stdout.replace("\\\n", " ").split())
    assert "-m tools.shift --to b --steps 5,25,100 --interval 30" in command
    assert "--rollback" not in command
    assert "--rollback" in _make("TO=b", "ROLLBACK=true").stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
@pytest.mark.parametrize(
    "value",
    ["TO=b;touch {m}", "TO=$(shell touch {m})", "STEPS=5,100|touch {m}", "INTERVAL=`touch {m}`"],
)
def test_make_shift_refuses_injections_before_anything_runs(tmp_path, value):
    marker = tmp_path / "pwned"
    done = _make(value.format(m=marker))
    assert done.returncode != 0 and "refused: must be" in done.stderr, done.stderr
    assert not marker.exists()
