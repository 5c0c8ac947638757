"""The lab's package cache: apt-cacher-ng on the bridge address, so that every host's apt
downloads a package from the Debian mirror once for the whole lab (and once across labs: the
cache lives in the cache directory, next to the base roots).

It is an ordinary caching HTTP proxy here (no remapping of mirrors): the hosts' apt sends it
`GET http://deb.debian.org/...` and it fetches what it does not have. Index files (Release,
Packages) are revalidated with the mirror on every request; .deb files are served from the cache.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

from lab import config, state
from lab.sh import LabError

CACHE = config.CACHE_DIR / "apt-cacher-ng"


def _conf() -> str:
    # Only what differs from apt-cacher-ng's defaults; no Remap- lines, so it proxies by host name.
    return (
        f"CacheDir: {CACHE}\n"
        f"LogDir: {config.STATE_DIR / 'apt-cacher-ng'}\n"
        f"BindAddress: {config.BRIDGE_ADDRESS}\n"
        f"Port: {config.APT_CACHE_PORT}\n"
        "ForeGround: 1\n"
    )


def _answers() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((config.BRIDGE_ADDRESS, config.APT_CACHE_PORT)) == 0


def start(lab_state: dict) -> None:
    """Start apt-cacher-ng (unless the lab's own already runs) and wait until it listens."""
    if state.pid_alive(lab_state["pids"].get("apt-cache")):
        return
    binary = shutil.which("apt-cacher-ng")
    if binary is None:
        raise LabError("apt-cacher-ng is not installed: run `make deps` (or apt-get install it)")
    if _answers():
        raise LabError(
            f"port {config.APT_CACHE_PORT} on {config.BRIDGE_ADDRESS} is taken by another "
            "program: stop it (the lab's package cache listens there)"
        )
    conf_dir = config.STATE_DIR / "apt-cacher-ng"
    conf_dir.mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    (conf_dir / "acng.conf").write_text(_conf())
    log = open(conf_dir / "console.log", "wb")  # noqa: SIM115 (the child keeps it)
    proc = subprocess.Popen(
        [binary, "-c", str(conf_dir)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    state.record_pid(lab_state, "apt-cache", proc.pid)
    deadline = time.monotonic() + 15
    while not _answers():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"apt-cacher-ng did not start; see {conf_dir / 'console.log'}")
        time.sleep(0.1)
