"""Unit tests of tools/rollout/results.py: what a deploy did per host, from real
`pyinfra -y --json` captures."""

from __future__ import annotations

import json

from rollout_fakes import capture, deploy_run, failures

from tools.rollout.results import find_json_object, parse_deploy_results

# --- Deploy results, from real `pyinfra -y --json` captures -----------------------------------


def test_parse_deploy_results_changed_operations_host_ok():
    run = deploy_run("deploy_changed")
    assert failures(run) == {}
    assert run.hosts["@local"].changed == (
        "Ensure the state directory",
        "Install the marker file",
        "Reload after a change",
    )
    assert run.hosts["@local"].unchanged == ()


def test_parse_deploy_results_unchanged_operations_host_ok():
    run = deploy_run("deploy_unchanged")
    assert failures(run) == {}
    assert run.hosts["@local"].changed == ()
    assert len(run.hosts["@local"].unchanged) == 3


def test_parse_deploy_results_failed_operation_fails_the_host():
    run = deploy_run("deploy_mixed")
    assert run.hosts["@local"].failure == "operation 'Run the site check' failed"
    assert run.hosts["@local"].failed_ops == ("Run the site check",)
    assert run.hosts["@chroot//"].failure is None
    assert "Run the site check" in run.hosts["@chroot//"].changed


def test_parse_deploy_results_failed_hosts_entry_fails_an_unreachable_host():
    run = deploy_run("deploy_mixed")
    assert "marked it failed before any operation ran" in run.hosts["proxy-unreachable"].failure


def test_parse_deploy_results_without_json_fails_every_host_of_the_batch():
    run = deploy_run("deploy_all_failed", {"proxy-a-1": "@local", "proxy-a-2": "@local"})
    assert failures(run) == {
        "proxy-a-1": "pyinfra exited 1 without results",
        "proxy-a-2": "pyinfra exited 1 without results",
    }
    assert any("No hosts remaining" in line for line in run.log_tail)  # for the human only


def test_parse_deploy_results_host_missing_from_results_fails():
    # pyinfra exits 0 and does nothing for a host outside the inventory it loaded
    cap = capture("deploy_changed")
    run = parse_deploy_results(["@local", "proxy-a-9"], 0, cap["stdout"])
    assert run.hosts["@local"].failure is None
    assert "ran nothing on it" in run.hosts["proxy-a-9"].failure


def test_parse_deploy_results_nonzero_exit_without_a_failed_host_fails_all():
    cap = capture("deploy_changed")
    run = parse_deploy_results(["@local"], 1, cap["stdout"])
    assert failures(run) == {"@local": "pyinfra exited 1 although its results show no failure"}


def test_parse_deploy_results_ignores_lines_a_deploy_printed_before_the_json():
    cap = capture("deploy_changed")
    run = parse_deploy_results(["@local"], 0, "debug: hello\n" + cap["stdout"])
    assert failures(run) == {}


def test_parse_deploy_results_unreadable_results_fail_every_host():
    payload = find_json_object(capture("deploy_changed")["stdout"])
    payload["results"]["operations"][0]["success"] = "@local"  # a string, not a list
    run = parse_deploy_results(["@local"], 0, json.dumps(payload))
    assert "results are unreadable" in run.hosts["@local"].failure
