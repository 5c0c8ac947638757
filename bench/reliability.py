"""Reliability vs backend failure rate p and tries k, measured through a real proxy of the lab.

For each k, proxy-1 is deployed with `proxy_tries=k` (the real deploy, --limit proxy-1); for each
p the backend fails that share of attempts, and loadgen sends GET requests through proxy-1.
Prints success rate and attempts per request next to the theory, 1 - p^k and (1 - p^k)/(1 - p),
and writes bench/results/reliability.json. proxy-1 is deployed back to its settings at the end.

    .venv/bin/python bench/reliability.py [--requests 2000] [--p 0.1,0.2,0.5] [--k 1,2,3,5]

Needs the lab (`python -m lab up`). Bounded: requests x len(p) x len(k) requests in all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import core  # noqa: E402

PROXY = "proxy-1"
URL = "http://10.77.0.101/pets/1"


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--p", default="0.1,0.2,0.3,0.5")
    parser.add_argument("--k", default="1,2,3,5")
    parser.add_argument("--out", default=str(REPO / "bench/results/reliability.json"))
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
    print(
        f"{'p':>5} {'k':>3} {'requests':>8} {'success':>9} {'1-p^k':>9} "
        f"{'attempts/req':>12} {'(1-p^k)/(1-p)':>14}"
    )
    for r in rows:
        print(
            f"{r['p']:>5.2f} {r['k']:>3} {r['requests']:>8} {r['success']:>9.3%} "
            f"{r['theory_success']:>9.3%} {r['attempts_per_request']:>12.3f} "
            f"{r['theory_attempts']:>14.3f}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"proxy": PROXY, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
