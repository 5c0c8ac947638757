"""Kernel limits a lab of many hosts needs on the machine, raised while the lab is up.

Each booted container's systemd and journald take several inotify instances, all counted
against root on the machine: with Debian's default `fs.inotify.max_user_instances = 128`, the
23rd container fails to boot ("Failed to create control group inotify object: Too many open
files"). `up` raises the limit for the size asked (never lowers it) and records the value it
found; `down` puts that value back.
"""

from __future__ import annotations

from pathlib import Path

from lab import state

INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
# Measured: a booted lab host holds 6-8 instances; the rest is headroom for the machine's own.
INSTANCES_PER_HOST = 16
BASELINE = 256


def needed_instances(hosts: int) -> int:
    return BASELINE + INSTANCES_PER_HOST * hosts


def raise_for(lab_state: dict, hosts: int) -> None:
    """Raise the inotify instance limit for HOSTS containers, remembering the value before."""
    current = int(INOTIFY_INSTANCES.read_text())
    wanted = needed_instances(hosts)
    if current >= wanted:
        return
    lab_state.setdefault("inotify_instances_before", current)
    state.save(lab_state)
    INOTIFY_INSTANCES.write_text(f"{wanted}\n")


def restore(lab_state: dict) -> None:
    """Put back the limit `raise_for` found (a no-op when it raised nothing)."""
    before = lab_state.pop("inotify_instances_before", None)
    if before is not None:
        INOTIFY_INSTANCES.write_text(f"{before}\n")
