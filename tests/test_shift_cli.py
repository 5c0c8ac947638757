"""tools/shift/cli.py: exit codes and messages of `main` (bad settings before AWS is asked,
--rollback, an unknown group; the ELBv2 calls against moto, in-process), and `make shift`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from shift_fakes import moto_rule

from tools.shift import cli
from tools.shift.errors import EXIT_OK, EXIT_USAGE

REPO = Path(__file__).resolve().parent.parent


def test_bad_settings_exit_2_before_the_load_balancer_is_asked(monkeypatch, capsys):
    def no_aws():
        raise AssertionError("AWS asked despite bad settings")

    monkeypatch.setattr(cli, "elbv2_client", no_aws)
    assert cli.main(["--to", "b", "--load-balancer", "x", "--steps", "5,50"], {}) == 2
    assert "--steps '5,50'" in capsys.readouterr().err


@pytest.fixture
def rule(monkeypatch):
    with moto_rule(monkeypatch) as found:
        yield found


def test_rollback_option_puts_the_new_group_to_zero_and_writes_the_report(
    rule, tmp_path, monkeypatch
):
    elb, rule_arn = rule
    elb.set_weights(elb.read(rule_arn), {"a": 50, "b": 50})
    monkeypatch.setattr(cli, "elbv2_client", lambda: elb.client)
    argv = ["--to", "b", "--rule-arn", rule_arn, "--rollback", "--report", str(tmp_path / "r")]
    assert cli.main(argv, {}) == EXIT_OK
    assert elb.read(rule_arn).weights == {"a": 100, "b": 0}
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["outcome"] == "rollback" and data["final_weights"] == {"a": 100, "b": 0}


def test_unknown_group_is_refused_before_anything_moves(rule, monkeypatch, capsys):
    elb, rule_arn = rule
    monkeypatch.setattr(cli, "elbv2_client", lambda: elb.client)
    assert cli.main(["--to", "c", "--rule-arn", rule_arn], {}) == EXIT_USAGE
    assert "--to c: not a group of the rule (a, b)" in capsys.readouterr().err
    assert elb.read(rule_arn).weights == {"a": 100, "b": 0}


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
