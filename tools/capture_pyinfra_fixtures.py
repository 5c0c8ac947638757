"""Capture what the installed pyinfra really prints, for tests/test_rollout.py.

    .venv/bin/python -m tools.capture_pyinfra_fixtures [--out tests/data/pyinfra]

Re-run it after a pyinfra upgrade and review the diff: tools/rollout/ decides from this output
only (`-y --json` results, `--dry --json` plan, the PROXY_DEPLOY_DRIFT_FILE lines), so its tests
must be fed the real thing, not hand-written JSON. tests/test_rollout.py also runs pyinfra live
once and checks that the installed version still prints the shape stored here.

Each scenario runs the real `python -m pyinfra` on a throwaway deploy (written to a temporary
directory, below) against hosts on this machine only:

- `@local`: this machine;
- `@chroot//`: this machine again, through pyinfra's chroot connector (`chroot /`, needs root):
  a second real host, so one run can show a host that fails next to one that does not;
- `proxy-unreachable`: SSH to a loopback port nothing listens on (refused at once, no traffic
  leaves the machine).

The deploy creates a state directory and a marker file per host, reloads "after a change" with
`_if=` (pyinfra lists it under hosts_with_conditional_change), and, when CAPTURE_FAIL_HOST names
a host, runs a check that fails there. When PROXY_DEPLOY_DRIFT_FILE is set it writes the same
JSON lines as tasks/drift.py: "checked" for each host it planned, and a "file" record when the
marker file is missing.

Each fixture is one JSON object: {"scenario", "command", "hosts", "pyinfra_version",
"returncode", "stdout" (exactly as printed), "stderr_tail" (its last lines, for the human only),
"drift_file" (the side file's text, dry runs only)}, with the temporary directory's path
written /tmp/WORKDIR.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "data" / "pyinfra"
DRIFT_FILE_ENV = "PROXY_DEPLOY_DRIFT_FILE"
STDERR_TAIL = 5

DEPLOY = """\
import io
import json
import os

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server

STATE = os.path.join({state!r}, host.name.strip("@/").replace("/", "_") or "root")
MARKER = STATE + "/marker"
FAIL_HOST = os.environ.get("CAPTURE_FAIL_HOST")


def record(**fields):
    path = os.environ.get("PROXY_DEPLOY_DRIFT_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({{"host": host.name, **fields}}) + "\\n")


if host.get_fact(File, path=MARKER) is None:
    record(kind="file", subject=MARKER, detail="missing on the host",
           operation="Install the marker file")
state = files.directory(name="Ensure the state directory", path=STATE)
files.put(name="Install the marker file", src=io.StringIO("marker\\n"), dest=MARKER)
server.shell(name="Reload after a change", commands=["true"], _if=state.did_change)
if FAIL_HOST:
    server.shell(
        name="Run the site check",
        commands=["echo 'site check failed' >&2; false" if host.name == FAIL_HOST else "true"],
    )
record(kind="checked")
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    inventory: str  # key of `inventories()`
    args: tuple[str, ...]  # ("-y",) to deploy, ("--dry",) to plan
    state: str  # state directory name: scenarios sharing it see each other's changes
    fail_host: str = ""


# In order: a scenario may rely on the ones before it (unchanged after changed).
SCENARIOS = (
    Scenario("dry_changed", "local", ("--dry",), "single"),
    Scenario("deploy_changed", "local", ("-y",), "single"),
    Scenario("deploy_unchanged", "local", ("-y",), "single"),
    Scenario("dry_unchanged", "local", ("--dry",), "single"),
    Scenario("deploy_all_failed", "local", ("-y",), "single", fail_host="@local"),
    Scenario("dry_mixed", "three", ("--dry",), "three"),
    Scenario("deploy_mixed", "three", ("-y",), "three", fail_host="@local"),
    Scenario("dry_unreachable", "unreachable", ("--dry",), "none"),
)


def _closed_port() -> int:
    """A loopback port that was free a moment ago: SSH to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inventories(port: int, known_hosts: Path) -> dict[str, str]:
    unreachable = (
        f'("proxy-unreachable", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}, '
        f'"ssh_connect_retries": 0, "ssh_known_hosts_file": {str(known_hosts)!r}}})'
    )
    return {
        "local": 'proxies = ["@local"]\n',
        "three": f'proxies = ["@local", "@chroot//", {unreachable}]\n',
        "unreachable": f"proxies = [{unreachable}]\n",
    }


def capture(scenario: Scenario, workdir: Path, inventory: Path) -> dict:
    """Run one scenario with the real pyinfra; return the fixture."""
    deploy = workdir / "deploy.py"
    deploy.write_text(DEPLOY.format(state=str(workdir / "state" / scenario.state)))
    cmd = [sys.executable, "-m", "pyinfra", *scenario.args, "--json", inventory.name, deploy.name]
    env = {**os.environ, "PYINFRA_PROGRESS": "off", "CAPTURE_FAIL_HOST": scenario.fail_host}
    drift_file = None
    if "--dry" in scenario.args:
        drift_file = workdir / "drift.jsonl"
        drift_file.write_text("")
        env[DRIFT_FILE_ENV] = str(drift_file)
    else:
        env.pop(DRIFT_FILE_ENV, None)
    proc = subprocess.run(
        cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    fixture = {
        "scenario": scenario.name,
        "command": ["pyinfra", *scenario.args, "--json", "INVENTORY", "deploy.py"],
        "hosts": _inventory_hosts(inventory),
        "pyinfra_version": version("pyinfra"),
        "returncode": proc.returncode,
        "stdout": proc.stdout,
        "stderr_tail": [line for line in proc.stderr.splitlines() if line.strip()][-STDERR_TAIL:],
        "drift_file": drift_file.read_text() if drift_file else None,
    }
    if drift_file:
        drift_file.unlink()
    # the temporary directory's name changes on every run: keep re-captures' diffs readable
    return json.loads(json.dumps(fixture).replace(str(workdir), "/tmp/WORKDIR"))


def _inventory_hosts(inventory: Path) -> list[str]:
    namespace: dict = {}
    exec(inventory.read_text(), namespace)  # our own three-line inventory, written above
    return [h if isinstance(h, str) else h[0] for h in namespace["proxies"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture directory")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("capture: needs root (the @chroot// host runs chroot)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pyinfra-capture-") as tmp:
        workdir = Path(tmp)
        sources = inventories(_closed_port(), workdir / "known_hosts")
        for scenario in SCENARIOS:
            inventory = workdir / f"inventory_{scenario.inventory}.py"
            inventory.write_text(sources[scenario.inventory])
            fixture = capture(scenario, workdir, inventory)
            path = args.out / f"{scenario.name}.json"
            path.write_text(json.dumps(fixture, indent=2) + "\n")
            print(f"{path.relative_to(REPO)}: exit {fixture['returncode']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
