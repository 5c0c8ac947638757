"""Lab hosts as pytest-testinfra hosts, for assertions on a host's state that read as such:
`host.service("nginx").is_running`, `host.file(PATH).contains(...)`, `host.socket(...)`.

Commands reach the host the way every lab command does (`core.run_in`: nsenter into the
container as root), so no SSH session, sudo or second set of keys is involved. Behaviour seen from
outside the host (traffic, ports) stays with `core.traffic` and `core.can_connect`.
"""

from __future__ import annotations

from typing import Any

from testinfra.backend.base import BaseBackend, CommandResult
from testinfra.host import Host

from lab import core


class LabBackend(BaseBackend):
    """A testinfra backend that runs each command inside lab member `hostname` as root."""

    NAME = "lab"

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        """Run COMMAND (testinfra quotes ARGS into it) with /bin/sh inside the lab member."""
        shell_command = self.get_command(command, *args)
        done = core.run_in(self.hostname, ["/bin/sh", "-c", shell_command], text=False)
        return self.result(done.returncode, self.encode(shell_command), done.stdout, done.stderr)


def lab_host(name: str) -> Host:
    """Lab member NAME (e.g. "proxy-1") as a testinfra Host."""
    backend = LabBackend(name)
    host = Host(backend)
    backend.set_host(host)
    return host
