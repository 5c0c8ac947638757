"""What the deploy costs: the first converge of fresh hosts and a no-op re-run, for 1, 10 and 50
proxies (or --proxies), as wall time, remote commands and the controller's CPU time.

    .venv/bin/python -m bench.deploy_cost [--proxies 1,10,50] [--down-after]

Each size gets a fresh lab (`python -m lab down`, then `up --proxies N`: new hosts over the cached
Debian bases, packages through the lab's package cache), so the first run installs everything.
Per size, three runs of the deploy:
  1. the first converge, with -vvv: its wall time and remote commands (one `>>>` line each);
  2. a no-op, as operators run it (no -vvv): its wall time and the controller's CPU seconds
     (user + system of the pyinfra process, from wait4);
  3. the same no-op with -vvv, to count its remote commands (and check it changed nothing).
Prints a table (ratios against the first size) and writes bench/results/deploy_cost.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

from bench.common import REPO, RESULTS, Column, result_path, table, write_json
from lab import config, core

PYINFRA = str(REPO / ".venv/bin/pyinfra")
COLUMNS = (
    Column("proxies", 7),
    Column("lab up s", 8, ".1f"),
    Column("first s", 8, ".1f"),
    Column("cmds/host", 9, ".1f"),
    Column("no-op s", 8, ".2f"),
    Column("x first", 7, ".2f"),
    Column("cmds/host", 9, ".1f"),
    Column("CPU s/host", 10, ".3f"),
    Column("changed", 7),
)


def deploy(verbose: bool) -> dict:
    """One deploy of the whole lab: wall seconds, controller CPU seconds, remote commands."""
    env = dict(os.environ, **core.env_vars())
    env.pop("CI", None)
    command = [PYINFRA, "-y", *(["-vvv"] if verbose else []), "inventories/aws.py", "deploy.py"]
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        log = RESULTS / "deploy_cost-failed.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(output)
        raise SystemExit(f"deploy failed (whole output in {log}):\n{output[-3000:]}")
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "remote_commands": output.count(">>>") if verbose else None,
        "changed": changed(output) if verbose else None,
    }


def changed(output: str) -> bool:
    """Whether pyinfra's results table has an operation that succeeded with a change (its rows
    end in: hosts, success, error, no change; `-` for none)."""
    table = output.split("--> Results:")[-1].split("--> Disconnecting")[0]
    for line in table.splitlines():
        columns = line.split()
        if len(columns) >= 4 and columns[-3].isdigit() and int(columns[-3]) > 0:
            return True
    return False


def measure(count: int) -> dict:
    core.down()
    started = time.monotonic()
    core.up(count, dict(config.DEFAULT_SUITES))
    boot = round(time.monotonic() - started, 1)
    first = deploy(verbose=True)
    noop = deploy(verbose=False)
    counted = deploy(verbose=True)
    noop["remote_commands"], noop["changed"] = counted["remote_commands"], counted["changed"]
    return {"proxies": count, "lab_up_seconds": boot, "first": first, "noop": noop}


def _cells(r: dict, base: dict) -> list:
    """One size's row: per-host figures, and the no-op time against the first size's."""
    n, first, noop = r["proxies"], r["first"], r["noop"]
    return [
        n,
        r["lab_up_seconds"],
        first["seconds"],
        first["remote_commands"] / n,
        noop["seconds"],
        noop["seconds"] / base["noop"]["seconds"],
        noop["remote_commands"] / n,
        noop["cpu_seconds"] / n,
        "yes" if noop["changed"] else "no",
    ]


def print_table(rows: list[dict]) -> None:
    base = rows[0]
    print("\n".join(table(COLUMNS, (_cells(r, base) for r in rows))))
    print(f"(x first: no-op time against {base['proxies']} proxies; {machine()})")


def machine() -> str:
    return f"{os.cpu_count()} CPUs, {platform.machine()}, {time.strftime('%Y-%m-%d')}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxies", default="1,10,50")
    parser.add_argument("--down-after", action="store_true", help="remove the lab at the end")
    parser.add_argument("--out", default=str(result_path("deploy_cost")))
    args = parser.parse_args()
    rows = [measure(int(x)) for x in args.proxies.split(",")]
    if args.down_after:
        core.down()
    print_table(rows)
    write_json(args.out, {"machine": machine(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
