"""Reliability vs backend failure rate p and tries k, measured through a real proxy of the lab.

For each k, proxy-1 is deployed with `proxy_tries=k` (the real deploy, --limit proxy-1); for each
p the backend fails that share of attempts, and loadgen sends GET requests through proxy-1.
Prints success rate and attempts per request next to the theory, 1 - p^k and (1 - p^k)/(1 - p),
and writes bench/results/reliability.json. proxy-1 is deployed back to its settings at the end.

    .venv/bin/python -m bench.reliability [--requests 2000] [--p 0.1,0.2,0.5] [--k 1,2,3,5]

Needs the lab (`python -m lab up`). Bounded: requests x len(p) x len(k) requests in all.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from bench.common import REPO, Column, result_path, table, write_json
from lab import core

PROXY = "proxy-1"
URL = "http://10.77.0.101/pets/1"
COLUMNS = (
    Column("p", 5, ".2f"),
    Column("k", 3),
    Column("requests", 8),
    Column("success", 9, ".3%"),
    Column("1-p^k", 9, ".3%"),
    Column("attempts/req", 12, ".3f"),
    Column("(1-p^k)/(1-p)", 14, ".3f"),
)
ROW_KEYS = (  # a row's figures, column by column
    "p",
    "k",
    "requests",
    "success",
    "theory_success",
    "attempts_per_request",
    "theory_attempts",
)


def deploy(*data: str) -> None:
    env = dict(os.environ, **core.env_vars())
    env.pop("CI", None)
    args = [
        str(REPO / ".venv/bin/pyinfra"),
        "-y",
        "inventories/aws.py",
        "deploy.py",
        "--limit",
        PROXY,
    ]
    for item in data:
        args += ["--data", item]
    subprocess.run(args, cwd=REPO, env=env, check=True, capture_output=True)


def measure(p: float, requests: int) -> dict:
    core.backend_control("/reset", {"fail_rate": p})
    result = core.traffic("loadgen", URL, requests=requests)
    attempts = core.backend_control()["attempts"]
    return {
        "success": result["success_rate"],
        "attempts_per_request": attempts / result["requests"],
    }


def print_table(rows: list[dict]) -> None:
    """Measured success and attempts per request next to the theory, one row per (p, k)."""
    print("\n".join(table(COLUMNS, ([r[key] for key in ROW_KEYS] for r in rows))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--p", default="0.1,0.2,0.3,0.5")
    parser.add_argument("--k", default="1,2,3,5")
    parser.add_argument("--out", default=str(result_path("reliability")))
    args = parser.parse_args()
    rates = [float(x) for x in args.p.split(",")]
    tries = [int(x) for x in args.k.split(",")]
    rows = []
    try:
        for k in tries:
            deploy(f"proxy_tries={k}")
            for p in rates:
                measured = measure(p, args.requests)
                rows.append(
                    {
                        "p": p,
                        "k": k,
                        "requests": args.requests,
                        **measured,
                        "theory_success": 1 - p**k,
                        "theory_attempts": (1 - p**k) / (1 - p),
                    }
                )
    finally:
        deploy()
        core.backend_control("/reset", {"fail_rate": 0.2})
    print_table(rows)
    write_json(args.out, {"proxy": PROXY, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
