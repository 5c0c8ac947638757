"""What the tests of tools/rollout/ share: real pyinfra captures replayed for other hosts, the
deploy's drift records, a fake deploy and gate that record what they touched (`Recorder`),
`main` with fake side effects (`run_main`), and a tiny HTTP server on 127.0.0.1 for the gate.

pyinfra's output is never hand-written here: it comes from tests/data/pyinfra/*.json, captured
from the real pyinfra by tools/capture_pyinfra_fixtures.py (re-run it after a pyinfra upgrade).
A capture has at most three hosts (@local, @chroot// and an unreachable one); for batches of other
hosts, `rehost` renames and duplicates the captured hosts inside the real JSON structure (each new
host plays a captured one). The drift records are the deploy's own format (tasks/drift.py), written
here as the deploy writes them."""

from __future__ import annotations

import difflib
import http.server
import json
import socket
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from tools.rollout.cli import build_parser, main
from tools.rollout.commands import Actions
from tools.rollout.drift import DryRun, parse_dry_run
from tools.rollout.errors import RolloutError
from tools.rollout.gate import HealthResult
from tools.rollout.hosts import Host
from tools.rollout.results import DeployRun, find_json_object, parse_deploy_results
from tools.rollout.run import roll_out
from tools.rollout.settings import Settings, parse_batches, settings_from

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
    payload = find_json_object(cap["stdout"])
    return json.dumps(rehost(payload, roles)) + "\n" if payload else cap["stdout"]


def deploy_run(name: str, roles: dict[str, str] | None = None) -> DeployRun:
    """`parse_deploy_results` over a real capture, its hosts played by `roles`."""
    cap = capture(name)
    roles = roles or {h: h for h in cap["hosts"]}
    return parse_deploy_results(
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
    return parse_dry_run(list(roles), cap["returncode"], stdout_of(cap, roles), drift + extra)


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


def settings(argv=(), env=None):
    args = build_parser().parse_args(list(argv))
    return settings_from(args, env or {})


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


# Registered as `server`: a test module imports `server_fixture` and its tests take `server`.
@pytest.fixture(name="server")
def server_fixture():
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
        self.gated_groups: set[tuple[str, ...]] = set()  # the target groups each gate was given

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

    def gate(self, host, *settings):
        self.gated.append(host.name)
        self.gated_groups |= {s.target_group_arns for s in settings}
        if host.name in self.unhealthy:
            return HealthResult(False, 6, (f"GET http://{host.address}:80/readyz answered 502",))
        return HealthResult(True, 1, ("ok",))


def roll(rec, batches, max_fail_percent=0, log=None):
    return roll_out(
        batches,
        deploy=rec.deploy,
        gate=rec.gate,
        max_fail_percent=max_fail_percent,
        log=log if log is not None else (lambda _: None),
    )


def spec(text):
    return parse_batches("--batches", text)


def run_main(
    argv, rec=None, dry=None, hosts=HOSTS, env=None, target_health=None, lb_target_groups=None
):
    rec = rec or Recorder()

    def load(_settings):
        if not hosts:
            raise RolloutError("the inventory has no host in group 'proxies'")
        return list(hosts)

    def in_step(_s, hosts, _limits):
        return dry_run("dry_unchanged", {h.name: "@local" for h in hosts})

    actions = Actions(load_hosts=load, deploy=rec.deploy, gate=rec.gate, dry_run=dry or in_step)
    if target_health is not None:  # the load balancer's view (lb_health.py); else never asked
        actions.target_health = target_health
    if lb_target_groups is not None:  # the load balancer's target groups by its name
        actions.lb_target_groups = lb_target_groups
    return main(argv, environ=env or {}, actions=actions), rec


def drifted_on(*drifted):
    """A dry run of the real no-change capture where `drifted` hosts get a file record."""

    def fake(_s, hosts, _limits):
        extra = "".join(record(h, "file", "/etc/nginx/nginx.conf", NGINX_DIFF) for h in drifted)
        return dry_run("dry_unchanged", {h.name: "@local" for h in hosts}, extra=extra)

    return fake


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
