"""Bringing the lab up and down, and asking it questions. The CLI (lab/__main__.py) calls these."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab import aptcache, base, config, fakeaws, hosts, lb, limits, net, state
from lab.config import Node
from lab.sh import LabError, run

REPO = Path(__file__).resolve().parent.parent
REQUIRED_COMMANDS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "nft": "nftables",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "ssh-keygen": "openssh-client",
    "curl": "curl",
    "apt-cacher-ng": "apt-cacher-ng",
}


def preflight() -> None:
    """Refuse early, saying how to fix it, when the machine can't run the lab."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, containers): run it as root")
    missing = sorted({pkg for cmd, pkg in REQUIRED_COMMANDS.items() if not shutil.which(cmd)})
    if missing:
        raise LabError(
            f"missing packages: {' '.join(missing)}: run `make deps` "
            f"(or apt-get install {' '.join(missing)})"
        )


def members_of(lab_state: dict) -> list[Node]:
    suites = {int(k): v for k, v in lab_state.get("suites", {}).items()}
    return config.nodes(lab_state.get("proxies", 0), suites)


def up(proxies: int, suites: dict[int, str]) -> dict:
    """Bring the lab up; a lab already running is left as it is. A failure undoes everything."""
    preflight()
    with state.exclusive():
        return _up_locked(proxies, suites)


def _up_locked(proxies: int, suites: dict[int, str]) -> dict:
    lab_state = state.load()
    if lab_state["pids"] and not all(map(state.pid_alive, lab_state["pids"].values())):
        down()  # left over from a stopped session or a reboot: its hosts are stale, start clean
        lab_state = state.load()
    if lab_state["pids"] and lab_state.get("fakeaws") != fakeaws.KIND:
        down()  # its fake AWS is an older kind (fakeaws.KIND), which cannot be swapped in place
        lab_state = state.load()
    if lab_state.get("proxies") not in (None, 0, proxies) or (
        lab_state.get("suites") and {int(k): v for k, v in lab_state["suites"].items()} != suites
    ):
        raise LabError(
            f"a lab with {lab_state['proxies']} proxies is up: run `python -m lab down`"
            " first to change its shape"
        )
    lab_state.update(proxies=proxies, suites={str(k): v for k, v in suites.items()})
    config.STATE_DIR.mkdir(parents=True, exist_ok=True)
    state.save(lab_state)
    try:
        _up(lab_state)
    except BaseException:
        down()
        raise
    return lab_state


def _up(lab_state: dict) -> None:
    members = members_of(lab_state)
    containers = [n for n in members if n.container]
    net.ensure_bridge()  # the fake AWS and the package cache listen on the bridge's address
    fakeaws.start(lab_state)
    aptcache.start(lab_state)
    limits.raise_for(lab_state, len(containers))
    with ThreadPoolExecutor(max_workers=2) as pool:
        bases = dict(
            zip(
                sorted({n.suite for n in containers}),
                pool.map(base.ensure_base, sorted({n.suite for n in containers})),
                strict=True,
            )
        )
    public_key = hosts.ensure_ssh_key()
    net.ensure_mirror_path(lab_state)
    state.save(lab_state)
    for node in members:
        net.ensure_member(node)
    for node in containers:
        hosts.prepare_root(node, bases[node.suite], public_key)
        hosts.boot(node, lab_state)
    hosts.write_known_hosts(members)
    start_backend(lab_state)
    for node in containers:
        hosts.wait_running(node, lab_state)
    fakeaws.seed(members)
    fakeaws.seed_load_balancer(members)
    lb.start(lab_state)


def start_backend(lab_state: dict, fail_rate: float = 0.2) -> None:
    if state.pid_alive(lab_state["pids"].get("backend")):
        return
    app = next(n for n in members_of(lab_state) if n.role == "app")
    log = open(config.STATE_DIR / "backend.log", "wb")  # noqa: SIM115 (the child keeps it)
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            app.netns,
            sys.executable,
            "-m",
            "lab.backend",
            "--address",
            app.address,
            "--fail-rate",
            str(fail_rate),
        ],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    state.record_pid(lab_state, "backend", proc.pid)
    _wait_backend(app)


def _wait_backend(app: Node) -> None:
    for _ in range(300):
        try:
            with socket.create_connection((app.address, config.BACKEND_PORT), timeout=0.5):
                return
        except OSError:
            subprocess.run(["sleep", "0.1"])
    raise LabError(f"the backend did not start; see {config.STATE_DIR / 'backend.log'}")


def backend_control(path: str = "/", payload: dict | None = None) -> dict:
    """Ask the backend's control port (inside app-1's namespace): stats, reset, fail rate."""
    url = f"http://127.0.0.1:{config.BACKEND_CONTROL_PORT}{path}"
    cmd = ["ip", "netns", "exec", config.NS_PREFIX + "app-1", "curl", "-fsS", url]
    if payload is not None:
        cmd += ["-X", "POST", "--data", json.dumps(payload)]
    return json.loads(run(cmd))


def down() -> None:
    """Remove everything `up` made: processes by recorded PID, hosts, network, state. Repeatable."""
    with state.exclusive():
        _down_locked()


def _down_locked() -> None:
    lab_state = state.load()
    pids = lab_state.get("pids", {})
    for name in [n for n in pids if n not in ("backend", "moto")] + ["backend", "moto"]:
        if name in pids:
            state.stop_pid(pids[name])
    members = members_of(lab_state) if lab_state.get("proxies") else config.nodes(0)
    net.remove_all(lab_state, members)
    limits.restore(lab_state)
    for ns in net.lab_namespaces():  # left by a lab of another shape
        run(["ip", "netns", "del", ns], check=False)
    for link in net.lab_links():
        run(["ip", "link", "del", link], check=False)
    hosts.remove_roots()
    config.state_file().unlink(missing_ok=True)


def status() -> list[dict]:
    """Each member: address, role, whether its process runs and whether SSH answers."""
    lab_state = state.load()
    rows = []
    for node in members_of(lab_state):
        row = {
            "name": node.name,
            "address": node.address,
            "role": node.role,
            "suite": node.suite or "-",
            "netns": Path(f"/run/netns/{node.netns}").exists(),
        }
        if node.container:
            row["running"] = state.pid_alive(lab_state["pids"].get(node.name))
            row["ssh"] = hosts._port_open(node.address, 22)
        rows.append(row)
    return rows


def env_lines() -> list[str]:
    """`export` lines that point boto3 and pyinfra at the lab."""
    return [
        f"export AWS_ENDPOINT_URL={fakeaws.endpoint()}",
        "export AWS_ACCESS_KEY_ID=testing",
        "export AWS_SECRET_ACCESS_KEY=testing",
        f"export AWS_DEFAULT_REGION={config.AWS_REGION}",
        f"export EC2_INVENTORY_REGIONS={config.AWS_REGION}",
        f"export ENVIRONMENT={config.ENVIRONMENT}",
        f"export DEPLOY_SSH_KEY={config.ssh_key_path()}",
        f"export DEPLOY_SSH_KNOWN_HOSTS={config.known_hosts_path()}",
        f"export SHIFT_LOAD_BALANCER={config.LB_NAME}",
    ]


def env_vars() -> dict[str, str]:
    """The same as env_lines(), as a dict (for tests and scripts)."""
    return dict(line.removeprefix("export ").split("=", 1) for line in env_lines())


def exec_command(name: str, cmd: list[str]) -> int:
    """Run CMD inside lab member NAME as root, passing stdin/stdout/stderr and the exit status."""
    lab_state = state.load()
    if name not in {n.name for n in members_of(lab_state)}:
        raise LabError(f"no lab member named {name!r}: see `python -m lab status`")
    return subprocess.run(hosts.command_for(name, lab_state, cmd)).returncode


def traffic(
    source: str,
    url: str,
    requests: int,
    concurrency: int = 8,
    method: str = "GET",
    body: str = "",
    max_seconds: float = 120.0,
) -> dict:
    """Send bounded traffic from lab namespace SOURCE (loadgen, outsider) to URL; the counts."""
    cmd = [
        "ip",
        "netns",
        "exec",
        config.NS_PREFIX + source,
        sys.executable,
        "-m",
        "lab.traffic",
        "--url",
        url,
        "--requests",
        str(requests),
        "--concurrency",
        str(concurrency),
        "--method",
        method,
        "--max-seconds",
        str(max_seconds),
    ]
    if body:
        cmd += ["--body", body]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def can_connect(source: str, address: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a TCP connection from lab namespace SOURCE to ADDRESS:PORT succeeds."""
    probe = (
        f"import socket,sys\ntry:\n socket.create_connection(({address!r},{port}),{timeout})"
        f"\nexcept OSError: sys.exit(1)"
    )
    cmd = ["ip", "netns", "exec", config.NS_PREFIX + source, sys.executable, "-c", probe]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def run_in(
    name: str, cmd: list[str], *, text: bool = True, check: bool = False
) -> subprocess.CompletedProcess:
    """Run CMD as root inside lab member NAME; the completed process, stdout and stderr captured.

    text=False gives bytes (e.g. a tar stream); check=True raises CalledProcessError when CMD
    fails. The one way tests, benchmarks and tools run a command on a lab host (without a TTY;
    `exec_command` is the interactive one behind `python -m lab exec`).
    """
    return hosts.exec_in(name, state.load(), cmd, text=text, check=check)


def reboot(name: str) -> None:
    """Reboot lab host NAME and wait until it is back with sshd up."""
    lab_state = state.load()
    node = next((n for n in members_of(lab_state) if n.name == name and n.container), None)
    if node is None:
        raise LabError(f"{name} is not a lab host that can reboot")
    hosts.reboot(node, lab_state)
