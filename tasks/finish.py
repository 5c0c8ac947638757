"""The end of the deploy on a host, as pyinfra's results show it.

Owns: nothing on the hosts; runs no command.

A converged host runs no operation at all (each task calls an operation only when a fact says
something differs), so pyinfra's `--json` results would not name it, and the rollout
(tools/rollout/results.py) could not tell "nothing to do" from "never reached": it would fail
every converged host. The one operation here yields no command: pyinfra lists it, without change,
for every host the deploy went through to its end, and costs no remote command.
"""

from __future__ import annotations

from collections.abc import Generator

from pyinfra.api import deploy, operation

FINISHED = "Deploy finished on this host"


@operation(is_idempotent=True)
def _reached_the_end() -> Generator[str, None, None]:
    """No command: the operation's entry in pyinfra's results is the point."""
    yield from ()


@deploy("Deploy finished")
def deploy_finished() -> None:
    _reached_the_end(name=FINISHED)
