"""The README's chart: success rate over time, backend alone vs through the proxy, while the
backend's failure rate steps up (p = 0.1, 0.2, 0.3, 0.4, 0.5: one step per bucket).

    .venv/bin/python -m bench.chart [--step-seconds 60] [--requests 1500] [--out docs/report.png]

Sends bounded traffic from loadgen through proxy-1 (--requests per step), then draws the chart
with `python -m report --from-hosts --limit proxy-1 --png`, from the proxy's own access log.
Needs the lab with the deploy applied; proxy-1's access log is emptied first.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from bench.common import REPO
from lab import core

STEPS = (0.1, 0.2, 0.3, 0.4, 0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-seconds", type=int, default=60)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--out", default=str(REPO / "docs/report.png"))
    args = parser.parse_args()
    core.run_in("proxy-1", ["truncate", "-s", "0", "/var/log/nginx/proxy_access.log"])
    try:
        for p in STEPS:
            started = time.monotonic()
            core.backend_control("/reset", {"fail_rate": p})
            core.traffic(
                "loadgen",
                "http://10.77.0.101/pets/1",
                requests=args.requests,
                max_seconds=args.step_seconds,
            )
            time.sleep(max(0.0, args.step_seconds - (time.monotonic() - started)))
    finally:
        core.backend_control("/reset", {"fail_rate": 0.2})
    env = dict(os.environ, **core.env_vars())
    bucket = f"{args.step_seconds // 60}m" if args.step_seconds >= 60 else f"{args.step_seconds}s"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "report",
            "--from-hosts",
            "--limit",
            "proxy-1",
            "--bucket",
            bucket,
            "--png",
            args.out,
        ],
        cwd=REPO,
        env=env,
        check=False,
    ).returncode


if __name__ == "__main__":
    sys.exit(main())
