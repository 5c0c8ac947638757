"""What the deploy costs: the first converge of fresh hosts and a no-op re-run, for 1 and 3
proxies (more with --proxies), as wall time and number of remote commands.

    .venv/bin/python bench/deploy_cost.py [--proxies 1,3] [--down-after]

Each size gets a fresh lab (`python -m lab down`, then `up --proxies N`: new hosts from the cached
Debian bases), so the first run installs everything. Remote commands are counted from pyinfra's
-vvv output (one `>>>` line per command, facts included). Writes bench/results/deploy_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import config, core  # noqa: E402


def timed_deploy() -> dict:
    env = dict(os.environ, **core.env_vars())
    env.pop("CI", None)
    started = time.monotonic()
    run = subprocess.run(
        [str(REPO / ".venv/bin/pyinfra"), "-y", "-vvv", "inventories/aws.py", "deploy.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.monotonic() - started
    if run.returncode != 0:
        raise SystemExit(f"deploy failed:\n{run.stderr[-3000:]}")
    output = run.stdout + run.stderr
    return {"seconds": round(seconds, 1), "remote_commands": output.count(">>>")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxies", default="1,3")
    parser.add_argument("--down-after", action="store_true", help="remove the lab at the end")
    parser.add_argument("--out", default=str(REPO / "bench/results/deploy_cost.json"))
    args = parser.parse_args()
    rows = []
    for count in [int(x) for x in args.proxies.split(",")]:
        core.down()
        core.up(count, dict(config.DEFAULT_SUITES))
        first, again = timed_deploy(), timed_deploy()
        rows.append({"proxies": count, "first": first, "noop": again})
    if args.down_after:
        core.down()
    print(f"{'proxies':>7} {'first s':>8} {'commands':>9} {'no-op s':>8} {'commands':>9}")
    for r in rows:
        print(
            f"{r['proxies']:>7} {r['first']['seconds']:>8.1f} "
            f"{r['first']['remote_commands']:>9} {r['noop']['seconds']:>8.1f} "
            f"{r['noop']['remote_commands']:>9}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
