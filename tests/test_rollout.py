"""Unit tests of tools/rollout.py: settings, batching, the health gate (against a tiny HTTP server
on 127.0.0.1), reading pyinfra's output, the drift report and the rollout's stop-at-first-failure
rule. One test runs the real pyinfra against @local to pin down what `--dry --json` prints."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from tools import rollout
from tools.rollout import (
    EXIT_DRIFT,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Actions,
    Check,
    DryRun,
    HealthResult,
    Host,
    RolloutError,
    Settings,
)

HOSTS = [Host(f"proxy-a-{i}", f"10.0.0.{10 + i}") for i in range(1, 6)]


def names(batches):
    return [[h.name for h in batch] for batch in batches]


# --- Settings -------------------------------------------------------------------------------------


def settings(argv=(), env=None):
    args = rollout.build_parser().parse_args(list(argv))
    return rollout.settings_from(args, env or {})


def test_settings_defaults_when_nothing_given():
    s = settings()
    assert s.inventory == "inventories/aws.py"
    assert s.canary is None
    assert s.batch_size == 1
    assert s.health_port == 80
    assert s.health_checks == (Check("/healthz", 200), Check("/readyz", 200))


def test_settings_environment_used_and_command_line_wins():
    env = {"ROLLOUT_BATCH_SIZE": "3", "CANARY_HOST": "proxy-a-2", "HEALTH_CHECKS": "/healthz=200"}
    s = settings(["--batch-size", "4"], env)
    assert s.batch_size == 4
    assert s.canary == "proxy-a-2"
    assert s.health_checks == (Check("/healthz", 200),)


def test_settings_empty_environment_variable_counts_as_unset():
    assert settings([], {"CANARY_HOST": "", "ROLLOUT_BATCH_SIZE": " "}) == settings()


def test_settings_health_check_option_is_repeatable():
    s = settings(["--health-check", "/healthz=200", "--health-check", "/readyz=204"])
    assert s.health_checks == (Check("/healthz", 200), Check("/readyz", 204))


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"ROLLOUT_BATCH_SIZE": "0"}, "ROLLOUT_BATCH_SIZE='0'"),
        ({"ROLLOUT_BATCH_SIZE": "two"}, "ROLLOUT_BATCH_SIZE='two'"),
        ({"HEALTH_PORT": "70000"}, "HEALTH_PORT='70000'"),
        ({"HEALTH_CHECKS": "healthz=200"}, "HEALTH_CHECKS='healthz=200'"),
        ({"HEALTH_CHECKS": "/healthz=999"}, "HEALTH_CHECKS='/healthz=999'"),
        ({"HEALTH_TIMEOUT": "-1"}, "HEALTH_TIMEOUT='-1'"),
    ],
)
def test_settings_bad_value_names_the_key_and_value(env, key):
    with pytest.raises(RolloutError) as e:
        settings([], env)
    assert key in str(e.value)
    assert e.value.exit_code == EXIT_USAGE


# --- Hosts and batches ----------------------------------------------------------------------------


def test_inventory_module_from_path():
    assert rollout.inventory_module("inventories/aws.py") == "inventories.aws"


@pytest.mark.parametrize("path", ["/etc/inventory.py", "../x.py", "inventories/aws"])
def test_inventory_module_rejects_non_module_paths(path):
    with pytest.raises(RolloutError):
        rollout.inventory_module(path)


def test_parse_inventory_json_keeps_proxies_in_inventory_order():
    text = json.dumps(
        [
            {"name": "app-1", "ssh_hostname": "10.0.0.10", "groups": ["backends"], "data": {}},
            {"name": "proxy-2", "ssh_hostname": "10.0.0.102", "groups": ["proxies"], "data": {}},
            {"name": "proxy-1", "ssh_hostname": "10.0.0.101", "groups": ["proxies"], "data": {}},
        ]
    )
    assert rollout.parse_inventory_json(text) == [
        Host("proxy-2", "10.0.0.102"),
        Host("proxy-1", "10.0.0.101"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "no JSON"),
        ('{"name": "x"}', "not a list"),
        ('[{"name": "p", "groups": ["proxies"], "data": {}}]', "p has no ssh_hostname"),
    ],
)
def test_parse_inventory_json_refuses_bad_output(text, message):
    with pytest.raises(RolloutError, match=message):
        rollout.parse_inventory_json(text)


def test_pick_canary_defaults_to_first_proxy():
    assert rollout.pick_canary(HOSTS, None) == HOSTS[0]
    assert rollout.pick_canary(HOSTS, "proxy-a-3") == HOSTS[2]


def test_pick_canary_unknown_host_is_a_usage_error_listing_proxies():
    with pytest.raises(RolloutError) as e:
        rollout.pick_canary(HOSTS, "proxy-z-9")
    assert e.value.exit_code == EXIT_USAGE
    assert "proxy-z-9" in str(e.value)
    assert "proxy-a-1" in str(e.value)


def test_plan_batches_canary_alone_first_then_batches_in_order():
    batches = rollout.plan_batches(HOSTS, HOSTS[2], 2)
    assert names(batches) == [
        ["proxy-a-3"],
        ["proxy-a-1", "proxy-a-2"],
        ["proxy-a-4", "proxy-a-5"],
    ]


def test_plan_batches_fleet_leaves_the_canary_out():
    batches = rollout.plan_batches(HOSTS, HOSTS[0], 3, with_canary=False)
    assert names(batches) == [["proxy-a-2", "proxy-a-3", "proxy-a-4"], ["proxy-a-5"]]


def test_plan_batches_single_host_fleet_is_only_the_canary():
    assert names(rollout.plan_batches(HOSTS[:1], HOSTS[0], 5)) == [["proxy-a-1"]]


# --- Health gate against a real HTTP server -------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    # path -> statuses answered in turn (the last one repeats); "slow" sleeps past the timeout
    script: ClassVar[dict[str, list[int]]] = {}
    calls: ClassVar[dict[str, int]] = {}
    hosts: ClassVar[list[str]] = []

    def do_GET(self):
        self.hosts.append(self.headers["Host"])
        n = self.calls.get(self.path, 0)
        self.calls[self.path] = n + 1
        statuses = self.script.get(self.path, [404])
        status = statuses[min(n, len(statuses) - 1)]
        if status == 0:  # "slow"
            time.sleep(1.0)
            status = 200
        self.send_response(status)
        if status in (301, 302):
            self.send_header("Location", "/healthz")
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 (free port), stopped after the test."""
    _Handler.script, _Handler.calls, _Handler.hosts = {}, {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], _Handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def gate_settings(port, **kw):
    values = dict(health_port=port, health_timeout=0.3, health_attempts=3, health_interval=0.01)
    values.update(kw)
    return Settings(**values)


LOCAL = Host("proxy-a-1", "127.0.0.1")


def test_health_gate_passes_when_both_checks_answer_200(server):
    port, handler = server
    handler.script = {"/healthz": [200], "/readyz": [200]}
    result = rollout.health_gate(LOCAL, gate_settings(port))
    assert result.ok
    assert result.attempts == 1


def test_health_gate_fails_naming_the_url_and_status(server):
    port, handler = server
    handler.script = {"/healthz": [200], "/readyz": [502]}
    result = rollout.health_gate(LOCAL, gate_settings(port))
    assert not result.ok
    assert result.attempts == 3
    assert result.details == (f"GET http://127.0.0.1:{port}/readyz answered 502, expected 200",)
    assert handler.calls["/readyz"] == 3


def test_health_gate_waits_for_a_host_that_becomes_healthy(server):
    port, handler = server
    handler.script = {"/healthz": [503, 503, 200], "/readyz": [200]}
    result = rollout.health_gate(LOCAL, gate_settings(port, health_attempts=5))
    assert result.ok
    assert result.attempts == 3


def test_health_gate_sends_the_configured_host_header(server):
    port, handler = server
    handler.script = {"/healthz": [200], "/readyz": [200]}
    result = rollout.health_gate(LOCAL, gate_settings(port, health_host="shop.example.com"))
    assert result.ok
    assert handler.hosts == ["shop.example.com", "shop.example.com"]


def test_health_gate_does_not_follow_redirects(server):
    port, handler = server
    handler.script = {"/healthz": [301], "/readyz": [200]}
    result = rollout.health_gate(LOCAL, gate_settings(port, health_attempts=1))
    assert not result.ok
    assert "answered 301, expected 200" in result.details[0]


def test_health_gate_times_out_on_a_silent_server(server):
    port, handler = server
    handler.script = {"/healthz": [0], "/readyz": [200]}
    result = rollout.health_gate(LOCAL, gate_settings(port, health_attempts=1, health_timeout=0.2))
    assert not result.ok
    assert result.details == (f"GET http://127.0.0.1:{port}/healthz: no answer within 0.2 s",)


def test_health_gate_fails_when_nothing_listens():
    with socket.socket() as s:  # a port that was free a moment ago and is closed now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = rollout.health_gate(LOCAL, gate_settings(port, health_attempts=2))
    assert not result.ok
    assert all("refused" in d.lower() for d in result.details)


# --- Reading pyinfra's output (lines as pyinfra 3.10 prints them) ---------------------------------

DEPLOY_LOG_ALL_FAILED = """\
--> Loading config...
--> Loading inventory...
--> Connecting to hosts...
    [proxy-a-1] Connected

--> Preparing operation files...
    Loading: deploy.py
    [proxy-a-1] Ready: deploy.py

--> Beginning operation run...
--> Starting operation: Install /etc/nginx/nginx.conf
    [proxy-a-1] Success

--> Starting operation: Validate the nginx configuration
    [proxy-a-1] nginx: [emerg] unknown directive "retry" in /etc/nginx/nginx.conf:12
    [proxy-a-1] Error: executed 0 commands

--> Disconnecting from hosts...
--> pyinfra error: No hosts remaining!
""".splitlines()


def test_deploy_failures_names_the_failed_operation_from_the_log():
    failures = rollout.deploy_failures(["proxy-a-1"], 1, "", DEPLOY_LOG_ALL_FAILED)
    assert failures == {
        "proxy-a-1": "operation 'Validate the nginx configuration' failed: "
        'nginx: [emerg] unknown directive "retry" in /etc/nginx/nginx.conf:12 / '
        "executed 0 commands"
    }


def test_deploy_failures_reads_ansi_coloured_logs():
    coloured = [
        "\x1b[34m--> Starting operation:\x1b[0m \x1b[1mRestart nginx\x1b[0m ",
        "    [\x1b[1mproxy-a-1\x1b[0m] \x1b[31mError\x1b[0m",
    ]
    failures = rollout.deploy_failures(["proxy-a-1"], 1, "", coloured)
    assert failures == {"proxy-a-1": "operation 'Restart nginx' failed"}


def test_deploy_failures_unreachable_host():
    log = [
        "--> Connecting to hosts...",
        "    [proxy-a-2] Could not connect ([Errno None] Unable to connect to port 22 on 10.0.0.2)",
    ]
    results = {"operations": [], "totals": {}, "failed_hosts": ["proxy-a-2"]}
    stdout = json.dumps({"plan": [], "results": results})
    failures = rollout.deploy_failures(["proxy-a-2"], 1, stdout, log)
    assert failures == {
        "proxy-a-2": "could not connect ([Errno None] Unable to connect to port 22 on 10.0.0.2)"
    }


def _results_json(success=(), no_change=(), error=(), failed=()):
    op = {
        "name": "Install /etc/nginx/nginx.conf",
        "success": list(success),
        "no_change": list(no_change),
        "error": list(error),
    }
    return json.dumps({"plan": [], "results": {"operations": [op], "failed_hosts": list(failed)}})


def test_deploy_failures_none_when_every_host_ran():
    stdout = _results_json(success=["proxy-a-1"], no_change=["proxy-a-2"])
    assert rollout.deploy_failures(["proxy-a-1", "proxy-a-2"], 0, stdout, []) == {}


def test_deploy_failures_from_json_when_the_log_says_nothing():
    stdout = _results_json(success=["proxy-a-1"], error=["proxy-a-2"], failed=["proxy-a-2"])
    failures = rollout.deploy_failures(["proxy-a-1", "proxy-a-2"], 1, stdout, [])
    assert failures == {"proxy-a-2": "operation 'Install /etc/nginx/nginx.conf' failed"}


def test_deploy_failures_host_pyinfra_never_ran_is_a_failure():
    # pyinfra exits 0 and does nothing when --limit matches no host
    stdout = json.dumps({"plan": [], "results": {"operations": [], "failed_hosts": []}})
    failures = rollout.deploy_failures(["proxy-a-9"], 0, stdout, [])
    assert "ran nothing on it" in failures["proxy-a-9"]


def test_deploy_failures_crash_without_output_fails_the_whole_batch():
    log = ["--> pyinfra error: Invalid operation arguments"]
    failures = rollout.deploy_failures(["proxy-a-1", "proxy-a-2"], 1, "", log)
    assert failures == {
        "proxy-a-1": "pyinfra exited 1 (Invalid operation arguments)",
        "proxy-a-2": "pyinfra exited 1 (Invalid operation arguments)",
    }


def _plan_json(*ops):
    plan = [
        {
            "op_hash": f"h{i}",
            "name": name,
            "names": [name],
            "args": [],
            "hosts_with_change": change,
            "hosts_with_conditional_change": conditional,
        }
        for i, (name, change, conditional) in enumerate(ops)
    ]
    return json.dumps({"plan": plan, "results": None})


def test_parse_dry_run_drift_only_from_hosts_with_change():
    stdout = _plan_json(
        ("Install /etc/nginx/nginx.conf", ["proxy-a-2"], []),
        ("Reload nginx", [], ["proxy-a-1", "proxy-a-2"]),
    )
    dry = rollout.parse_dry_run(["proxy-a-1", "proxy-a-2"], 0, stdout, [])
    assert dry.drifted == ["proxy-a-2"]
    assert dry.changes == {"proxy-a-2": ["Install /etc/nginx/nginx.conf"]}
    assert dry.in_step == ["proxy-a-1"]
    assert dry.error is None


def test_parse_dry_run_ignores_lines_a_deploy_printed_before_the_json():
    stdout = "debug: hello\n" + _plan_json(("Ensure nginx is installed", ["proxy-a-1"], []))
    assert rollout.parse_dry_run(["proxy-a-1"], 0, stdout, []).drifted == ["proxy-a-1"]


def test_parse_dry_run_unreachable_host_is_not_checked_not_in_step():
    log = ["    [proxy-a-2] Could not connect (timed out)"]
    dry = rollout.parse_dry_run(["proxy-a-1", "proxy-a-2"], 1, _plan_json(), log)
    assert dry.drifted == []
    assert dry.not_checked == {"proxy-a-2": "could not connect (timed out)"}
    assert dry.in_step == ["proxy-a-1"]
    assert dry.error is None


def test_parse_dry_run_host_failing_during_the_dry_run_is_not_in_step():
    log = [
        "    [proxy-a-2] Could not connect (timed out)",
        "    [proxy-a-3] Error: could not load fact: server.Os",
    ]
    hosts = ["proxy-a-1", "proxy-a-2", "proxy-a-3"]
    dry = rollout.parse_dry_run(hosts, 1, _plan_json(), log)
    assert dry.in_step == ["proxy-a-1"]
    assert dry.not_checked["proxy-a-3"] == (
        "failed before any operation ran: could not load fact: server.Os"
    )


def test_parse_dry_run_without_json_is_an_error():
    dry = rollout.parse_dry_run(["proxy-a-1"], 1, "", ["--> pyinfra error: No hosts remaining!"])
    assert dry.error == "No hosts remaining!"
    assert dry.in_step == []


def test_dry_run_command_never_passes_yes():
    # with -y pyinfra skips change detection, and every host would look in step
    cmd = rollout.dry_run_command(Settings(), ["proxies"])
    assert "-y" not in cmd and "--yes" not in cmd
    assert cmd[-6:] == ["--dry", "--json", "inventories/aws.py", "deploy.py", "--limit", "proxies"]


def test_drift_report_names_host_and_operation():
    dry = DryRun(
        hosts=["proxy-a-1", "proxy-a-2", "proxy-a-3"],
        changes={"proxy-a-2": ["Install /etc/nginx/nginx.conf"]},
        conditional={"proxy-a-2": ["Reload nginx"], "proxy-a-1": ["Reload nginx"]},
        not_checked={"proxy-a-3": "could not connect (timed out)"},
    )
    text = rollout.format_drift_report(dry, title="Drift report", command=["pyinfra", "--dry"])
    assert "RESULT: DRIFTED - 1 of 3 hosts" in text
    assert "proxy-a-2: 1 operation(s) would change something\n  - Install /etc/nginx" in text
    assert "Not checked:\n  proxy-a-3: could not connect (timed out)" in text
    assert "In step: proxy-a-1" in text
    assert rollout.drift_json(dry)["status"] == "drifted"


def test_drift_report_clean():
    text = rollout.format_drift_report(
        DryRun(hosts=["proxy-a-1"]), title="Drift report", command=["pyinfra"]
    )
    assert "RESULT: IN STEP" in text
    assert "DRIFTED" not in text


# --- The rollout: stop at the first failure -------------------------------------------------------


class Recorder:
    """Fake deploy and gate that record what was touched."""

    def __init__(self, deploy_fail=None, unhealthy=()):
        self.deploy_fail = deploy_fail or {}
        self.unhealthy = set(unhealthy)
        self.deployed: list[str] = []
        self.gated: list[str] = []

    def deploy(self, *args):
        batch = args[-1]
        self.deployed += [h.name for h in batch]
        return {h.name: self.deploy_fail[h.name] for h in batch if h.name in self.deploy_fail}

    def gate(self, host, *_):
        self.gated.append(host.name)
        if host.name in self.unhealthy:
            return HealthResult(False, 6, (f"GET http://{host.address}:80/readyz answered 502",))
        return HealthResult(True, 1, ("ok",))


def test_roll_out_deploys_and_gates_every_host_in_order():
    rec = Recorder()
    result = rollout.roll_out(
        rollout.plan_batches(HOSTS, HOSTS[0], 2), deploy=rec.deploy, gate=rec.gate, log=lambda _: 0
    )
    assert result.ok
    assert rec.deployed == rec.gated == [h.name for h in HOSTS]
    assert result.healthy == [h.name for h in HOSTS]


def test_roll_out_stops_at_first_unhealthy_host_and_leaves_the_rest_untouched():
    rec = Recorder(unhealthy={"proxy-a-2"})
    batches = rollout.plan_batches(HOSTS, HOSTS[0], 1)
    result = rollout.roll_out(batches, deploy=rec.deploy, gate=rec.gate, log=lambda _: 0)
    assert not result.ok
    assert result.failed_host == "proxy-a-2"
    assert "health gate failed" in result.reason and "readyz answered 502" in result.reason
    assert rec.deployed == ["proxy-a-1", "proxy-a-2"]
    assert result.untouched == ["proxy-a-3", "proxy-a-4", "proxy-a-5"]
    message = result.abort_message()
    assert message.startswith("ROLLOUT ABORTED at proxy-a-2: health gate failed")


def test_roll_out_gate_failure_inside_a_batch_lists_the_unchecked_hosts():
    rec = Recorder(unhealthy={"proxy-a-2"})
    batches = rollout.plan_batches(HOSTS, HOSTS[0], 3)  # [a-1], [a-2, a-3, a-4], [a-5]
    result = rollout.roll_out(batches, deploy=rec.deploy, gate=rec.gate, log=lambda _: 0)
    assert result.failed_host == "proxy-a-2"
    assert result.unchecked == ["proxy-a-3", "proxy-a-4"]
    assert result.untouched == ["proxy-a-5"]
    assert "proxy-a-5" not in rec.deployed


def test_roll_out_deploy_failure_is_not_gated():
    rec = Recorder(deploy_fail={"proxy-a-1": "operation 'Install nginx' failed"})
    result = rollout.roll_out(
        rollout.plan_batches(HOSTS, HOSTS[0], 2), deploy=rec.deploy, gate=rec.gate, log=lambda _: 0
    )
    assert result.failed_host == "proxy-a-1"
    assert result.reason == "deploy failed: operation 'Install nginx' failed"
    assert rec.gated == []
    assert rec.deployed == ["proxy-a-1"]


# --- The command line, with fake side effects -----------------------------------------------------


def run_main(argv, rec=None, dry_run=None, hosts=HOSTS):
    rec = rec or Recorder()

    def load(_settings):
        if not hosts:
            raise RolloutError("the inventory has no host in group 'proxies'")
        return list(hosts)

    actions = Actions(
        load_hosts=load,
        deploy=rec.deploy,
        gate=rec.gate,
        dry_run=dry_run or (lambda s, h, limits: DryRun(hosts=[x.name for x in h])),
    )
    return rollout.main(argv, environ={}, actions=actions), rec


def test_main_deploy_ok():
    code, rec = run_main(["deploy", "--batch-size", "2"])
    assert code == EXIT_OK
    assert rec.deployed == [h.name for h in HOSTS]


def test_main_deploy_abort_message_names_host_and_failure(capsys):
    code, rec = run_main(["--canary", "proxy-a-3"], rec=Recorder(unhealthy={"proxy-a-1"}))
    assert code == EXIT_FAILED
    err = capsys.readouterr().err
    assert "ROLLOUT ABORTED at proxy-a-1: health gate failed" in err
    assert "readyz answered 502" in err
    assert rec.deployed == ["proxy-a-3", "proxy-a-1"]


def test_main_canary_deploys_one_host_only():
    code, rec = run_main(["canary", "--canary", "proxy-a-4"])
    assert code == EXIT_OK
    assert rec.deployed == ["proxy-a-4"]


def test_main_fleet_refuses_to_start_when_the_canary_is_unhealthy(capsys):
    code, rec = run_main(["fleet"], rec=Recorder(unhealthy={"proxy-a-1"}))
    assert code == EXIT_FAILED
    assert rec.deployed == []
    assert "the canary is not healthy" in capsys.readouterr().err


def test_main_fleet_deploys_everything_but_the_canary():
    code, rec = run_main(["fleet", "--batch-size", "2"])
    assert code == EXIT_OK
    assert rec.deployed == ["proxy-a-2", "proxy-a-3", "proxy-a-4", "proxy-a-5"]


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


def test_main_drift_writes_report_and_exits_3(tmp_path):
    report = tmp_path / "drift-report.txt"

    def dry_run(_s, hosts, _limits):
        return DryRun([h.name for h in hosts], changes={"proxy-a-2": ["Install nginx.conf"]})

    code, rec = run_main(["drift", "--report", str(report)], dry_run=dry_run)
    assert code == EXIT_DRIFT
    assert rec.deployed == []
    assert "proxy-a-2: 1 operation(s)" in report.read_text()
    assert json.loads(report.with_suffix(".json").read_text())["drifted"] == {
        "proxy-a-2": ["Install nginx.conf"]
    }


def test_main_drift_clean_exits_0(tmp_path):
    code, _ = run_main(["drift", "--report", str(tmp_path / "r.txt")])
    assert code == EXIT_OK
    assert "IN STEP" in (tmp_path / "r.txt").read_text()


def test_main_repair_redeploys_only_drifted_hosts_then_checks_them_again():
    calls = []

    def dry_run(_s, hosts, limits):
        calls.append(list(limits))
        changes = {"proxy-a-2": ["x"], "proxy-a-4": ["y"]} if len(calls) == 1 else {}
        return DryRun([h.name for h in hosts], changes=changes)

    code, rec = run_main(["repair"], dry_run=dry_run)
    assert code == EXIT_OK
    assert rec.deployed == ["proxy-a-2", "proxy-a-4"]
    assert calls == [["proxies"], ["proxy-a-2", "proxy-a-4"]]


def test_main_repair_still_drifted_means_a_non_idempotent_operation(capsys):
    def dry_run(_s, hosts, _limits):
        return DryRun([h.name for h in hosts], changes={"proxy-a-2": ["Run a shell command"]})

    code, _ = run_main(["repair"], dry_run=dry_run)
    assert code == EXIT_DRIFT
    assert "STILL DRIFTED" in capsys.readouterr().out


# --- The real pyinfra, on @local ------------------------------------------------------------------

LOCAL_INVENTORY = """\
import json
import sys

proxies = ["@local"]

if __name__ == "__main__" and "--json" in sys.argv:
    host = {"name": "@local", "ssh_hostname": "127.0.0.1", "groups": ["proxies"], "data": {}}
    print(json.dumps([host]))
"""

LOCAL_DEPLOY = """\
from pyinfra.operations import files, server

conf = files.directory(name="Ensure the state directory", path={path!r})
server.shell(name="Reload after a change", commands=["true"], _if=conf.did_change)
"""


@pytest.mark.slow
def test_drift_then_deploy_then_no_drift_with_real_pyinfra(tmp_path, server):
    """What `pyinfra --dry --json` prints really decides drift; an `_if=` reload is not drift."""
    port, handler = server
    handler.script = {"/healthz": [200], "/readyz": [200]}
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "__init__.py").write_text("")
    (tmp_path / "inventories" / "aws.py").write_text(LOCAL_INVENTORY)
    state = tmp_path / "state"
    (tmp_path / "deploy.py").write_text(LOCAL_DEPLOY.format(path=str(state)))
    repo = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"}

    def run(*args):
        cmd = [sys.executable, "-m", "tools.rollout", *args, "--health-port", str(port)]
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)

    first = run("drift", "--report", "drift-report.txt")
    assert first.returncode == EXIT_DRIFT, first.stderr
    report = (tmp_path / "drift-report.txt").read_text()
    assert "@local: 1 operation(s) would change something\n  - Ensure the state directory" in report

    deploy = run("deploy")
    assert deploy.returncode == EXIT_OK, deploy.stderr
    assert state.is_dir()

    second = run("drift", "--report", "drift-report.txt")
    assert second.returncode == EXIT_OK, second.stdout + second.stderr
    assert "RESULT: IN STEP" in (tmp_path / "drift-report.txt").read_text()


def test_module_docstring_lists_every_exit_code():
    doc = textwrap.dedent(rollout.__doc__ or "")
    for code in (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DRIFT, EXIT_ERROR):
        assert f"\n    {code}  " in doc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
