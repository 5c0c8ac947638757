"""Benchmark: build the EC2 inventory of N instances from a fake EC2 (moto_server).

    .venv/bin/python bench/inventory_build.py                 # 1,000 instances, 5 repetitions
    .venv/bin/python bench/inventory_build.py --instances 20 --repeat 1 --output /tmp/x.json

Starts moto_server on a free loopback port (and stops it, by its PID), seeds N proxies in
Auto Scaling-style batches that share a Name (so de-duplication is exercised) plus a few
backends, then times `load_inventory` + pyinfra's `Inventory` construction, i.e. everything
`pyinfra inventories/aws.py ...` does before connecting. Cache off. Prints a small table and
writes the figures to bench/results/inventory_build.json.

The time spent waiting for moto_server's answers is measured separately: moto serialises each
instance in Python, which is far slower than real EC2, and that part is not the inventory's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import boto3  # noqa: E402
import botocore.endpoint  # noqa: E402
import moto  # noqa: E402
from pyinfra.api import Inventory  # noqa: E402

from inventories.ec2 import shared_data_loader  # noqa: E402
from inventories.loader import load_inventory  # noqa: E402
from inventories.settings import InventorySettings  # noqa: E402

REGION = "eu-west-1"
TARGET_SECONDS = 3.0  # the "done when" figure for 1,000 instances
BATCH_SIZE = 100  # instances per run_instances call: one "Auto Scaling group" each
SERVER_START_TIMEOUT = 30.0
DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "inventory_build.json"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print/write the results."""
    options = parse_args(argv)
    moto_server = Path(sys.executable).with_name("moto_server")
    with running_moto_server(moto_server) as endpoint:
        environ = bench_environment(endpoint, options.instances)
        os.environ.update(environ)
        backends = seed_fleet(endpoint, options.instances)
        settings = InventorySettings.from_environ()
        runs = [timed_build(settings) for _ in range(options.repeat)]
    expected = options.instances + backends
    built = {run["hosts"] for run in runs}
    if built != {expected}:
        print(f"error: built {sorted(built)} hosts, expected {expected}", file=sys.stderr)
        return 1
    results = summarise(options, runs, backends)
    print(format_table(results))
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {options.output}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000, help="proxies to seed (1000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed builds (5)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    options = parser.parse_args(argv)
    if options.instances < 1 or options.repeat < 1:
        parser.error("--instances and --repeat must be at least 1")
    return options


def free_loopback_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_moto_server(executable: Path) -> Iterator[str]:
    """Start moto_server on loopback; yield its URL; stop that process (by PID) afterwards."""
    port = free_loopback_port()
    # Skip moto's ~1,300 default AMIs: with them each launched instance scans the whole list.
    server_env = {**os.environ, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=server_env,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    """Block until the server accepts connections, or fail if it exits or takes too long."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with status {process.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"moto_server did not listen on port {port} within {SERVER_START_TIMEOUT}s")


def bench_environment(endpoint: str, instances: int) -> dict[str, str]:
    """The environment both the seeding and the inventory use (fake credentials, no cache)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "EC2_INVENTORY_REGIONS": REGION,
        "EC2_INVENTORY_CACHE_TTL": "0",
        "ENVIRONMENT": "bench",
        # The backends are hosts too, as when the recorded figures were taken (and as
        # tests/test_bench_inventory.py counts them): a superset of the default build, in which
        # every proxy still gets ec2_backend_addresses.
        "EC2_INVENTORY_BACKENDS_AS_HOSTS": "true",
    }


def seed_fleet(endpoint: str, instances: int) -> int:
    """Launch the proxies (batches sharing a Name) and 1 backend per 100; return backends."""
    client = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
    launched = 0
    batch = 0
    while launched < instances:
        count = min(BATCH_SIZE, instances - launched)
        launch(client, count, name=f"proxy-asg{batch}", role="reverse-proxy")
        launched += count
        batch += 1
    backends = max(1, instances // 100)
    launch(client, backends, name="app", role="app")
    return backends


def launch(client: Any, count: int, *, name: str, role: str) -> None:
    """One run_instances call with the tags the inventory filters on."""
    tags = [
        {"Key": "Name", "Value": name},
        {"Key": "Role", "Value": role},
        {"Key": "Environment", "Value": "bench"},
    ]
    client.run_instances(
        ImageId="ami-12c6146b",
        InstanceType="t3.micro",
        MinCount=count,
        MaxCount=count,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )


def timed_build(settings: InventorySettings) -> dict[str, float]:
    """One build, as pyinfra does it: query, hosts, groups, pyinfra Inventory."""
    # A pyinfra run is a fresh process: make each build parse botocore's models again.
    shared_data_loader.cache_clear()
    with time_spent_waiting_for_server() as waited:
        started = time.perf_counter()
        inventory = load_inventory(settings, use_cache=False)
        groups = inventory.pyinfra_groups()
        names = [host.name for host in inventory.hosts]
        pyinfra_groups = {name: (hosts, {}) for name, hosts in groups.items()}
        pyinfra_inventory = Inventory((names, {}), **pyinfra_groups)
        total = time.perf_counter() - started
    return {"seconds": total, "server_seconds": waited(), "hosts": len(pyinfra_inventory)}


@contextmanager
def time_spent_waiting_for_server() -> Iterator[Callable[[], float]]:
    """Sum the time between sending each HTTP request and receiving its response headers.

    moto_server renders the whole response before sending headers, so this is its work.
    """
    original = botocore.endpoint.Endpoint._send
    spent = [0.0]

    def timed_send(self: Any, request: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, request)
        finally:
            spent[0] += time.perf_counter() - started

    botocore.endpoint.Endpoint._send = timed_send  # type: ignore[method-assign]
    try:
        yield lambda: spent[0]
    finally:
        botocore.endpoint.Endpoint._send = original  # type: ignore[method-assign]


def summarise(options: argparse.Namespace, runs: list[dict[str, float]], backends: int) -> dict:
    """The figures written to JSON."""
    totals = [run["seconds"] for run in runs]
    servers = [run["server_seconds"] for run in runs]
    own = [run["seconds"] - run["server_seconds"] for run in runs]
    return {
        "benchmark": "inventory_build",
        "instances": options.instances,
        "backends": backends,
        "hosts": int(runs[0]["hosts"]),
        "repeat": options.repeat,
        "seconds": {"min": min(totals), "median": statistics.median(totals), "all": totals},
        "fake_ec2_seconds_median": statistics.median(servers),
        "inventory_seconds_median": statistics.median(own),
        "target_seconds": TARGET_SECONDS,
        "versions": {
            "python": platform.python_version(),
            "boto3": boto3.__version__,
            "moto": moto.__version__,
        },
    }


def format_table(results: dict) -> str:
    """A small fixed-width table of the figures."""
    header = f"{'instances':>9}  {'hosts':>5}  {'min s':>6}  {'median s':>8}  "
    header += f"{'fake EC2 s':>10}  {'inventory s':>11}"
    row = (
        f"{results['instances']:>9}  {results['hosts']:>5}  {results['seconds']['min']:>6.2f}  "
        f"{results['seconds']['median']:>8.2f}  {results['fake_ec2_seconds_median']:>10.2f}  "
        f"{results['inventory_seconds_median']:>11.2f}"
    )
    note = (
        f"(median of {results['repeat']}; 'fake EC2' = waiting for moto_server's answers, "
        f"'inventory' = the rest: parsing, naming, groups, pyinfra Inventory; "
        f"target {results['target_seconds']:.0f} s for 1,000)"
    )
    return "\n".join([header, row, note])


if __name__ == "__main__":
    raise SystemExit(main())
