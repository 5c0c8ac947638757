"""Proxy overhead: latency percentiles and throughput with wrk from loadgen, direct to the backend
vs through a proxy, in the same run, as ratios.

    .venv/bin/python bench/overhead.py [--seconds 10] [--max-requests 200000] [--connections 16]

The backend does not fail during this benchmark (fail rate 0): it measures what the extra hop
costs, not retries. Each wrk run is bounded by time (--seconds) and by request count (a Lua hook
stops each thread after its share of --max-requests). Needs the lab (`python -m lab up`) and a
deployed proxy-1. Writes bench/results/overhead.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import core  # noqa: E402

TARGETS = {"direct": "http://10.77.0.10:8080/pets/1", "proxy-1": "http://10.77.0.101/pets/1"}
THREADS = 2
# Each thread stops itself after `limit` responses: the run is bounded in requests, not only time.
STOP_AFTER = """
local limit = {limit}
local done = 0
response = function(status, headers, body)
  done = done + 1
  if done >= limit then wrk.thread:stop() end
end
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: int, connections: int, max_requests: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(STOP_AFTER.format(limit=max(1, max_requests // THREADS)))
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            "plab-loadgen",
            "wrk",
            f"-t{THREADS}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    Path(script.name).unlink()
    return parse_wrk(out)


def parse_wrk(text: str) -> dict:
    """p50/p99 latency (ms) and requests per second from wrk's --latency output."""
    percentiles = {
        f"p{int(float(p))}": float(value) * UNITS[unit]
        for p, value, unit in re.findall(
            r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE
        )
    }
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    return {**percentiles, "rps": rps, "requests": requests}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--max-requests", type=int, default=200000)
    parser.add_argument("--out", default=str(REPO / "bench/results/overhead.json"))
    args = parser.parse_args()
    core.backend_control("/reset", {"fail_rate": 0.0})
    try:
        results = {
            name: wrk(url, args.seconds, args.connections, args.max_requests)
            for name, url in TARGETS.items()
        }
    finally:
        core.backend_control("/reset", {"fail_rate": 0.2})
    direct, proxied = results["direct"], results["proxy-1"]
    ratios = {key: proxied[key] / direct[key] for key in ("p50", "p99", "rps")}
    print(f"{'target':<8} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for name, r in results.items():
        print(f"{name:<8} {r['requests']:>9} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['rps']:>8.0f}")
    print(
        f"{'ratio':<8} {'':>9} {ratios['p50']:>8.2f} {ratios['p99']:>8.2f} {ratios['rps']:>8.2f}"
        "   (through proxy-1 / direct)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"results": results, "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
