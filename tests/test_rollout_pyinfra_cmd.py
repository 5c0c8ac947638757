"""Tests of tools/rollout/pyinfra_cmd.py against the real pyinfra on @local: the commands it
runs, the stored captures still matching the installed pyinfra, and drift -> deploy -> drift
end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rollout_fakes import (
    capture,
    server_fixture,  # noqa: F401 (the fixture `server`)
)

from tools import capture_pyinfra_fixtures as capture_tool
from tools.rollout.errors import EXIT_DRIFT, EXIT_OK
from tools.rollout.pyinfra_cmd import dry_run_command
from tools.rollout.results import find_json_object
from tools.rollout.settings import Settings

# --- Drift, from real `pyinfra --dry --json` captures plus the deploy's records ---------------


def test_dry_run_command_never_passes_yes():
    # with -y pyinfra skips change detection, and every host would look in step
    cmd = dry_run_command(Settings(), ["proxies"])
    assert "-y" not in cmd and "--yes" not in cmd
    assert cmd[-6:] == ["--dry", "--json", "inventories/aws.py", "deploy.py", "--limit", "proxies"]


# --- The real pyinfra, on @local --------------------------------------------------------------


def _shape(fixture: dict) -> dict:
    """What the rollout reads from a capture, without what changes from run to run (operation
    hashes, temporary paths): the exit code, the host lists per operation, the records' kinds."""
    payload = find_json_object(fixture["stdout"])
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
