"""The traffic shift on the lab (issue 15): the weights live in the fake AWS's ELBv2 rule, the lab's
load balancer (lab/lb.py) applies them to the loadgen's traffic, and `python -m tools.shift`
judges each step from the proxies' own access logs over SSH. Group a = proxy-1 and proxy-2,
group b (the new one) = proxy-3.

Traffic is bounded (one loadgen connection, at most 40 s a test), steps are short (2 s to
settle, 3 s judged, at least 80 requests per group): the four tests take about a minute and a half.

LAB_STAGE 42: after the rollout tests, with the fleet converged; proxy-3 is deployed back to the
lab's settings after the failing-group test, and the weights put back to a=100 b=0 after each.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import REPO, run_deploy
from lab_hosts import ci_job

from lab import config, core, fakeaws
from lab import lb as lab_lb

pytestmark = pytest.mark.lab
LAB_STAGE = 42

URL = f"http://{config.LB_ADDRESS}/pets/1"
SHORT = ["--interval", "3", "--settle", "2", "--min-requests", "80", "--max-wait", "9"]
MARGIN = 0.005  # the shift's default --success-margin


def shift(lab_env: dict[str, str], report: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.shift", "--to", "b", "--report", str(report), *args],
        cwd=REPO,
        env=lab_env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def rule_weights() -> dict[str, int]:
    """The weighted rule's weights as the fake ELBv2 has them now, by ProxyGroup tag."""
    elb = fakeaws.elbv2_client()
    rule = lab_lb.read_state()["rule_arn"]
    forward = elb.describe_rules(RuleArns=[rule])["Rules"][0]["Actions"][0]["ForwardConfig"]
    arns = [tg["TargetGroupArn"] for tg in forward["TargetGroups"]]
    tags = elb.describe_tags(ResourceArns=arns)["TagDescriptions"]
    group = {d["ResourceArn"]: d["Tags"][0]["Value"] for d in tags}
    return {group[tg["TargetGroupArn"]]: tg["Weight"] for tg in forward["TargetGroups"]}


def traffic(seconds: float):
    """Bounded background traffic through the lab's load balancer; a future of its counts."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(core.traffic, "loadgen", URL, 10**6, 1, max_seconds=seconds)
    pool.shutdown(wait=False)
    time.sleep(1.0)
    return future


@pytest.fixture
def at_zero(deployed, lab_env, tmp_path):
    """The rule at a=100 b=0 (the lab's seed), the backend failing 20%; put back afterwards."""
    core.backend_control("/reset", {"fail_rate": 0.2})
    assert shift(lab_env, tmp_path / "reset", "--rollback").returncode == 0
    assert rule_weights() == {"a": 100, "b": 0}
    yield
    done = shift(lab_env, tmp_path / "reset", "--rollback")
    assert done.returncode == 0, done.stderr
    assert rule_weights() == {"a": 100, "b": 0}


def test_healthy_group_takes_every_step_to_100_with_both_groups_in_the_report(
    at_zero, lab_env, tmp_path
):
    load = traffic(32)
    done = shift(lab_env, tmp_path / "shift", *SHORT)
    result = load.result()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "shift.json").read_text())
    print((tmp_path / "shift.txt").read_text())
    print(f"clients over the whole test: {result}")
    assert report["outcome"] == "completed"
    assert report["hosts"] == {"a": ["proxy-1", "proxy-2"], "b": ["proxy-3"]}
    assert [s["share"] for s in report["steps"]] == [5, 25, 50, 100]
    for step in report["steps"]:
        assert step["verdict"] == "pass", step
        assert step["new"]["requests"] >= 80 and step["old"]["requests"] >= 80, step
    # the share the load balancer gave each group follows the weights (5%: 1 in 20)
    first = report["steps"][0]
    share = first["new"]["requests"] / (first["new"]["requests"] + first["old"]["requests"])
    assert 0.02 < share < 0.10, first
    assert report["steps"][-1]["baseline"] == "step 50%"
    assert rule_weights() == {"a": 0, "b": 100}
    applied = lab_lb.read_state()
    assert applied["weights"] == {"a": 0, "b": 100}
    assert result["success_rate"] > 0.995, result


def test_group_failing_real_requests_rolls_back_at_the_first_step(
    at_zero, lab_env, proxies, tmp_path
):
    """proxy-3 with proxy_tries=1: its /healthz answers 200, but one request in five fails."""
    broken = run_deploy(lab_env, "--limit", "proxy-3", "--data", "proxy_tries=1")
    assert broken.returncode == 0, broken.output[-3000:]
    try:
        load = traffic(14)
        done = shift(lab_env, tmp_path / "shift", *SHORT)
        result = load.result()
    finally:
        restored = run_deploy(lab_env, "--limit", "proxy-3")
        assert restored.returncode == 0, restored.output[-3000:]
    print((tmp_path / "shift.txt").read_text())
    print(f"clients over the whole test: {result}")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "shift.json").read_text())
    assert report["outcome"] == "rolled-back"
    assert [s["share"] for s in report["steps"]] == [5]
    step = report["steps"][0]
    assert step["verdict"] == "fail"
    assert report["reason"].startswith("step 5%: client success")
    # ~0.8 against ~1.0 on 80-odd requests: 0.95 sits more than three standard errors from both
    assert step["new"]["success_rate"] < 0.95 < step["old"]["success_rate"]
    assert rule_weights() == {"a": 100, "b": 0}
    # What the clients saw over the whole test: the broken group never had more than its 5%, so
    # clients lost at most 5% of its failure rate (1 point; about 0.4 over the test's 14 s, as
    # the step lasts about 5), plus the margin for noise. A 25% step would cost five times that.
    lost_at_five_percent = 0.05 * (1 - step["new"]["success_rate"])
    assert result["success_rate"] >= step["old"]["success_rate"] - lost_at_five_percent - MARGIN, (
        result
    )


def test_shift_killed_halfway_resumes_from_the_weights_it_reads(at_zero, lab_env, tmp_path):
    load = traffic(40)
    command = [sys.executable, "-m", "tools.shift", "--to", "b", "--report", str(tmp_path / "1")]
    proc = subprocess.Popen(
        [*command, *SHORT],
        cwd=REPO,
        env=lab_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while rule_weights()["b"] != 25:
        assert proc.poll() is None and time.monotonic() < deadline, "never reached 25%"
        time.sleep(0.2)
    time.sleep(2.5)  # inside the 25% window
    proc.send_signal(signal.SIGKILL)  # by its PID: no handler, no report, no rollback
    proc.wait()
    assert rule_weights() == {"a": 75, "b": 25}  # left as it was
    again = shift(lab_env, tmp_path / "again", *SHORT)
    load.result()
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert "found b at 25%: checking it again" in again.stdout
    report = json.loads((tmp_path / "again.json").read_text())
    assert report["initial_weights"] == {"a": 75, "b": 25}
    assert [s["share"] for s in report["steps"]] == [25, 50, 100]
    assert rule_weights() == {"a": 0, "b": 100}


def test_gitlab_shift_job_finds_the_rule_by_its_default_name_and_rolls_back(at_zero, lab_env):
    """The manual `shift` job as GitLab runs it (gitlab-ci-local): SHIFT_LOAD_BALANCER's default
    proxy-$ENVIRONMENT is the lab's load balancer; SHIFT_ROLLBACK=true puts b back to 0."""
    elb = fakeaws.elbv2_client()
    rule = lab_lb.read_state()["rule_arn"]
    forward = elb.describe_rules(RuleArns=[rule])["Rules"][0]["Actions"][0]["ForwardConfig"]
    half = [{**tg, "Weight": 50} for tg in forward["TargetGroups"]]
    elb.modify_rule(
        RuleArn=rule, Actions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": half}}]
    )
    assert rule_weights() == {"a": 50, "b": 50}
    env = {k: v for k, v in lab_env.items() if k != "SHIFT_LOAD_BALANCER"}  # the job's default
    job = ci_job(env, "shift", SHIFT_TO="b", SHIFT_ROLLBACK="true")
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-2000:]
    assert rule_weights() == {"a": 100, "b": 0}
    report = json.loads((REPO / "shift-report.json").read_text())
    assert report["outcome"] == "rollback" and report["initial_weights"] == {"a": 50, "b": 50}
    for name in ("shift-report.txt", "shift-report.json"):
        (REPO / name).unlink()
