"""Tests of tools/rollout/cli.py and commands.py: every mode through `main` with fake side
effects, the exit codes in the docstring, and the real inventory's contract (through moto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rollout_fakes import (
    HOSTS,
    Recorder,
    _free_port,
    drifted_on,
    dry_run,
    run_main,
    server_fixture,  # noqa: F401 (the fixture `server`)
)

from tools import rollout
from tools.rollout.errors import EXIT_DRIFT, EXIT_ERROR, EXIT_FAILED, EXIT_OK, EXIT_USAGE

# --- The command line, with fake side effects -------------------------------------------------


def test_main_deploy_ok():
    code, rec = run_main(["deploy", "--batch-size", "2"])
    assert code == EXIT_OK
    assert rec.batches == [["proxy-a-1"], ["proxy-a-2", "proxy-a-3"], ["proxy-a-4", "proxy-a-5"]]


def test_main_deploy_batches_percentages_from_the_environment():
    code, rec = run_main(["deploy"], env={"ROLLOUT_BATCHES": "1,40%,100%"})
    assert code == EXIT_OK
    assert rec.batches == [["proxy-a-1"], ["proxy-a-2", "proxy-a-3"], ["proxy-a-4", "proxy-a-5"]]


def test_main_batches_and_batch_size_together_is_exit_2(capsys):
    code, rec = run_main(["deploy", "--batches", "1,50%", "--batch-size", "2"])
    assert code == EXIT_USAGE
    assert rec.deployed == []
    err = capsys.readouterr().err
    assert "--batches='1,50%' and --batch-size='2'" in err


def test_main_bad_batches_is_exit_2(capsys):
    code, _ = run_main(["deploy", "--batches", "0,50%"])
    assert code == EXIT_USAGE
    assert "--batches='0,50%': items are counts of 1 or more" in capsys.readouterr().err


def test_main_deploy_abort_message_names_host_and_failure(capsys):
    code, rec = run_main(["--canary", "proxy-a-3"], rec=Recorder(unhealthy={"proxy-a-1"}))
    assert code == EXIT_FAILED
    err = capsys.readouterr().err
    assert "ROLLOUT ABORTED at proxy-a-1: health gate failed" in err
    assert "readyz answered 502" in err
    assert rec.deployed == ["proxy-a-3", "proxy-a-1"]


def test_main_max_fail_percent_goes_on_and_still_exits_1(capsys):
    rec = Recorder(unhealthy={"proxy-a-2"})
    code, rec = run_main(["deploy", "--max-fail-percent", "100"], rec=rec)
    assert code == EXIT_FAILED
    assert rec.deployed == [h.name for h in HOSTS]
    err = capsys.readouterr().err
    assert "ROLLOUT FINISHED WITH FAILURES: 1 host(s) failed" in err
    assert "proxy-a-2: health gate failed" in err


def test_main_canary_deploys_one_host_only():
    code, rec = run_main(["canary", "--canary", "proxy-a-4"])
    assert code == EXIT_OK
    assert rec.deployed == ["proxy-a-4"]


def test_main_fleet_refuses_to_start_when_the_canary_is_unhealthy(capsys):
    code, rec = run_main(["fleet"], rec=Recorder(unhealthy={"proxy-a-1"}))
    assert code == EXIT_FAILED
    assert rec.deployed == []
    err = capsys.readouterr().err
    assert "ROLLOUT ABORTED at proxy-a-1: the canary is not healthy" in err


def test_main_fleet_deploys_everything_but_the_canary():
    code, rec = run_main(["fleet", "--batch-size", "2"])
    assert code == EXIT_OK
    assert rec.batches == [["proxy-a-2", "proxy-a-3"], ["proxy-a-4", "proxy-a-5"]]


def test_main_dry_deploys_nothing(capsys):
    code, rec = run_main(["deploy", "--dry"])
    assert code == EXIT_OK
    assert rec.deployed == [] and rec.gated == []
    assert "--limit proxy-a-1" in capsys.readouterr().out


def test_main_unknown_canary_is_exit_2(capsys):
    code, rec = run_main(["canary", "--canary", "nope"])
    assert code == EXIT_USAGE
    assert rec.deployed == []
    assert "'nope' is not a proxy" in capsys.readouterr().err


def test_main_no_hosts_is_exit_4():
    code, _ = run_main(["deploy"], hosts=[])
    assert code == EXIT_ERROR


def test_main_verify_checks_all_and_reports_every_unhealthy_host(capsys):
    code, rec = run_main(["verify"], rec=Recorder(unhealthy={"proxy-a-2", "proxy-a-4"}))
    assert code == EXIT_FAILED
    assert rec.gated == [h.name for h in HOSTS]
    assert rec.deployed == []
    assert "unhealthy: proxy-a-2, proxy-a-4" in capsys.readouterr().out


def test_main_drift_writes_report_and_json_and_exits_3(tmp_path):
    report = tmp_path / "drift-report.txt"
    code, rec = run_main(["drift", "--report", str(report)], dry=drifted_on("proxy-a-2"))
    assert code == EXIT_DRIFT
    assert rec.deployed == []
    text = report.read_text()
    assert text.startswith("Drift report (")
    assert "RESULT: DRIFTED - 1 of 5 hosts" in text
    assert "proxy-a-2: 1 difference(s)\n  file /etc/nginx/nginx.conf: differs\n" in text
    doc = json.loads(report.with_suffix(".json").read_text())
    assert list(doc["drifted"]) == ["proxy-a-2"]
    assert "nginx configuration" in str(doc["drifted"]["proxy-a-2"])


def test_main_drift_clean_exits_0(tmp_path):
    code, _ = run_main(["drift", "--report", str(tmp_path / "r.txt")])
    assert code == EXIT_OK
    assert "IN STEP" in (tmp_path / "r.txt").read_text()


def test_main_drift_host_not_checked_exits_4(tmp_path):
    def fake(_s, hosts, _limits):
        return dry_run("dry_unchanged", {h.name: "@local" for h in hosts}, drop=["proxy-a-3"])

    code, _ = run_main(["drift", "--report", str(tmp_path / "r.txt")], dry=fake)
    assert code == EXIT_ERROR
    assert "RESULT: NOT CHECKED" in (tmp_path / "r.txt").read_text()
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "error"


def test_main_repair_redeploys_only_drifted_hosts_then_checks_them_again():
    calls = []

    def fake(settings, hosts, limits):
        calls.append(list(limits))
        drifted = ("proxy-a-2", "proxy-a-4") if len(calls) == 1 else ()
        return drifted_on(*drifted)(settings, hosts, limits)

    code, rec = run_main(["repair"], dry=fake)
    assert code == EXIT_OK
    assert rec.batches == [["proxy-a-2"], ["proxy-a-4"]]
    assert calls == [["proxies"], ["proxy-a-2", "proxy-a-4"]]


def test_main_repair_still_drifted_means_a_non_idempotent_operation(capsys):
    code, _ = run_main(["repair"], dry=drifted_on("proxy-a-2"))
    assert code == EXIT_DRIFT
    assert "STILL DRIFTED" in capsys.readouterr().out


# --- The real pyinfra, on @local --------------------------------------------------------------


def test_module_docstring_lists_every_exit_code():
    doc = textwrap.dedent(rollout.__doc__ or "")
    for code in (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DRIFT, EXIT_ERROR):
        assert f"\n    {code}  " in doc


@pytest.mark.slow
def test_hosts_come_from_the_real_inventory_proxies_only_in_name_order(tmp_path, server):
    """The contract with inventories/aws.py (`--json`), through a fake EC2 (moto) on loopback."""
    import boto3
    from moto.server import ThreadedMotoServer

    health_port, handler = server
    handler.script = {"/healthz": [200], "/readyz": [200]}
    moto_port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    try:
        aws = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }
        ec2 = boto3.client(
            "ec2",
            endpoint_url=aws["AWS_ENDPOINT_URL"],
            region_name="eu-west-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        ami = ec2.describe_images()["Images"][0]["ImageId"]
        instances = [
            ("proxy-a-2", "reverse-proxy"),
            ("proxy-a-1", "reverse-proxy"),
            ("app-1", "app"),
        ]
        for name, role in instances:
            tags = {"Name": name, "Role": role, "Environment": "production"}
            tags["SshAddress"] = "127.0.0.1"
            ec2.run_instances(
                ImageId=ami,
                MinCount=1,
                MaxCount=1,
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                    }
                ],
            )
        env = {
            **aws,
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "ENVIRONMENT": "production",
            "EC2_INVENTORY_REGIONS": "eu-west-1",
            "EC2_INVENTORY_HOSTNAME_PREFERENCE": "tag:SshAddress",
        }
        repo = Path(__file__).resolve().parents[1]
        cmd = [sys.executable, "-m", "tools.rollout", "--health-port", str(health_port)]
        verify = subprocess.run(
            [*cmd, "verify"], cwd=repo, env=env, capture_output=True, text=True, timeout=120
        )
        dry = subprocess.run(
            [*cmd, "deploy", "--dry"], cwd=repo, env=env, capture_output=True, text=True
        )
    finally:
        moto.stop()
    assert verify.returncode == EXIT_OK, verify.stdout + verify.stderr
    checked = [line.split(":")[0] for line in verify.stdout.splitlines() if ": healthy:" in line]
    assert checked == ["proxy-a-1", "proxy-a-2"]
    assert dry.returncode == EXIT_OK, dry.stderr
    assert "deploy: 2 proxies, canary proxy-a-1" in dry.stdout
