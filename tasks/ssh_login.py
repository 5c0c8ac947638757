"""A fresh SSH login to a host, made exactly as pyinfra makes its own (same connector, same
settings: key, known_hosts, ssh_config file and bastion).

Used after a change that could lock the deploy out (sshd): the connection pyinfra already holds
survives a reload, so only a new login proves that the next run can still get in.
"""

from __future__ import annotations

from paramiko import SSHException
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host
from pyinfra.connectors.ssh import SSHConnector


def fresh_login_runs(host: Host, command: str, timeout: float = 15.0) -> tuple[bool, str]:
    """Open a new SSH connection as the deploy user and run COMMAND; (success, detail)."""
    connector = SSHConnector(host.state, host)
    try:
        connector.connect()
        _, stdout, stderr = connector.client.exec_command(command, timeout=timeout)
        status = stdout.channel.recv_exit_status()
        if status != 0:
            return False, f"`{command}` exited {status}: {stderr.read().decode().strip()}"
        return True, "ok"
    except (PyinfraError, OSError, SSHException) as error:
        return False, f"{type(error).__name__}: {error}"
    finally:
        if connector.client is not None:
            connector.client.close()
