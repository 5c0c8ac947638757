"""The proxy hosts: an overlay over the cached base root per host, booted with systemd-nspawn in
its namespace.

Each host's root is an overlayfs mount: the base root (read-only, shared by every host of that
suite) below, the host's own changes in `hosts/NAME/upper` above. Fifty hosts then cost their
changes on disk, not fifty copies of the base, and a host is ready in milliseconds instead of the
seconds a copy takes."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

from lab import config, state
from lab.config import Node
from lab.net import mirror_addresses
from lab.sh import LabError, run

BOOT_TIMEOUT = 90.0
# Every host's apt goes through the lab's package cache (lab/aptcache.py): fifty hosts download
# each package from the mirror once.
APT_PROXY = f'Acquire::http::Proxy "http://{config.BRIDGE_ADDRESS}:{config.APT_CACHE_PORT}";\n'


def root_of(node: Node) -> Path:
    """The host's root as it boots: the overlay mount point."""
    return host_dir(node) / "root"


def host_dir(node: Node) -> Path:
    return config.STATE_DIR / "hosts" / node.name


def ensure_ssh_key() -> str:
    """The lab's SSH key pair (made once); returns the public key."""
    key = config.ssh_key_path()
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "proxy-lab", "-f", str(key)])
    return key.with_suffix(".pub").read_text()


def prepare_root(node: Node, base: Path, public_key: str) -> None:
    """Mount NODE's root over BASE and make it that host: its own host keys, name, machine id,
    login key, and the lab's package cache as its apt proxy."""
    root = root_of(node)
    if root.is_mount() and (root / ".lab-ready").exists():
        return
    _unmount(root)
    shutil.rmtree(host_dir(node), ignore_errors=True)
    _mount_overlay(base, host_dir(node))
    run(["ssh-keygen", "-q", "-A", "-f", str(root)])
    (root / "etc/hostname").write_text(f"{node.name}\n")
    (root / "etc/machine-id").write_text(secrets.token_hex(16) + "\n")
    mirror_lines = "".join(f"{ip} {config.MIRROR_HOST}\n" for ip in mirror_addresses()[:1])
    (root / "etc/hosts").write_text(
        f"127.0.0.1 localhost\n{node.address} {node.name}\n{mirror_lines}"
    )
    ssh_dir = root / "home/admin/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(public_key)
    uid, gid = _admin_ids(root)
    for path in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(path, uid, gid)
    (ssh_dir / "authorized_keys").chmod(0o600)
    (root / "etc/apt/apt.conf.d/01lab-proxy").write_text(APT_PROXY)
    (root / ".lab-ready").write_text("")


def _mount_overlay(base: Path, directory: Path) -> None:
    for part in ("upper", "work", "root"):
        (directory / part).mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={base},upperdir={directory / 'upper'},workdir={directory / 'work'}"
    try:
        run(["mount", "-t", "overlay", "overlay", "-o", options, str(directory / "root")])
    except LabError as exc:
        raise LabError(
            f"cannot mount the overlay root of {directory.name} (this machine's kernel must "
            f"offer overlayfs, and {config.STATE_DIR} must not itself be on overlayfs): {exc}"
        ) from exc


def _unmount(root: Path) -> None:
    """Unmount an overlay root; lazily if a process that is going away still holds it."""
    if root.is_mount():
        run(["umount", str(root)], check=False)
    if root.is_mount():
        run(["umount", "--lazy", str(root)], check=False)


def _admin_ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "admin":
            return int(fields[2]), int(fields[3])
    raise LabError(f"no admin user in {root}")


def boot(node: Node, lab_state: dict) -> None:
    """Boot NODE's root with systemd in its namespace, unless it already runs."""
    if state.pid_alive(lab_state["pids"].get(node.name)):
        return
    log = open(config.STATE_DIR / f"{node.name}.console.log", "wb")  # noqa: SIM115 (child keeps it)
    env = dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="network")
    proc = subprocess.Popen(
        [
            "systemd-nspawn",
            "--quiet",
            "-D",
            str(root_of(node)),
            "--boot",
            # No system bus on the machine: don't register with machined, don't make a scope.
            "--register=no",
            "--keep-unit",
            # nftables and routes inside the host need it, as on a VM.
            "--capability=CAP_NET_ADMIN",
            f"--network-namespace-path=/run/netns/{node.netns}",
            f"--machine={node.name}",
            "--console=read-only",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    state.record_pid(lab_state, node.name, proc.pid)


def leader_pid(nspawn_pid: int) -> int | None:
    """PID of the container's init (systemd): the child of systemd-nspawn."""
    for task in Path(f"/proc/{nspawn_pid}/task").glob("*"):
        children = (task / "children").read_text().split()
        if children:
            return int(children[0])
    return None


def wait_running(node: Node, lab_state: dict) -> None:
    """Wait until NODE's systemd says running (or degraded) and its sshd accepts connections."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    nspawn_pid = lab_state["pids"][node.name]
    while time.monotonic() < deadline:
        if not state.pid_alive(nspawn_pid):
            log = (config.STATE_DIR / f"{node.name}.console.log").read_text(errors="replace")
            raise LabError(f"{node.name}: systemd-nspawn exited during boot:\n{log[-2000:]}")
        leader = leader_pid(nspawn_pid)
        if leader:
            lab_state["leaders"][node.name] = leader
            status = exec_in(node.name, lab_state, ["systemctl", "is-system-running"])
            if status.stdout.strip() in ("running", "degraded") and _port_open(node.address, 22):
                state.save(lab_state)
                return
        time.sleep(0.5)
    raise LabError(f"{node.name} did not finish booting in {BOOT_TIMEOUT:.0f} s")


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def exec_in(
    name: str, lab_state: dict, cmd: list[str], *, text: bool = True, check: bool = False
) -> subprocess.CompletedProcess:
    """Run CMD as root inside lab member NAME (container or bare namespace), output captured
    (as str, or bytes with text=False); check=True raises CalledProcessError on a failure."""
    return subprocess.run(
        command_for(name, lab_state, cmd), text=text, capture_output=True, check=check
    )


def command_for(name: str, lab_state: dict, cmd: list[str]) -> list[str]:
    """The machine-side command line that runs CMD inside lab member NAME."""
    leader = lab_state.get("leaders", {}).get(name)
    if leader:
        path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        return [
            "nsenter",
            f"--target={leader}",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--",
            "/usr/bin/env",
            "-i",
            path,
            "TERM=dumb",
            *cmd,
        ]
    return ["ip", "netns", "exec", config.NS_PREFIX + name, *cmd]


def write_known_hosts(members: list[Node]) -> None:
    """known_hosts for the lab's hosts, so pyinfra can check host keys strictly."""
    lines = []
    for node in members:
        if node.container:
            for pub in sorted((root_of(node) / "etc/ssh").glob("ssh_host_*_key.pub")):
                keytype, key = pub.read_text().split()[:2]
                lines.append(f"{node.address} {keytype} {key}\n")
    config.known_hosts_path().write_text("".join(lines))


def remove_roots() -> None:
    """Unmount and delete every host's root (never the bases below them)."""
    hosts_dir = config.STATE_DIR / "hosts"
    if hosts_dir.exists():
        for directory in hosts_dir.iterdir():
            _unmount(directory / "root")
            if (directory / "root").is_mount():
                raise LabError(f"{directory / 'root'} is still mounted: not deleting it")
    shutil.rmtree(hosts_dir, ignore_errors=True)


def reboot(node: Node, lab_state: dict) -> None:
    """Reboot NODE (`systemctl reboot` inside: systemd stops every unit, the container exits),
    then boot the same root again and wait for systemd and sshd.

    A power cut (SIGKILL to the container's init) is not offered: the container booted after it
    inherits a cgroup systemd cannot manage on this kind of machine ("Failed to dump process
    list"), and its `systemctl reload` then hangs."""
    nspawn_pid = lab_state["pids"][node.name]
    exec_in(node.name, lab_state, ["systemctl", "reboot"])
    # systemd-nspawn exits when its container reboots; it is our child's child, so poll.
    deadline = time.monotonic() + BOOT_TIMEOUT
    while state.pid_alive(nspawn_pid):
        if time.monotonic() > deadline:
            raise LabError(f"{node.name} did not go down within {BOOT_TIMEOUT:.0f} s of the reboot")
        time.sleep(0.2)
    lab_state["leaders"].pop(node.name, None)
    boot(node, lab_state)
    wait_running(node, lab_state)
