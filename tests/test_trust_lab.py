"""Trust boundaries on the lab (issue 13): forged routing headers, /readyz limited and logged,
per-client buckets behind a trusted peer, PUT/DELETE retries against the flaky backend.

Runs after the first deploy (LAB_STAGE 21) and reuses it: in the lab, loadgen (10.77.0.20) is in
`lb_subnet_cidrs` (group_data/env_lab.py), so it plays the load balancer and its X-Forwarded-For
names the client. Only the PUT/DELETE test deploys (one host, then back).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, run_deploy
from lab_hosts import PROXY_LOG, on_host

from lab import config, core, state

pytestmark = pytest.mark.lab
LAB_STAGE = 21

# Sent by a client, each would steer a framework that trusts it (templates/nginx/proxy.conf.j2).
FORGED = {
    "Forwarded": "for=203.0.113.9;host=evil.example;proto=https",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Port": "8443",
    "X-Forwarded-Prefix": "/admin",
    "X-Original-URL": "/admin/delete-all",
    "X-Rewrite-URL": "/admin/delete-all",
    "X_Original_URL": "/admin/delete-all",
    "X-HTTP-Method-Override": "DELETE",
}

# One request per line from inside loadgen's namespace: the statuses, in order.
_SENDER = """
import http.client, json, sys
address, path, count, headers, method = json.loads(sys.argv[1])
conn = http.client.HTTPConnection(address, 80, timeout=10)
out = []
for _ in range(count):
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    out.append([response.status, body.decode(errors="replace")])
print(json.dumps(out))
"""


def send(
    address: str, path: str, count: int = 1, headers: dict | None = None, method: str = "GET"
) -> list[tuple[int, str]]:
    """COUNT requests on one keepalive connection from loadgen; (status, body) of each."""
    args = json.dumps([address, path, count, headers or {}, method])
    done = subprocess.run(
        ["ip", "netns", "exec", config.NS_PREFIX + "loadgen", sys.executable, "-c", _SENDER, args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [(status, body) for status, body in json.loads(done.stdout)]


@pytest.fixture(scope="module")
def echoing_backend(lab):
    """The flaky backend with its /headers, PUT and DELETE routes (lab/backend.py): a backend
    started by an older checkout lacks them and is restarted, by its recorded PID."""
    app = f"http://10.77.0.10:{config.BACKEND_PORT}/headers"
    probe = ["ip", "netns", "exec", config.NS_PREFIX + "app-1", "curl", "-s", "-o", "/dev/null"]
    code = subprocess.run([*probe, "-w", "%{http_code}", app], capture_output=True, text=True)
    if code.stdout not in ("200", "500", "502", "000"):  # 404: an older backend
        lab_state = state.load()
        state.stop_pid(lab_state["pids"]["backend"])
        core.start_backend(lab_state)
    core.backend_control("/reset", {"fail_rate": 0.0})
    yield
    core.backend_control("/reset", {"fail_rate": 0.2, "fail_modes": ["500", "502", "drop"]})


def test_forged_routing_headers_never_reach_the_backend(deployed, proxies, echoing_backend):
    for node in (proxies[0], proxies[-1]):  # nginx 1.26 (Debian 13) and 1.22 (Debian 12)
        [(status, body)] = send(node.address, "/headers", headers=FORGED)
        assert status == 200, (node.name, body)
        received = {name.lower(): value for name, value in json.loads(body)["headers"]}
        leaked = {h: received[h.lower()] for h in FORGED if h.lower() in received}
        assert leaked == {"X-Forwarded-Host": node.address}, node.name  # nginx's own: the Host
        assert received["host"] == node.address


def test_readyz_is_limited_per_client_and_logged(deployed, proxies, echoing_backend):
    node = proxies[0]
    client = {"X-Forwarded-For": "198.51.100.7"}
    statuses = [status for status, _ in send(node.address, "/readyz", 20, client)]
    # 1 r/s with a burst of 5: six at once pass (seven if the second turned), the rest get 429.
    print(f"\n/readyz x20 from one client: {statuses}")
    assert 6 <= statuses.count(200) <= 7, statuses
    assert statuses[:6] == [200] * 6 and statuses.count(429) == 20 - statuses.count(200)
    logged = [
        json.loads(line)
        for line in on_host(node.name, f"tail -n 200 {PROXY_LOG}").splitlines()
        if '"/readyz"' in line
    ]
    mine = [e for e in logged if e["remote_addr"] == "198.51.100.7"]
    assert {e["status"] for e in mine} == {200, 429}, logged[-3:]
    assert {e["peer_addr"] for e in mine} == {"10.77.0.20"}


def test_clients_behind_one_trusted_peer_get_separate_buckets(
    deployed, lab_env, proxies, echoing_backend
):
    node = proxies[1]
    noisy, quiet = {"X-Forwarded-For": "198.51.100.21"}, {"X-Forwarded-For": "198.51.100.22"}
    # The lab raises the per-client limits for its load tests: this proxy gets low ones.
    low = ["--data", "rate_limit_rps=2", "--data", "rate_limit_burst=5"]
    try:
        run = run_deploy(lab_env, "--limit", node.name, *low)
        assert run.returncode == 0, run.output[-3000:]
        noisy_statuses = [status for status, _ in send(node.address, "/pets/1", 20, noisy)]
        assert noisy_statuses[:6] == [200] * 6 and noisy_statuses[-1] == 429, noisy_statuses
        # The noisy client is being limited; the other one, behind the same peer, is not ...
        quiet_statuses = [status for status, _ in send(node.address, "/pets/1", 5, quiet)]
        assert quiet_statuses == [200] * 5
        assert [status for status, _ in send(node.address, "/pets/1", 1, noisy)] == [429]
        # ... and the load balancer's health check keeps passing, for the limited client too.
        assert [status for status, _ in send(node.address, "/healthz", 20, noisy)] == [200] * 20
        print(f"\n/pets/1 x20 from one client behind the peer: {noisy_statuses}")
    finally:
        assert run_deploy(lab_env, "--limit", node.name).returncode == 0


def test_put_and_delete_are_retried_after_reaching_the_backend_post_is_not(
    deployed, lab_env, proxies, echoing_backend
):
    node = proxies[2]  # Debian 12, nginx 1.22
    methods = 'allowed_methods=["GET","HEAD","POST","PUT","DELETE"]'
    try:
        run = run_deploy(lab_env, "--limit", node.name, "--data", methods)
        assert run.returncode == 0, run.output[-3000:]
        seen = {}
        for method, path in (("PUT", "/appointments/7"), ("DELETE", "/appointments/7")):
            core.backend_control("/reset", {"fail_rate": 0.2, "fail_modes": ["500", "502"]})
            result = core.traffic(
                "loadgen", f"http://{node.address}{path}", requests=300, method=method
            )
            seen[method] = (result["success_rate"], core.backend_control())
        core.backend_control("/reset", {"fail_rate": 0.2, "fail_modes": ["500", "502"]})
        post = core.traffic(
            "loadgen", f"http://{node.address}/appointments", 300, method="POST", body="{}"
        )
        sent = core.backend_control()["attempts"]
        print(f"\nPOST: {post['success_rate']:.3f} success, {sent} attempts for 300 requests")
        for method, (success, stats) in seen.items():
            print(f"{method}: {success:.3f} success, {stats['attempts']} attempts for 300 requests")
            assert success >= 0.99, (method, success)  # 1 - 0.2^5 = 99.97% expected
            assert stats["attempts"] > 330, (method, stats)  # ~375 expected: retried
            assert set(stats["attempts_per_request_id"]) >= {"1", "2"}, (method, stats)
        stats = core.backend_control()
        assert stats["attempts"] == 300  # POST: never sent twice
        assert stats["attempts_per_request_id"] == {"1": 300}
        assert post["success_rate"] < 0.9  # ~80%: the failures reach the client
    finally:
        assert run_deploy(lab_env, "--limit", node.name).returncode == 0
