"""The Debian base roots: built once per suite with debootstrap, then copied for every host.

A base is set up the way an EC2 Debian image is: a login user `admin` with passwordless sudo,
root login closed, password logins off, sshd enabled, nothing else. Host keys are removed here
and made per host, so no two hosts share a key.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lab import config
from lab.sh import LabError, run

# Bump when the recipe below changes: old cached bases are then rebuilt, not reused.
RECIPE_VERSION = 2
# What every Debian EC2 image has that the deploy relies on or installs around: python3 comes
# with cloud-init on those images (version 1 of this recipe left it out, so each lab host's
# first converge installed an interpreter a real instance already has).
PACKAGES = "openssh-server,sudo,systemd,systemd-sysv,dbus,iproute2,procps,ca-certificates,python3"

SUDOERS = "admin ALL=(ALL) NOPASSWD:ALL\n"
# What cloud-init writes on Debian's EC2 images: no root, no passwords.
SSHD_IMAGE_DEFAULTS = "PermitRootLogin no\nPasswordAuthentication no\n"
# The lab's mirror may serve a frozen snapshot whose Release files have expired.
APT_SNAPSHOT_OK = 'Acquire::Check-Valid-Until "false";\n'


def base_root(suite: str) -> Path:
    return config.CACHE_DIR / f"base-{suite}-v{RECIPE_VERSION}"


def ensure_base(suite: str) -> Path:
    """The cached base root for SUITE, built now if missing (about 90 s, about 300 MB)."""
    root = base_root(suite)
    if (root / ".complete").exists():
        return root
    if shutil.which("debootstrap") is None:
        raise LabError(
            "debootstrap is not installed: run `make deps` (or apt-get install debootstrap)"
        )
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={PACKAGES}",
                suite,
                str(staging),
                config.MIRROR,
            ]
        )
        _configure_like_ec2(staging, suite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (staging / ".complete").write_text(f"{suite} v{RECIPE_VERSION}\n")
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)
    return root


def _configure_like_ec2(root: Path, suite: str) -> None:
    run(["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash", "admin"])
    run(["chroot", str(root), "passwd", "--lock", "admin"])
    sudoers = root / "etc/sudoers.d/90-cloud-init-users"
    sudoers.write_text(SUDOERS)
    sudoers.chmod(0o440)
    (root / "etc/ssh/sshd_config.d/50-cloud-init.conf").write_text(SSHD_IMAGE_DEFAULTS)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/apt/sources.list").write_text(
        f"deb {config.MIRROR} {suite} main\n"
        f"deb {config.MIRROR} {suite}-updates main\n"
        f"deb {config.MIRROR}-security {suite}-security main\n"
    )
    (root / "etc/apt/apt.conf.d/99lab-snapshot").write_text(APT_SNAPSHOT_OK)
    (root / "etc/machine-id").write_text("")
    run(["chroot", str(root), "apt-get", "clean"])
