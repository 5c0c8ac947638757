"""`python -m lab down` (issue 2): runs last, since it takes the session's lab away."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lab import config, core, net, state
from lab.sh import ok

pytestmark = pytest.mark.lab
LAB_STAGE = 99


def nothing_left() -> list[str]:
    left = [f"netns {n}" for n in net.lab_namespaces()] + [f"link {n}" for n in net.lab_links()]
    if ok(["nft", "list", "table", "inet", config.NFT_TABLE]):
        left.append(f"nft table {config.NFT_TABLE}")
    if (config.STATE_DIR / "hosts").exists():
        left.append("host roots")
    return left


def test_down_leaves_no_namespace_link_process_or_table(lab):
    pids = [pid for pid in state.load()["pids"].values()]
    core.down()
    assert nothing_left() == []
    assert [pid for pid in pids if state.pid_alive(pid)] == []
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == lab.get(
        "ip_forward_before", "0"
    )


def test_down_twice_is_safe(lab):
    core.down()
    core.down()
    assert nothing_left() == []


def test_up_with_fake_aws_port_taken_says_so_and_leaves_nothing(lab):
    with socket.socket() as squatter:
        # On every address: the fake AWS binds the lab bridge, which does not exist yet here.
        squatter.bind(("0.0.0.0", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "lab", "up"],
            env=dict(os.environ, LAB_AWS_PORT=str(port)),
            capture_output=True,
            text=True,
            cwd=core.REPO,
        )
    assert result.returncode == 2
    assert f"port {port} on 10.77.0.1 is taken" in result.stderr
    assert "Traceback" not in result.stderr
    assert nothing_left() == []


def test_deploy_cost_bench_runs_on_one_fresh_proxy(tmp_path):
    """Last: the benchmark makes a lab of its own (one proxy), deploys twice, removes it."""
    out = tmp_path / "deploy_cost.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.deploy_cost",
            "--proxies",
            "1",
            "--down-after",
            "--out",
            str(out),
        ],
        cwd=core.REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["proxies"] == 1
    assert row["noop"]["remote_commands"] < row["first"]["remote_commands"]
    # A converged host: one command for the deploy's source address, one for every fact.
    assert row["noop"]["remote_commands"] <= 2
    assert row["first"]["changed"] is True
    assert row["noop"]["changed"] is False
    assert nothing_left() == []
