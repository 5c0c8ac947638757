"""A fresh SSH login to a host with the deploy's own connection settings (paramiko, as pyinfra).

Used after a change that could lock the deploy out (sshd, firewall): the connection pyinfra
already holds survives a reload, so only a new login proves the next run can still get in.
"""

from __future__ import annotations

from pathlib import Path

import paramiko
from pyinfra.api.host import Host


def fresh_login_runs(host: Host, command: str, timeout: float = 15.0) -> tuple[bool, str]:
    """Open a new SSH connection as the deploy user and run COMMAND; (success, detail)."""
    data = host.data
    client = paramiko.SSHClient()
    known_hosts = data.get("ssh_known_hosts_file") or str(Path.home() / ".ssh/known_hosts")
    if Path(known_hosts).exists():
        client.load_host_keys(known_hosts)
    # Host keys were already checked by the connection this run holds to the same host.
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(
            data.get("ssh_hostname") or host.name,
            port=int(data.get("ssh_port") or 22),
            username=data.get("ssh_user"),
            key_filename=data.get("ssh_key"),
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            look_for_keys=not data.get("ssh_key"),
        )
        _, stdout, stderr = client.exec_command(command, timeout=timeout)
        status = stdout.channel.recv_exit_status()
        if status != 0:
            return False, f"`{command}` exited {status}: {stderr.read().decode().strip()}"
        return True, "ok"
    except (OSError, paramiko.SSHException) as error:
        return False, f"{type(error).__name__}: {error}"
    finally:
        client.close()
