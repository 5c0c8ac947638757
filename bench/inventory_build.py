"""Benchmark: build the EC2 inventory of N instances, as a fresh process, against a fake EC2.

    .venv/bin/python -m bench.inventory_build                 # 1,000 proxies, 5 repetitions
    .venv/bin/python -m bench.inventory_build --instances 20 --repeat 1 --output /tmp/x.json

What is timed is the whole inventory process, `python -m inventories.aws --json` (what
`tools/rollout.py` runs; pyinfra execs the same file), started as a child process so that
interpreter start and imports count: its wall time, and its CPU time (user + system, from
`os.wait4`), cache off.

1. moto_server is started on a free loopback port (and stopped, by its PID) and seeded with N
   proxies, one instance per reservation as an Auto Scaling group launches them (so moto pages
   by instance, like EC2), 100 to a shared Name (so de-duplication is exercised), plus one
   backend per 100 proxies. The backends are hosts too (EC2_INVENTORY_BACKENDS_AS_HOSTS=true).
2. "moto": the inventory runs against moto_server, through `bench/recorded_ec2.py`'s recording
   proxy, which also adds up how long moto took to answer (it renders each instance in Python).
   This first run is the recording: the raw HTTP answers to exactly the requests the inventory
   makes (DescribeInstances pages, MaxResults and filters as sent).
3. "recorded": the inventory runs --repeat times against those answers served again by
   `bench/recorded_ec2.py`, as fast as a local web server can: the figure for the inventory
   itself. Then with the cache on, to measure a cache hit (the cache is not how the figure is
   met: it is off in CI and by default).
4. A CPU breakdown: the same command, with process-CPU clocks read at each step of the real
   code path (imports, settings, credentials, client, HTTP, botocore's parsing, our
   conversion, hosts, JSON output); interpreter start from `python -c pass`; "exit and the
   rest" is what the end-to-end figure has beyond the sum.

Every run must print the same hosts. Prints a table; writes bench/results/inventory_build.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO, Column, result_path, table, write_json

REGION = "eu-west-1"
TARGET_SECONDS = 3.0  # issue 11: wall time for 1,000 instances, end to end
TARGET_CPU_SECONDS = 0.8  # issue 11: CPU of the inventory process, start and imports included
ASG_SIZE = 100  # proxies sharing one Name, like one Auto Scaling group
PROXIES_PER_BACKEND = 100
SERVER_START_TIMEOUT = 30.0
CHILD_TIMEOUT = 900.0  # moto takes 5 s or more for 1,000 instances; room for a busy machine
INVENTORY_COMMAND = ("-m", "inventories.aws", "--json")
DEFAULT_OUTPUT = result_path("inventory_build")
# The breakdown's steps, in the order the process takes them (see `measure_phases`).
PHASES = (
    "interpreter start",
    "imports",
    "settings",
    "credentials",
    "client",
    "http",
    "botocore parsing",
    "our conversion",
    "hosts",
    "json output",
    "exit and the rest",
)
COLUMNS = (
    Column("fake EC2", 9, align="<"),
    Column("instances", 9),
    Column("hosts", 5),
    Column("runs", 4),
    Column("wall s", 7, ".2f"),
    Column("min", 6, ".2f"),
    Column("CPU s", 6, ".2f"),
    Column("min", 6, ".2f"),
    Column("server s", 8, ".2f"),
)


@dataclass(frozen=True)
class Run:
    """One inventory process: wall and CPU seconds, and what it printed."""

    wall: float
    cpu: float
    stdout: str


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print/write the results (or, with --phases, be the child)."""
    options = parse_args(argv)
    if options.phases:
        print(json.dumps(measure_phases()))
        return 0
    from bench.recorded_ec2 import recording_proxy, serving

    moto_server = Path(sys.executable).with_name("moto_server")
    with running_moto_server(moto_server) as endpoint:
        backends = seed_fleet(endpoint, options.instances)
        with recording_proxy(endpoint) as proxy:
            moto_runs, moto_seconds = [], []
            for _ in range(options.moto_repeat):
                waited = proxy.upstream_seconds
                moto_runs.append(run_inventory(bench_environment(proxy.url)))
                moto_seconds.append(proxy.upstream_seconds - waited)
    recording = proxy.recording
    if options.save_recording:
        recording.save(options.save_recording)
    with serving(recording) as fake, tempfile.TemporaryDirectory() as cache_dir:
        environ = bench_environment(fake.url)
        recorded_runs = [run_inventory(environ) for _ in range(options.repeat)]
        phases = [run_phases(environ) for _ in range(options.repeat)]
        cached = {
            **environ,
            "EC2_INVENTORY_CACHE_TTL": "3600",
            "EC2_INVENTORY_CACHE_DIR": cache_dir,
        }
        run_inventory(cached)  # fills the cache
        cache_runs = [run_inventory(cached) for _ in range(options.repeat)]
    starts = [run_child([sys.executable, "-c", "pass"], dict(os.environ)) for _ in range(5)]

    hosts = json.loads(moto_runs[0].stdout)
    expected = options.instances + backends
    if len(hosts) != expected:
        print(f"error: built {len(hosts)} hosts, expected {expected}", file=sys.stderr)
        return 1
    outputs = {run.stdout for run in [*moto_runs, *recorded_runs, *cache_runs]}
    if len(outputs) != 1:
        print("error: the runs did not all print the same hosts", file=sys.stderr)
        return 1
    results = summarise(
        options,
        backends=backends,
        hosts=len(hosts),
        moto=(moto_runs, moto_seconds),
        recorded=recorded_runs,
        cache_hit=cache_runs,
        phases=phases,
        interpreter=[run.cpu for run in starts],
        pages=page_sizes(recording),
    )
    print(format_table(results))
    write_json(options.output, results)
    print(f"wrote {options.output}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000, help="proxies to seed (1000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs against the recorded pages (5)")
    parser.add_argument(
        "--moto-repeat", type=int, default=1, help="runs against moto_server (1; 5 s or more each)"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    parser.add_argument(
        "--save-recording",
        type=Path,
        help="also write the recorded answers here (serve them: python -m bench.recorded_ec2)",
    )
    parser.add_argument("--phases", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.instances < 1 or options.repeat < 1 or options.moto_repeat < 1:
        parser.error("--instances, --repeat and --moto-repeat must be at least 1")
    return options


# --- the fake EC2 behind the recording: moto_server -----------------------------------------


def free_loopback_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
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


def bench_environment(endpoint: str) -> dict[str, str]:
    """The inventory's environment: this endpoint, fake credentials, no cache, no ~/.aws."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "EC2_INVENTORY_")) and name not in {"ENVIRONMENT", "CI"}
    }
    return {
        **environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "EC2_INVENTORY_REGIONS": REGION,
        "EC2_INVENTORY_CACHE_TTL": "0",
        "ENVIRONMENT": "bench",
        # The backends are hosts too, as in the figures recorded before: a superset of the
        # default build, in which every proxy still gets ec2_backend_addresses.
        "EC2_INVENTORY_BACKENDS_AS_HOSTS": "true",
    }


def seed_fleet(endpoint: str, instances: int) -> int:
    """Launch the proxies (groups of ASG_SIZE sharing a Name) and the backends; return backends.

    One run_instances call, hence one reservation, per instance, as an Auto Scaling group
    launches them: moto pages DescribeInstances by reservation, EC2 by instance, so this way
    both hand out the same pages (at most MaxResults instances each).
    """
    import boto3

    client = boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    for index in range(instances):
        launch(client, name=f"proxy-asg{index // ASG_SIZE}", role="reverse-proxy")
    backends = max(1, instances // PROXIES_PER_BACKEND)
    for _ in range(backends):
        launch(client, name="app", role="app")
    return backends


def launch(client: Any, *, name: str, role: str) -> None:
    """One instance with the tags the inventory filters on."""
    tags = [
        {"Key": "Name", "Value": name},
        {"Key": "Role", "Value": role},
        {"Key": "Environment", "Value": "bench"},
    ]
    client.run_instances(
        ImageId="ami-12c6146b",
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )


# --- timing child processes -----------------------------------------------------------------


def run_child(command: list[str], environ: dict[str, str]) -> Run:
    """Run a command to its end: wall seconds, its own CPU seconds (user + system), stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=environ, stdout=out, stderr=err)
        try:
            _, status, usage = wait4_with_timeout(process.pid, CHILD_TIMEOUT)
        except TimeoutError:
            process.kill()
            process.wait()
            raise
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{stderr[-3000:]}")
    return Run(wall=wall, cpu=usage.ru_utime + usage.ru_stime, stdout=stdout)


def wait4_with_timeout(pid: int, timeout: float) -> tuple[int, int, Any]:
    """`os.wait4` (which reports the child's own resource usage), giving up after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        waited_pid, status, usage = os.wait4(pid, os.WNOHANG)
        if waited_pid == pid:
            return waited_pid, status, usage
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} still running after {timeout:.0f} s")
        time.sleep(0.002)


def run_inventory(environ: dict[str, str]) -> Run:
    """`python -m inventories.aws --json` in a fresh process."""
    return run_child([sys.executable, *INVENTORY_COMMAND], environ)


def run_phases(environ: dict[str, str]) -> dict[str, float]:
    """The CPU of each step, measured by a child running this module with --phases."""
    run = run_child([sys.executable, "-m", "bench.inventory_build", "--phases"], environ)
    return {**json.loads(run.stdout), "process total": run.cpu}


def measure_phases() -> dict[str, float]:
    """In this (child) process: CPU seconds of each step of `python -m inventories.aws --json`.

    Runs the real code path (`cli.main(["--json"])`) with clocks read around it: at the entry
    and exit of `open_session` and `build_inventory`, and at botocore's events of each
    DescribeInstances call (parameters ready, response received, response parsed).
    `time.process_time` counts every thread, so the region worker's CPU is included.
    """
    clock = time.process_time
    started = clock()
    from inventories import cli, ec2, loader

    imported = clock()
    open_session, build_inventory = ec2.open_session, loader.build_inventory
    marks: dict[str, float] = {}
    calls: list[dict[str, float]] = []

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            marks[f"{name} entry"] = clock()
            try:
                return function(*args, **kwargs)
            finally:
                marks[f"{name} exit"] = clock()

        return wrapper

    def open_timed_session(settings: Any) -> Any:
        session = open_session(settings)
        for event, label in (
            ("provide-client-params", "call"),
            ("before-parse", "received"),
            ("after-call", "parsed"),
        ):
            session.register(
                f"{event}.ec2.DescribeInstances",
                lambda label=label, **_: record_call(label),
            )
        return session

    def record_call(label: str) -> None:
        if label == "call":
            calls.append({})
        calls[-1][label] = clock()

    ec2.open_session = timed("session", open_timed_session)
    loader.build_inventory = timed("hosts", build_inventory)
    with contextlib.redirect_stdout(io.StringIO()):
        cli.main(["--json"])
    finished = clock()

    http = sum(call["received"] - call["call"] for call in calls)
    parsing = sum(call["parsed"] - call["received"] for call in calls)
    describing = marks["hosts entry"] - calls[0]["call"]
    return {
        "harness": started,  # interpreter start and this file's own imports
        "imports": imported - started,
        "settings": marks["session entry"] - imported,
        "credentials": marks["session exit"] - marks["session entry"],
        "client": calls[0]["call"] - marks["session exit"],
        "http": http,
        "botocore parsing": parsing,
        "our conversion": describing - http - parsing,
        "hosts": marks["hosts exit"] - marks["hosts entry"],
        "json output": finished - marks["hosts exit"],
    }


# --- results --------------------------------------------------------------------------------


def page_sizes(recording: Any) -> list[dict[str, Any]]:
    """Each recorded DescribeInstances page: its MaxResults, whether it had a NextToken, and how
    many instances it held (so a reader can check the pages are EC2-sized)."""
    import xml.etree.ElementTree as ElementTree
    from urllib.parse import parse_qs

    namespace = "{http://ec2.amazonaws.com/doc/2016-11-15}"
    pages = []
    for key, response in recording.responses.items():
        if key.action != "DescribeInstances":
            continue
        root = ElementTree.fromstring(response.body)
        instances = root.findall(
            f"{namespace}reservationSet/{namespace}item/{namespace}instancesSet/{namespace}item"
        )
        pages.append(
            {
                "max_results": int(parse_qs(key.parameters).get("MaxResults", ["0"])[0]),
                "next_token_sent": bool(key.next_token),
                "instances": len(instances),
                "bytes": len(response.body),
            }
        )
    return pages


def figures(values: list[float]) -> dict[str, Any]:
    """Median, min and every value."""
    return {"median": statistics.median(values), "min": min(values), "all": values}


def summarise(
    options: argparse.Namespace,
    *,
    backends: int,
    hosts: int,
    moto: tuple[list[Run], list[float]],
    recorded: list[Run],
    cache_hit: list[Run],
    phases: list[dict[str, float]],
    interpreter: list[float],
    pages: list[dict[str, Any]],
) -> dict[str, Any]:
    """The figures written to JSON."""
    from importlib.metadata import version

    moto_runs, moto_seconds = moto
    recorded_cpu = statistics.median(run.cpu for run in recorded)
    breakdown = {"interpreter start": statistics.median(interpreter)}
    for phase in PHASES[1:-1]:
        breakdown[phase] = statistics.median(sample[phase] for sample in phases)
    breakdown["exit and the rest"] = recorded_cpu - sum(breakdown.values())
    return {
        "benchmark": "inventory_build",
        "command": "python " + " ".join(INVENTORY_COMMAND),
        "instances": options.instances,
        "backends": backends,
        "hosts": hosts,
        "repeat": options.repeat,
        "recorded": {
            "wall_seconds": figures([run.wall for run in recorded]),
            "cpu_seconds": figures([run.cpu for run in recorded]),
            "pages": pages,
        },
        "moto": {
            "repeat": options.moto_repeat,
            "wall_seconds": figures([run.wall for run in moto_runs]),
            "cpu_seconds": figures([run.cpu for run in moto_runs]),
            "moto_seconds": figures(moto_seconds),
        },
        "cache_hit": {
            "wall_seconds": figures([run.wall for run in cache_hit]),
            "cpu_seconds": figures([run.cpu for run in cache_hit]),
        },
        "cpu_breakdown_seconds": breakdown,
        "breakdown_process_cpu_seconds": figures([sample["process total"] for sample in phases]),
        "target_seconds": TARGET_SECONDS,
        "target_cpu_seconds": TARGET_CPU_SECONDS,
        "versions": {
            "python": sys.version.split()[0],
            "boto3": version("boto3"),
            "botocore": version("botocore"),
            "moto": version("moto"),
        },
    }


def format_table(results: dict[str, Any]) -> str:
    """A small fixed-width table of the figures, then the CPU breakdown."""
    cells = []
    for label, key, server in (
        ("recorded", "recorded", None),
        ("moto", "moto", results["moto"]["moto_seconds"]["median"]),
        ("cache", "cache_hit", None),
    ):
        wall, cpu = results[key]["wall_seconds"], results[key]["cpu_seconds"]
        cells.append(
            [
                *(label, results["instances"], results["hosts"], len(wall["all"])),
                *(wall["median"], wall["min"], cpu["median"], cpu["min"]),
                "-" if server is None else server,
            ]
        )
    rows = table(COLUMNS, cells)
    pages = ", ".join(
        f"{page['instances']} (MaxResults {page['max_results']})"
        for page in results["recorded"]["pages"]
    )
    rows += [
        f"(medians; `{results['command']}` in a fresh process; 'recorded' = moto's answers "
        "served again by bench/recorded_ec2.py, cache off; 'moto' = against moto_server, "
        "'server s' = waiting for its answers; 'cache' = the same with a fresh cache hit; "
        f"targets for 1,000: {results['target_seconds']:.0f} s wall, "
        f"{results['target_cpu_seconds']} s CPU)",
        f"DescribeInstances pages, instances each: {pages}",
        "",
        "CPU breakdown, recorded (median of each step):",
    ]
    rows += [
        f"  {phase:<18} {seconds:>6.3f}"
        for phase, seconds in results["cpu_breakdown_seconds"].items()
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
