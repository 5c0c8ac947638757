"""Unit tests of tools/rollout/lb_health.py and its settings: the target group ARNs (options,
environment, Terraform's JSON output), reading DescribeTargetHealth, waiting for the load
balancer's view with a fake client, AWS errors as messages (moto in-process, no network), and
the gate and the commands with target groups."""

from __future__ import annotations

import pytest
from rollout_fakes import (
    HOSTS,
    LOCAL,
    Recorder,
    gate_settings,
    run_main,
    server_fixture,  # noqa: F401 (the fixture `server`)
    settings,
)

from tools.rollout.commands import gate_host
from tools.rollout.errors import EXIT_ERROR, EXIT_FAILED, EXIT_OK, EXIT_USAGE, RolloutError
from tools.rollout.hosts import Host
from tools.rollout.lb_health import (
    TargetState,
    describe_target_health,
    lb_gate,
    lb_verdict,
    parse_target_health,
)
from tools.rollout.settings import Settings, parse_target_group_arns

ARN_A = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/proxies-a/0123456789abcdef"
ARN_B = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/proxies-b/fedcba9876543210"
PROXY = Host("proxy-2", "10.0.0.12", "i-0123456789abcdef0")
HEALTHY = TargetState("healthy")
UNHEALTHY = TargetState("unhealthy", "Target.FailedHealthChecks", "Health checks failed")
INITIAL = TargetState("initial", "Elb.InitialHealthChecking", "Initial health checks in progress")


# --- Settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        f"{ARN_A},{ARN_B}",
        f" {ARN_A}  {ARN_B} ",
        f'{{"a": "{ARN_A}", "b": "{ARN_B}"}}',  # terraform output -json target_group_arns
        f'["{ARN_A}", "{ARN_B}", "{ARN_A}"]',
    ],
)
def test_target_group_arns_lists_and_terraform_json(value):
    assert parse_target_group_arns("ROLLOUT_TARGET_GROUP_ARNS", value) == (ARN_A, ARN_B)


@pytest.mark.parametrize(
    "value",
    ["proxies-a", "arn:aws:ec2:eu-west-1:1:instance/i-1", '{"a": 1}', "{not json", " , "],
)
def test_target_group_arns_bad_value_names_the_key(value):
    with pytest.raises(RolloutError) as e:
        parse_target_group_arns("ROLLOUT_TARGET_GROUP_ARNS", value)
    assert e.value.exit_code == EXIT_USAGE
    assert "ROLLOUT_TARGET_GROUP_ARNS=" in str(e.value)


def test_target_group_arn_option_repeatable_and_beats_the_environment():
    env = {"ROLLOUT_TARGET_GROUP_ARNS": ARN_B}
    assert settings([], env).target_group_arns == (ARN_B,)
    both = ["--target-group-arn", ARN_A, "--target-group-arn", ARN_B]
    assert settings(both, env).target_group_arns == (ARN_A, ARN_B)
    assert settings([], {}).target_group_arns == ()


# --- Reading DescribeTargetHealth and judging one look --------------------------------------------


def test_parse_target_health_keeps_state_reason_and_description():
    response = {
        "TargetHealthDescriptions": [
            {"Target": {"Id": "i-1", "Port": 80}, "TargetHealth": {"State": "healthy"}},
            {
                "Target": {"Id": "i-2", "Port": 80},
                "TargetHealth": {
                    "State": "unhealthy",
                    "Reason": "Target.FailedHealthChecks",
                    "Description": "Health checks failed",
                },
            },
        ]
    }
    assert parse_target_health(response) == {"i-1": HEALTHY, "i-2": UNHEALTHY}


def test_verdict_healthy_in_every_group_it_is_in():
    final, ok, details = lb_verdict(PROXY, {ARN_A: {PROXY.instance_id: HEALTHY}, ARN_B: {}})
    assert (final, ok) == (True, True)
    assert details == ("load balancer: target group proxies-a: healthy",)


def test_verdict_unhealthy_in_one_group_is_not_final_and_says_why():
    groups = {ARN_A: {PROXY.instance_id: HEALTHY}, ARN_B: {PROXY.instance_id: UNHEALTHY}}
    final, ok, details = lb_verdict(PROXY, groups)
    assert (final, ok) == (False, False)
    assert (
        "load balancer: target group proxies-b: unhealthy (Target.FailedHealthChecks, "
        "Health checks failed)"
    ) in details


def test_verdict_not_registered_anywhere_is_a_final_failure_naming_the_groups():
    final, ok, details = lb_verdict(PROXY, {ARN_A: {"i-other": HEALTHY}})
    assert (final, ok) == (True, False)
    assert PROXY.instance_id in details[0] and "registered in none" in details[0]
    assert ARN_A in details[0]


def test_verdict_host_without_instance_id_is_a_final_failure():
    final, ok, details = lb_verdict(Host("proxy-9", "10.0.0.9"), {ARN_A: {}})
    assert (final, ok) == (True, False)
    assert "ec2_instance_id" in details[0]


# --- Waiting, with a fake client ----------------------------------------------------------------


class FakeElb:
    """Answers each look with the next states of PROXY in group A (the last one repeats)."""

    def __init__(self, *states: TargetState) -> None:
        self.states = list(states)
        self.looks = 0
        self.slept: list[float] = []

    def fetch(self, arns):
        assert tuple(arns) == (ARN_A,)
        state = self.states[min(self.looks, len(self.states) - 1)]
        self.looks += 1
        return {ARN_A: {PROXY.instance_id: state}}


LB_SETTINGS = Settings(target_group_arns=(ARN_A,), health_attempts=4, health_interval=2.0)


def test_lb_gate_waits_until_the_load_balancer_sees_it_healthy():
    elb = FakeElb(INITIAL, UNHEALTHY, HEALTHY)
    result = lb_gate(PROXY, LB_SETTINGS, fetch=elb.fetch, sleep=elb.slept.append)
    assert result.ok and result.attempts == 3
    assert elb.slept == [2.0, 2.0]


def test_lb_gate_fails_after_its_attempts_with_the_reason_aws_gives():
    elb = FakeElb(UNHEALTHY)
    result = lb_gate(PROXY, LB_SETTINGS, fetch=elb.fetch, sleep=elb.slept.append)
    assert not result.ok and result.attempts == 4 and elb.looks == 4
    assert result.details == (
        "load balancer: target group proxies-a: unhealthy (Target.FailedHealthChecks, "
        "Health checks failed)",
    )
    assert elb.slept == [2.0, 2.0, 2.0]  # none after the last look


def test_lb_gate_does_not_wait_for_a_host_registered_nowhere():
    elb = FakeElb()
    result = lb_gate(PROXY, LB_SETTINGS, fetch=lambda arns: {ARN_A: {}}, sleep=elb.slept.append)
    assert not result.ok and result.attempts == 1 and elb.slept == []


def test_gate_probe_passes_but_load_balancer_does_not(server):
    port, handler = server
    handler.script = {"/healthz": [200], "/readyz": [200]}
    local = Host(LOCAL.name, LOCAL.address, PROXY.instance_id)
    gated = gate_settings(port, target_group_arns=(ARN_A,), health_attempts=2)
    result = gate_host(local, gated, fetch=FakeElb(UNHEALTHY).fetch)
    assert not result.ok
    assert any(d.endswith("/readyz answered 200") for d in result.details)
    assert result.details[-1].startswith("load balancer: target group proxies-a: unhealthy")


def test_gate_without_target_groups_is_the_probe_alone(server):
    port, handler = server
    handler.script = {"/healthz": [200], "/readyz": [200]}

    def no_call(arns):
        raise AssertionError("no target group given: AWS must not be asked")

    assert gate_host(LOCAL, gate_settings(port), fetch=no_call).ok


# --- AWS errors are messages (moto in-process: no network) ----------------------------------------


@pytest.fixture
def aws(monkeypatch):
    for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask 169.254.169.254
    # Whatever happens, nothing leaves the machine: a closed port on loopback.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


def test_unknown_target_group_is_exit_4_with_aws_message(aws, monkeypatch):
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # mock_aws answers AWS's own URLs, in-process
    with mock_aws(), pytest.raises(RolloutError) as e:
        describe_target_health([ARN_A])
    assert e.value.exit_code == EXIT_ERROR
    assert str(e.value).startswith(f"DescribeTargetHealth of {ARN_A} failed: TargetGroupNotFound")
    assert "target_group_arns" in str(e.value)


def test_no_credentials_is_exit_4_naming_the_problem(aws, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(RolloutError) as e:
        describe_target_health([ARN_A])
    assert e.value.exit_code == EXIT_ERROR
    assert "NoCredentialsError: Unable to locate credentials" in str(e.value)


# --- The commands with target groups --------------------------------------------------------------


def registered(*hosts: Host, state: TargetState = HEALTHY):
    return lambda arns: {ARN_A: {h.instance_id: state for h in hosts}}


FLEET = [Host(h.name, h.address, f"i-{n:017x}") for n, h in enumerate(HOSTS, 1)]


def test_main_refuses_hosts_outside_the_target_groups_before_touching_any(capsys):
    groups = registered(*FLEET[:3])
    code, rec = run_main(["deploy", "--target-group-arn", ARN_A], hosts=FLEET, target_health=groups)
    assert code == EXIT_USAGE
    assert rec.deployed == [] and rec.gated == []
    err = capsys.readouterr().err
    assert "not registered in the load balancer's target group(s)" in err
    assert f"proxy-a-4 ({FLEET[3].instance_id}), proxy-a-5 ({FLEET[4].instance_id})" in err


def test_main_with_registered_hosts_runs_as_before():
    groups = registered(*FLEET)
    code, rec = run_main(["verify", "--target-group-arn", ARN_A], hosts=FLEET, target_health=groups)
    assert code == EXIT_OK and rec.gated == [h.name for h in FLEET]
    code, rec = run_main(
        ["verify", "--target-group-arn", ARN_A],
        hosts=FLEET,
        rec=Recorder(unhealthy=["proxy-a-2"]),
        target_health=groups,
    )
    assert code == EXIT_FAILED


def test_main_dry_plan_names_the_target_groups(capsys):
    groups = registered(*FLEET)
    code, _ = run_main(
        ["deploy", "--dry", "--target-group-arn", ARN_A], hosts=FLEET, target_health=groups
    )
    assert code == EXIT_OK
    assert f"and healthy in the load balancer's target group(s) {ARN_A}" in capsys.readouterr().out


# --- The load balancer by name (--load-balancer, ROLLOUT_LOAD_BALANCER) ---------------------------


@pytest.mark.parametrize("name", ["proxy-production", "a", "x" * 32, " proxy-lab "])
def test_load_balancer_name_as_elbv2_allows_it(name):
    assert settings(["--load-balancer", name], {}).load_balancer == name.strip()


@pytest.mark.parametrize("name", ["-proxy", "proxy-", "x" * 33, "proxy_lab", "arn:aws:x", "a b"])
def test_bad_load_balancer_name_names_the_key_and_what_is_allowed(name):
    with pytest.raises(RolloutError) as e:
        settings([], {"ROLLOUT_LOAD_BALANCER": name})
    assert e.value.exit_code == EXIT_USAGE
    assert "ROLLOUT_LOAD_BALANCER=" in str(e.value) and "1 to 32 letters" in str(e.value)


def test_target_groups_and_load_balancer_at_one_level_are_refused():
    with pytest.raises(RolloutError, match="give one of them, not both") as e:
        settings([], {"ROLLOUT_TARGET_GROUP_ARNS": ARN_A, "ROLLOUT_LOAD_BALANCER": "proxy-prod"})
    assert "set ROLLOUT_LOAD_BALANCER empty" in str(e.value)
    with pytest.raises(RolloutError, match="give one of them, not both"):
        settings(["--target-group-arn", ARN_A, "--load-balancer", "proxy-prod"], {})


def test_the_command_line_beats_the_environment_across_the_two_settings():
    cli_arns = settings(["--target-group-arn", ARN_A], {"ROLLOUT_LOAD_BALANCER": "proxy-prod"})
    assert (cli_arns.target_group_arns, cli_arns.load_balancer) == ((ARN_A,), None)
    cli_lb = settings(["--load-balancer", "proxy-prod"], {"ROLLOUT_TARGET_GROUP_ARNS": ARN_A})
    assert (cli_lb.target_group_arns, cli_lb.load_balancer) == ((), "proxy-prod")
    # an empty variable (CI's way of leaving one unset) is no setting at all
    empty = settings([], {"ROLLOUT_TARGET_GROUP_ARNS": ARN_A, "ROLLOUT_LOAD_BALANCER": " "})
    assert (empty.target_group_arns, empty.load_balancer) == ((ARN_A,), None)


def test_main_gates_on_every_target_group_of_the_named_load_balancer(capsys):
    asked = []

    def groups_of(name):
        asked.append(name)
        return (ARN_A, ARN_B)

    code, rec = run_main(
        ["verify"],
        env={"ROLLOUT_LOAD_BALANCER": "proxy-prod"},
        hosts=FLEET,
        target_health=registered(*FLEET),
        lb_target_groups=groups_of,
    )
    assert code == EXIT_OK and asked == ["proxy-prod"]
    assert rec.gated_groups == {(ARN_A, ARN_B)}
    out = capsys.readouterr().out
    assert "target group(s) proxies-a, proxies-b of load balancer proxy-prod" in out


def test_main_with_a_load_balancer_refuses_unregistered_hosts_naming_it(capsys):
    code, rec = run_main(
        ["canary", "--load-balancer", "proxy-prod"],
        hosts=FLEET,
        target_health=lambda arns: {ARN_A: {}},
        lb_target_groups=lambda name: (ARN_A,),
    )
    assert code == EXIT_USAGE and rec.deployed == []
    err = capsys.readouterr().err
    assert "target group(s) proxies-a of load balancer proxy-prod" in err
    assert "(--load-balancer / ROLLOUT_LOAD_BALANCER)" in err


def test_drift_detection_never_looks_the_load_balancer_up():
    def no_call(name):
        raise AssertionError("drift looked up the load balancer")

    code, _ = run_main(
        ["drift"], env={"ROLLOUT_LOAD_BALANCER": "proxy-prod"}, lb_target_groups=no_call
    )
    assert code == EXIT_OK


def elbv2_with_two_groups():
    """A load balancer with a listener to group a and a weighted rule to a and b (as Terraform's
    lb.tf), and a third group on no load balancer; in moto, in-process."""
    import boto3

    ec2 = boto3.client("ec2", region_name="eu-west-1")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"eu-west-1{z}")
        for i, z in ((1, "a"), (2, "b"))
    ]
    elb = boto3.client("elbv2", region_name="eu-west-1")
    lb = elb.create_load_balancer(
        Name="proxy-prod", Subnets=[s["Subnet"]["SubnetId"] for s in subnets]
    )["LoadBalancers"][0]["LoadBalancerArn"]
    arns = {
        name: elb.create_target_group(Name=name, Protocol="HTTP", Port=80, VpcId=vpc)[
            "TargetGroups"
        ][0]["TargetGroupArn"]
        for name in ("proxy-prod-a", "proxy-prod-b", "elsewhere")
    }
    forward = {"Type": "forward", "TargetGroupArn": arns["proxy-prod-a"]}
    listener = elb.create_listener(
        LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=[forward]
    )["Listeners"][0]["ListenerArn"]
    weighted = {
        "Type": "forward",
        "ForwardConfig": {
            "TargetGroups": [
                {"TargetGroupArn": arns["proxy-prod-a"], "Weight": 100},
                {"TargetGroupArn": arns["proxy-prod-b"], "Weight": 0},
            ]
        },
    }
    elb.create_rule(
        ListenerArn=listener,
        Priority=10,
        Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
        Actions=[weighted],
    )
    return arns


def test_target_groups_of_a_load_balancer_by_name(aws, monkeypatch):
    from moto import mock_aws

    from tools.rollout.lb_health import target_groups_of

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # mock_aws answers AWS's own URLs, in-process
    with mock_aws():
        arns = elbv2_with_two_groups()
        found = target_groups_of("proxy-prod")
        assert found == tuple(sorted([arns["proxy-prod-a"], arns["proxy-prod-b"]]))
        with pytest.raises(RolloutError) as e:
            target_groups_of("proxy-staging")
    assert e.value.exit_code == EXIT_ERROR
    message = str(e.value)
    assert message.startswith("load balancer proxy-staging (--load-balancer / ROLLOUT_LOAD_BAL")
    assert "LoadBalancerNotFound" in message and "in eu-west-1: Terraform names it" in message


def test_target_groups_of_without_a_region_says_which_variable(aws, monkeypatch):
    from tools.rollout.lb_health import target_groups_of

    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(RolloutError, match="no AWS region: set AWS_DEFAULT_REGION"):
        target_groups_of("proxy-prod")
