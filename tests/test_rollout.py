"""Unit tests of tools/rollout.py: settings, batches, the health gate (against a tiny HTTP server
on 127.0.0.1), reading pyinfra's results and plan, the drift report, and the rollout's failure
tolerance.

pyinfra's output is never hand-written here: it comes from tests/data/pyinfra/*.json, captured
from the real pyinfra by tools/capture_pyinfra_fixtures.py (re-run it after a pyinfra upgrade).
A capture has at most three hosts (@local, @chroot// and an unreachable one); for batches of other
hosts, `rehost` renames and duplicates the captured hosts inside the real JSON structure (each new
host plays a captured one). The drift records are the deploy's own format (tasks/drift.py), written
here as the deploy writes them. Two tests run pyinfra live on @local: one proves the stored captures
still match the installed pyinfra, one runs drift -> deploy -> drift end to end."""

from __future__ import annotations

import difflib
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

from tools import capture_pyinfra_fixtures as capture_tool
from tools import rollout
from tools.rollout import (
    EXIT_DRIFT,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Actions,
    BatchItem,
    Check,
    DeployRun,
    DryRun,
    HealthResult,
    Host,
    RolloutError,
    Settings,
)

HOSTS = [Host(f"proxy-a-{i}", f"10.0.0.{10 + i}") for i in range(1, 6)]
FIXTURES = Path(__file__).parent / "data" / "pyinfra"
HOST_LISTS = {
    "success",
    "no_change",
    "error",
    "failed_hosts",
    "hosts_with_change",
    "hosts_with_conditional_change",
}
NGINX_OP = "Install the nginx configuration (checked with nginx -t first)"


def names(batches):
    return [[h.name for h in batch] for batch in batches]


# --- Real pyinfra captures ------------------------------------------------------------------------


def capture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def rehost(value, roles: dict[str, str]):
    """A captured JSON structure with every list of host names rebuilt from `roles`
    (new host name -> the captured host it plays). "totals" keeps the captured counts: the
    rollout does not read them."""
    if isinstance(value, list):
        return [rehost(v, roles) for v in value]
    if not isinstance(value, dict):
        return value
    return {
        key: (
            sorted(new for new, old in roles.items() if old in item)
            if key in HOST_LISTS and isinstance(item, list)
            else rehost(item, roles)
        )
        for key, item in value.items()
    }


def rehost_drift(text: str, roles: dict[str, str]) -> str:
    lines = []
    for line in text.splitlines():
        record = json.loads(line)
        lines += [
            json.dumps({**record, "host": new})
            for new, old in roles.items()
            if record["host"] == old
        ]
    return "".join(line + "\n" for line in lines)


def stdout_of(cap: dict, roles: dict[str, str]) -> str:
    payload = rollout.find_json_object(cap["stdout"])
    return json.dumps(rehost(payload, roles)) + "\n" if payload else cap["stdout"]


def deploy_run(name: str, roles: dict[str, str] | None = None) -> DeployRun:
    """`parse_deploy_results` over a real capture, its hosts played by `roles`."""
    cap = capture(name)
    roles = roles or {h: h for h in cap["hosts"]}
    return rollout.parse_deploy_results(
        list(roles), cap["returncode"], stdout_of(cap, roles), cap["stderr_tail"]
    )


def failures(run: DeployRun) -> dict[str, str]:
    return {name: host.failure for name, host in run.hosts.items() if host.failure}


def dry_run(name: str, roles: dict[str, str] | None = None, extra: str = "", drop=()) -> DryRun:
    """`parse_dry_run` over a real capture; `extra` adds drift records, `drop` removes the
    "checked" line of these hosts."""
    cap = capture(name)
    roles = roles or {h: h for h in cap["hosts"]}
    drift = rehost_drift(cap["drift_file"] or "", roles)
    drift = "".join(
        line + "\n"
        for line in drift.splitlines()
        if not any(f'"host": "{h}", "kind": "checked"' in line for h in drop)
    )
    return rollout.parse_dry_run(
        list(roles), cap["returncode"], stdout_of(cap, roles), drift + extra
    )


def record(host, kind, subject, detail, operation=NGINX_OP) -> str:
    fields = {"host": host, "kind": kind, "subject": subject, "detail": detail}
    return json.dumps({**fields, "operation": operation}) + "\n"


NGINX_DIFF = "".join(
    difflib.unified_diff(
        ["worker_processes auto;\n", "keepalive_timeout 65;\n"],
        ["worker_processes auto;\n", "keepalive_timeout 20;\n"],
        fromfile="/etc/nginx/nginx.conf (live)",
        tofile="/etc/nginx/nginx.conf (desired)",
    )
)
PROXY_3_RECORDS = (
    record("proxy-3", "file", "/etc/nginx/nginx.conf", NGINX_DIFF)
    + record("proxy-3", "state", "nginx", "running configuration older than /etc/nginx/nginx.conf")
    + record(
        "proxy-3",
        "invalid",
        "nginx",
        'nginx: [emerg] unknown directive "retry" in /etc/nginx/nginx.conf:12\n'
        "nginx: configuration file /etc/nginx/nginx.conf test failed",
    )
)
THREE = {"proxy-1": "@local", "proxy-2": "@local", "proxy-3": "@local"}


def proxy_3_drifted() -> DryRun:
    """Three in-step hosts of the real no-change dry run; proxy-3 gets the deploy's records."""
    return dry_run("dry_unchanged", THREE, extra=PROXY_3_RECORDS)


# --- Settings -------------------------------------------------------------------------------------


def settings(argv=(), env=None):
    args = rollout.build_parser().parse_args(list(argv))
    return rollout.settings_from(args, env or {})


def test_settings_defaults_when_nothing_given():
    s = settings()
    assert s.inventory == "inventories/aws.py"
    assert s.canary is None
    assert s.batches == (BatchItem(1), BatchItem(1))
    assert s.max_fail_percent == 0
    assert s.health_port == 80
    assert s.health_checks == (Check("/healthz", 200), Check("/readyz", 200))


def test_settings_environment_used_and_command_line_wins():
    env = {
        "ROLLOUT_BATCH_SIZE": "3",
        "CANARY_HOST": "proxy-a-2",
        "HEALTH_CHECKS": "/healthz=200",
        "ROLLOUT_MAX_FAIL_PERCENT": "10",
    }
    s = settings(["--batch-size", "4", "--max-fail-percent", "25"], env)
    assert s.batches == (BatchItem(1), BatchItem(4))
    assert s.max_fail_percent == 25
    assert s.canary == "proxy-a-2"
    assert s.health_checks == (Check("/healthz", 200),)


def test_settings_batches_from_the_environment():
    s = settings([], {"ROLLOUT_BATCHES": "1,25%,100%"})
    assert s.batches == (BatchItem(1), BatchItem(25, True), BatchItem(100, True))


def test_settings_command_line_batch_size_beats_environment_batches():
    s = settings(["--batch-size", "2"], {"ROLLOUT_BATCHES": "50%"})
    assert s.batches == (BatchItem(1), BatchItem(2))


def test_settings_empty_environment_variable_counts_as_unset():
    env = {
        "CANARY_HOST": "",
        "ROLLOUT_BATCH_SIZE": " ",
        "ROLLOUT_BATCHES": "",
        "ROLLOUT_MAX_FAIL_PERCENT": "",
    }
    assert settings([], env) == settings()


def test_settings_health_check_option_is_repeatable():
    s = settings(["--health-check", "/healthz=200", "--health-check", "/readyz=204"])
    assert s.health_checks == (Check("/healthz", 200), Check("/readyz", 204))


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--batches", "1,50%", "--batch-size", "2"], {}, "--batches='1,50%' and --batch-size='2'"),
        ([], {"ROLLOUT_BATCHES": "50%", "ROLLOUT_BATCH_SIZE": "2"}, "ROLLOUT_BATCHES='50%' and"),
    ],
)
def test_settings_batches_and_batch_size_together_are_refused_naming_both(argv, env, message):
    with pytest.raises(RolloutError) as e:
        settings(argv, env)
    assert message in str(e.value)
    assert "not both" in str(e.value)
    assert e.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"ROLLOUT_BATCH_SIZE": "0"}, "ROLLOUT_BATCH_SIZE='0'"),
        ({"ROLLOUT_BATCH_SIZE": "two"}, "ROLLOUT_BATCH_SIZE='two'"),
        ({"ROLLOUT_MAX_FAIL_PERCENT": "101"}, "ROLLOUT_MAX_FAIL_PERCENT='101'"),
        ({"ROLLOUT_MAX_FAIL_PERCENT": "-1"}, "ROLLOUT_MAX_FAIL_PERCENT='-1'"),
        ({"ROLLOUT_MAX_FAIL_PERCENT": "10%"}, "ROLLOUT_MAX_FAIL_PERCENT='10%'"),
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


# --- Batches --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("1,25%,100%", ((1, False), (25, True), (100, True))),
        (" 2 , 50% ", ((2, False), (50, True))),
        ("3", ((3, False),)),
    ],
)
def test_parse_batches_counts_and_percentages(value, items):
    assert rollout.parse_batches("--batches", value) == tuple(BatchItem(*i) for i in items)


@pytest.mark.parametrize("value", ["0,50%", "0%", "101%", "", "1,,2", "a", "1.5", "-1", "%", "²"])
def test_parse_batches_bad_item_names_setting_and_what_is_allowed(value):
    with pytest.raises(RolloutError) as e:
        rollout.parse_batches("--batches", value)
    assert str(e.value) == (
        f"--batches={value!r}: items are counts of 1 or more or percentages from 1% to 100%, "
        "e.g. 1,25%,100%"
    )
    assert e.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    ("spec", "total", "sizes"),
    [
        ("1,2", 7, [1, 2, 2, 2]),  # the last item repeats
        ("1,25%,100%", 8, [1, 2, 5]),
        ("1,30%", 10, [1, 3, 3, 3]),  # the last batch takes what is left
        ("10%", 5, [1, 1, 1, 1, 1]),  # rounded down, at least 1
        ("1,99%", 3, [1, 2]),
        ("5,1", 3, [3]),
    ],
)
def test_batch_sizes_rounding_and_last_item_repeating(spec, total, sizes):
    assert rollout.batch_sizes(rollout.parse_batches("--batches", spec), total) == sizes


def test_plan_batches_canary_alone_first_then_batches_in_order():
    batches = rollout.plan_batches(HOSTS, HOSTS[2], (BatchItem(1), BatchItem(2)))
    assert names(batches) == [
        ["proxy-a-3"],
        ["proxy-a-1", "proxy-a-2"],
        ["proxy-a-4", "proxy-a-5"],
    ]


def test_plan_batches_canary_is_first_host_of_a_larger_first_batch():
    batches = rollout.plan_batches(HOSTS, HOSTS[3], rollout.parse_batches("x", "60%"))
    assert names(batches) == [["proxy-a-4", "proxy-a-1", "proxy-a-2"], ["proxy-a-3", "proxy-a-5"]]


def test_plan_batches_fleet_leaves_the_canary_out():
    batches = rollout.plan_batches(HOSTS, HOSTS[0], (BatchItem(1), BatchItem(3)), with_canary=False)
    assert names(batches) == [["proxy-a-2", "proxy-a-3", "proxy-a-4"], ["proxy-a-5"]]


def test_plan_batches_fleet_keeps_the_rest_of_the_canary_batch():
    items = rollout.parse_batches("x", "2,100%")
    batches = rollout.plan_batches(HOSTS, HOSTS[0], items, with_canary=False)
    assert names(batches) == [["proxy-a-2"], ["proxy-a-3", "proxy-a-4", "proxy-a-5"]]


def test_plan_batches_single_host_fleet_is_only_the_canary():
    assert names(rollout.plan_batches(HOSTS[:1], HOSTS[0], (BatchItem(5),))) == [["proxy-a-1"]]


# --- Hosts ----------------------------------------------------------------------------------------


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


# --- Deploy results, from real `pyinfra -y --json` captures --------------------------------------


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
    run = rollout.parse_deploy_results(["@local", "proxy-a-9"], 0, cap["stdout"])
    assert run.hosts["@local"].failure is None
    assert "ran nothing on it" in run.hosts["proxy-a-9"].failure


def test_parse_deploy_results_nonzero_exit_without_a_failed_host_fails_all():
    cap = capture("deploy_changed")
    run = rollout.parse_deploy_results(["@local"], 1, cap["stdout"])
    assert failures(run) == {"@local": "pyinfra exited 1 although its results show no failure"}


def test_parse_deploy_results_ignores_lines_a_deploy_printed_before_the_json():
    cap = capture("deploy_changed")
    run = rollout.parse_deploy_results(["@local"], 0, "debug: hello\n" + cap["stdout"])
    assert failures(run) == {}


def test_parse_deploy_results_unreadable_results_fail_every_host():
    payload = rollout.find_json_object(capture("deploy_changed")["stdout"])
    payload["results"]["operations"][0]["success"] = "@local"  # a string, not a list
    run = rollout.parse_deploy_results(["@local"], 0, json.dumps(payload))
    assert "results are unreadable" in run.hosts["@local"].failure


# --- Drift, from real `pyinfra --dry --json` captures plus the deploy's records ------------------


def test_parse_dry_run_plan_and_records_combined():
    dry = dry_run("dry_changed")
    assert dry.drifted == ["@local"]
    entries = dry.drift["@local"]
    # the record explains "Install the marker file"; the directory has no record: named as is;
    # "Reload after a change" (hosts_with_conditional_change, `_if=`) is not drift
    assert [(e.kind, e.operation) for e in entries] == [
        ("file", "Install the marker file"),
        ("operation", "Ensure the state directory"),
    ]
    assert entries[0].detail == "missing on the host"
    assert dry.not_checked == {}
    assert dry.error is None


def test_parse_dry_run_conditional_change_only_is_in_step():
    dry = dry_run("dry_unchanged")
    assert dry.drifted == []
    assert dry.in_step == ["@local"]
    assert rollout._drift_exit(dry) == EXIT_OK


def test_parse_dry_run_records_alone_make_a_host_drifted():
    dry = proxy_3_drifted()
    assert dry.drifted == ["proxy-3"]
    assert [e.kind for e in dry.drift["proxy-3"]] == ["file", "state", "invalid"]
    assert dry.repair_would_fail == ["proxy-3"]
    assert dry.in_step == ["proxy-1", "proxy-2"]


def test_parse_dry_run_unreachable_host_is_not_checked():
    dry = dry_run("dry_mixed")  # pyinfra exits 1: proxy-unreachable could not be reached
    assert dry.drifted == ["@local", "@chroot//"]
    assert list(dry.not_checked) == ["proxy-unreachable"]
    assert dry.error is None
    assert rollout._drift_exit(dry) == EXIT_DRIFT


def test_parse_dry_run_host_without_checked_line_is_not_checked():
    dry = dry_run("dry_unchanged", {"proxy-1": "@local", "proxy-2": "@local"}, drop=["proxy-2"])
    assert dry.in_step == ["proxy-1"]
    assert "did not plan it" in dry.not_checked["proxy-2"]
    assert rollout._drift_exit(dry) == EXIT_ERROR


def test_parse_dry_run_without_any_checked_line_is_an_error():
    dry = dry_run("dry_unchanged", drop=["@local"])
    assert "no host was marked as checked in PROXY_DEPLOY_DRIFT_FILE" in dry.error
    assert rollout._drift_exit(dry) == EXIT_ERROR


def test_parse_dry_run_without_json_is_an_error():
    dry = dry_run("dry_unreachable")
    assert dry.error == "pyinfra exited 1 without its JSON plan"
    assert list(dry.not_checked) == ["proxy-unreachable"]
    assert dry.in_step == []
    assert rollout._drift_exit(dry) == EXIT_ERROR


def test_parse_dry_run_unreadable_record_line_is_an_error():
    dry = dry_run("dry_unchanged", extra='not json\n{"host": "@local", "kind": "odd"}\n')
    assert "PROXY_DEPLOY_DRIFT_FILE line 2: not JSON" in dry.error
    assert "line 3: expected an object" in dry.error
    assert rollout._drift_exit(dry) == EXIT_ERROR


def test_dry_run_command_never_passes_yes():
    # with -y pyinfra skips change detection, and every host would look in step
    cmd = rollout.dry_run_command(Settings(), ["proxies"])
    assert "-y" not in cmd and "--yes" not in cmd
    assert cmd[-6:] == ["--dry", "--json", "inventories/aws.py", "deploy.py", "--limit", "proxies"]


def drift_text(dry: DryRun) -> str:
    return rollout.format_drift_report(dry, title="Drift report", command=["pyinfra", "--dry"])


def test_drift_report_file_diff_state_and_invalid_records():
    text = drift_text(proxy_3_drifted())
    assert "RESULT: DRIFTED - 1 of 3 hosts would be changed by the deploy." in text
    assert "REPAIR WOULD FAIL VALIDATION on proxy-3:" in text
    assert "\nproxy-3: 3 difference(s) - REPAIR WOULD FAIL VALIDATION\n" in text
    assert (
        "  file /etc/nginx/nginx.conf: differs\n"
        "    --- /etc/nginx/nginx.conf (live)\n"
        "    +++ /etc/nginx/nginx.conf (desired)\n"
    ) in text
    assert "    -keepalive_timeout 65;\n    +keepalive_timeout 20;\n" in text
    assert "  state nginx: running configuration older than /etc/nginx/nginx.conf\n" in text
    assert (
        "  REPAIR WOULD FAIL VALIDATION (nginx):\n"
        '    nginx: [emerg] unknown directive "retry" in /etc/nginx/nginx.conf:12\n'
    ) in text
    assert "In step: proxy-1, proxy-2" in text


def test_drift_report_operation_without_record_by_name_and_no_conditional_lines():
    text = drift_text(dry_run("dry_changed"))
    assert "  file " in text and ": missing on the host\n" in text
    assert (
        "  operation 'Ensure the state directory' would change something (no detail recorded)"
    ) in text
    assert "Reload after a change" not in text
    assert "possibly" not in text


def test_drift_report_not_checked_host_listed():
    text = drift_text(dry_run("dry_mixed"))
    assert "RESULT: DRIFTED - 2 of 3 hosts" in text
    assert "Not checked:\n  proxy-unreachable: the deploy did not plan it" in text


def test_drift_report_nothing_reached_says_not_checked():
    text = drift_text(dry_run("dry_unreachable"))
    assert "RESULT: NOT CHECKED" in text
    assert "The dry run failed: pyinfra exited 1 without its JSON plan" in text


def test_drift_report_clean():
    text = drift_text(dry_run("dry_unchanged"))
    assert "RESULT: IN STEP" in text
    assert "DRIFTED" not in text


def test_drift_report_long_diff_cut_in_text_kept_in_json():
    diff = "--- a\n+++ b\n" + "".join(f"+line {i}\n" for i in range(200))
    dry = dry_run("dry_unchanged", extra=record("@local", "file", "/etc/big", diff))
    text = drift_text(dry)
    assert "+line 57" in text and "+line 58" not in text
    assert "... 142 more line(s) in drift-report.json" in text
    assert rollout.drift_json(dry)["drifted"]["@local"][0]["detail"] == diff


def test_drift_json_entries_keep_kind_subject_detail_and_operation():
    doc = rollout.drift_json(proxy_3_drifted())
    assert doc["status"] == "drifted"
    assert doc["hosts"] == ["proxy-1", "proxy-2", "proxy-3"]
    assert list(doc["drifted"]) == ["proxy-3"]
    assert "nginx configuration" in str(doc["drifted"]["proxy-3"])
    assert doc["drifted"]["proxy-3"][1] == {
        "kind": "state",
        "subject": "nginx",
        "detail": "running configuration older than /etc/nginx/nginx.conf",
        "operation": NGINX_OP,
    }
    assert doc["not_checked"] == {} and doc["error"] is None


def test_drift_json_status_error_when_not_checked():
    assert rollout.drift_json(dry_run("dry_unreachable"))["status"] == "error"
    assert rollout.drift_json(dry_run("dry_unchanged"))["status"] == "clean"


# --- The rollout: batches and the failure tolerance -----------------------------------------------


class Recorder:
    """Fake deploy and gate that record what was touched. The deploy answers with real pyinfra
    captures, hosts renamed: fine -> a host of deploy_changed; "op" -> the host whose operation
    failed in deploy_mixed; "unreachable" -> its unreachable host; all hosts of a batch failing
    -> deploy_all_failed (pyinfra prints no results then)."""

    def __init__(self, deploy_fail=None, unhealthy=()):
        self.deploy_fail = deploy_fail or {}
        self.unhealthy = set(unhealthy)
        self.deployed: list[str] = []
        self.batches: list[list[str]] = []
        self.gated: list[str] = []

    def deploy(self, *args):
        batch = [h.name for h in args[-1]]
        self.deployed += batch
        self.batches.append(batch)
        if not any(h in self.deploy_fail for h in batch):
            return deploy_run("deploy_changed", {h: "@local" for h in batch})
        if all(h in self.deploy_fail for h in batch):
            return deploy_run("deploy_all_failed", {h: "@local" for h in batch})
        plays = {"op": "@local", "unreachable": "proxy-unreachable"}
        return deploy_run(
            "deploy_mixed", {h: plays.get(self.deploy_fail.get(h), "@chroot//") for h in batch}
        )

    def gate(self, host, *_):
        self.gated.append(host.name)
        if host.name in self.unhealthy:
            return HealthResult(False, 6, (f"GET http://{host.address}:80/readyz answered 502",))
        return HealthResult(True, 1, ("ok",))


def roll(rec, batches, max_fail_percent=0, log=None):
    return rollout.roll_out(
        batches,
        deploy=rec.deploy,
        gate=rec.gate,
        max_fail_percent=max_fail_percent,
        log=log if log is not None else (lambda _: None),
    )


def spec(text):
    return rollout.parse_batches("--batches", text)


def test_roll_out_deploys_and_gates_every_host_in_order():
    rec = Recorder()
    result = roll(rec, rollout.plan_batches(HOSTS, HOSTS[0], spec("1,2")))
    assert result.ok
    assert rec.deployed == rec.gated == [h.name for h in HOSTS]
    assert result.healthy == [h.name for h in HOSTS]


def test_roll_out_logs_changed_operations_per_host():
    lines = []
    roll(Recorder(), [[HOSTS[0]]], log=lines.append)
    assert "    proxy-a-1: deployed: 3 operation(s) changed, 0 unchanged" in "\n".join(lines)


def test_roll_out_stops_at_first_unhealthy_host_and_leaves_the_rest_untouched():
    rec = Recorder(unhealthy={"proxy-a-2"})
    result = roll(rec, rollout.plan_batches(HOSTS, HOSTS[0], spec("1")))
    assert not result.ok
    assert result.stopped_at == "proxy-a-2"
    assert "health gate failed" in result.failed["proxy-a-2"]
    assert rec.deployed == ["proxy-a-1", "proxy-a-2"]
    assert result.untouched == ["proxy-a-3", "proxy-a-4", "proxy-a-5"]
    assert result.summary().startswith("ROLLOUT ABORTED at proxy-a-2: health gate failed")


def test_roll_out_gate_failure_inside_a_batch_lists_the_unchecked_hosts():
    rec = Recorder(unhealthy={"proxy-a-2"})
    result = roll(rec, rollout.plan_batches(HOSTS, HOSTS[0], spec("1,3")))
    assert result.stopped_at == "proxy-a-2"
    assert result.unchecked == ["proxy-a-3", "proxy-a-4"]
    assert result.untouched == ["proxy-a-5"]
    assert "proxy-a-5" not in rec.deployed


def test_roll_out_failed_operation_is_a_deploy_failure_not_gated():
    rec = Recorder(deploy_fail={"proxy-a-2": "op"})
    result = roll(rec, [[HOSTS[0], HOSTS[1]], HOSTS[2:]])
    assert result.failed == {"proxy-a-2": "deploy failed: operation 'Run the site check' failed"}
    assert rec.gated == []  # stopped before the gate: proxy-a-1 deployed, not checked
    assert result.unchecked == ["proxy-a-1"]
    assert result.untouched == ["proxy-a-3", "proxy-a-4", "proxy-a-5"]


def test_roll_out_unreachable_host_fails_from_failed_hosts():
    rec = Recorder(deploy_fail={"proxy-a-2": "unreachable"})
    result = roll(rec, [[HOSTS[0], HOSTS[1]]])
    assert "marked it failed before any operation ran" in result.failed["proxy-a-2"]


def test_roll_out_missing_json_fails_the_whole_batch_and_shows_pyinfra_last_lines():
    lines = []
    rec = Recorder(deploy_fail={"proxy-a-1": "op", "proxy-a-2": "op"})
    result = roll(rec, [HOSTS[:2], HOSTS[2:]], log=lines.append)
    assert result.failed["proxy-a-1"] == "deploy failed: pyinfra exited 1 without results"
    assert "--> pyinfra error: No hosts remaining!" in "\n".join(lines)
    assert rec.deployed == ["proxy-a-1", "proxy-a-2"]


def test_roll_out_max_fail_percent_tolerates_failures_and_goes_on():
    rec = Recorder(deploy_fail={"proxy-a-2": "op"}, unhealthy={"proxy-a-5"})
    result = roll(rec, [HOSTS[:2], HOSTS[2:4], HOSTS[4:]], max_fail_percent=100)
    assert rec.deployed == [h.name for h in HOSTS]
    assert list(result.failed) == ["proxy-a-2", "proxy-a-5"]
    assert result.healthy == ["proxy-a-1", "proxy-a-3", "proxy-a-4"]
    assert result.stopped_at is None and not result.ok
    summary = result.summary()
    assert summary.startswith("ROLLOUT FINISHED WITH FAILURES: 2 host(s) failed")
    assert "    proxy-a-2: deploy failed: operation 'Run the site check' failed" in summary
    assert "  deployed and healthy: proxy-a-1, proxy-a-3, proxy-a-4" in summary
    assert "  untouched: -" in summary


@pytest.mark.parametrize(
    ("unhealthy", "max_fail", "stopped_at"),
    [
        ({"proxy-a-1", "proxy-a-2"}, 50, None),  # 2 of 4 = 50%: not more than 50%
        ({"proxy-a-1", "proxy-a-2", "proxy-a-3"}, 50, "proxy-a-3"),  # 75% > 50%
        ({"proxy-a-1"}, 25, None),
        ({"proxy-a-1"}, 24, "proxy-a-1"),
        ({"proxy-a-4"}, 0, "proxy-a-4"),
    ],
)
def test_roll_out_max_fail_percent_stops_when_a_batch_exceeds_it(unhealthy, max_fail, stopped_at):
    rec = Recorder(unhealthy=unhealthy)
    result = roll(rec, [HOSTS[:4], HOSTS[4:]], max_fail_percent=max_fail)
    assert result.stopped_at == stopped_at
    assert set(result.failed) == unhealthy
    if stopped_at:
        assert result.untouched == ["proxy-a-5"]
        assert "more than the" in result.summary()
        assert f"{max_fail}% tolerated" in result.summary()
    else:
        assert rec.deployed[-1] == "proxy-a-5"


# --- The command line, with fake side effects -----------------------------------------------------


def run_main(argv, rec=None, dry=None, hosts=HOSTS, env=None):
    rec = rec or Recorder()

    def load(_settings):
        if not hosts:
            raise RolloutError("the inventory has no host in group 'proxies'")
        return list(hosts)

    def in_step(_s, hosts, _limits):
        return dry_run("dry_unchanged", {h.name: "@local" for h in hosts})

    actions = Actions(load_hosts=load, deploy=rec.deploy, gate=rec.gate, dry_run=dry or in_step)
    return rollout.main(argv, environ=env or {}, actions=actions), rec


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


def drifted_on(*drifted):
    """A dry run of the real no-change capture where `drifted` hosts get a file record."""

    def fake(_s, hosts, _limits):
        extra = "".join(record(h, "file", "/etc/nginx/nginx.conf", NGINX_DIFF) for h in drifted)
        return dry_run("dry_unchanged", {h.name: "@local" for h in hosts}, extra=extra)

    return fake


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


# --- The real pyinfra, on @local ------------------------------------------------------------------


def _shape(fixture: dict) -> dict:
    """What the rollout reads from a capture, without what changes from run to run (operation
    hashes, temporary paths): the exit code, the host lists per operation, the records' kinds."""
    payload = rollout.find_json_object(fixture["stdout"])
    if payload is not None:
        for op in [*payload["plan"], *((payload["results"] or {}).get("operations") or [])]:
            op.pop("op_hash")
    drift = [
        {k: v for k, v in json.loads(line).items() if k != "subject"}
        for line in (fixture["drift_file"] or "").splitlines()
    ]
    return {"returncode": fixture["returncode"], "json": payload, "drift": drift}


def test_stored_captures_match_what_the_installed_pyinfra_prints(tmp_path):
    """tests/data/pyinfra is still what pyinfra prints (else: re-run the capture tool). The
    @local scenarios, in the tool's order on one state directory; not marked slow (about 3 s) so
    that `make check` catches a pyinfra upgrade that changes them."""
    inventory = tmp_path / "inventory_local.py"
    inventory.write_text(capture_tool.inventories(1, tmp_path / "known_hosts")["local"])
    for scenario in capture_tool.SCENARIOS:
        if scenario.inventory == "local":
            live = capture_tool.capture(scenario, tmp_path, inventory)
            assert _shape(live) == _shape(capture(scenario.name)), scenario.name


LOCAL_INVENTORY = """\
import json
import sys

proxies = ["@local"]

if __name__ == "__main__" and "--json" in sys.argv:
    host = {"name": "@local", "ssh_hostname": "127.0.0.1", "groups": ["proxies"], "data": {}}
    print(json.dumps([host]))
"""

LOCAL_DEPLOY = """\
import json
import os

from pyinfra import host
from pyinfra.operations import files, server

conf = files.directory(name="Ensure the state directory", path={path!r})
server.shell(name="Reload after a change", commands=["true"], _if=conf.did_change)
if os.environ.get("PROXY_DEPLOY_DRIFT_FILE"):  # what tasks/drift.py writes
    with open(os.environ["PROXY_DEPLOY_DRIFT_FILE"], "a") as out:
        out.write(json.dumps({{"host": host.name, "kind": "checked"}}) + "\\n")
"""


@pytest.mark.slow
def test_drift_then_deploy_then_no_drift_with_real_pyinfra(tmp_path, server):
    """What `pyinfra --dry --json` and the drift file say really decides drift; an `_if=` reload
    is not drift; the temporary drift file is removed."""
    port, handler = server
    handler.script = {"/healthz": [200], "/readyz": [200]}
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "__init__.py").write_text("")
    (tmp_path / "inventories" / "aws.py").write_text(LOCAL_INVENTORY)
    state = tmp_path / "state"
    (tmp_path / "deploy.py").write_text(LOCAL_DEPLOY.format(path=str(state)))
    (tmp_path / "tmp").mkdir()
    repo = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path / "tmp")}

    def run(*args):
        cmd = [sys.executable, "-m", "tools.rollout", *args, "--health-port", str(port)]
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)

    first = run("drift", "--report", "drift-report.txt")
    assert first.returncode == EXIT_DRIFT, first.stderr
    report = (tmp_path / "drift-report.txt").read_text()
    assert "@local: 1 difference(s)\n  operation 'Ensure the state directory'" in report
    assert list((tmp_path / "tmp").iterdir()) == []

    deploy = run("deploy")
    assert deploy.returncode == EXIT_OK, deploy.stderr
    assert "@local: deployed: 2 operation(s) changed" in deploy.stdout
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
