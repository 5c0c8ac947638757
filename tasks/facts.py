"""Facts read once per host and run, and all in one remote command.

pyinfra 3.10 runs a fact's command each time it is asked, and asks again when it executes what it
planned: measured, a no-op run made 52 remote commands on one host, most of them twice. The tasks
ask here instead: each (host, fact, arguments) is read once per run, and the decisions taken while
planning are the ones executed.

Each round trip is an SSH channel, a sudo and a shell on the host: on a fleet that shares CPUs
that is most of a no-op's cost. So the modules declare up front what they will ask (`asks`), and
`read_all` reads every declared fact of a host in one command, before the first task. A declared
fact whose part fails, and any fact asked without being declared, is read alone when asked, as
before: the bundle changes the number of commands, never an answer.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any, TypeVar

from pyinfra import host
from pyinfra.api import FactBase, StringCommand

T = TypeVar("T")
# A fact and its arguments, computed when asked (registries and settings are complete by then).
Request = Callable[[], tuple[type[FactBase], dict[str, Any]]]

_read: dict[tuple, Any] = {}
_DECLARED: list[Request] = []
# Ends each part of the bundle, with the part's number and exit status.
PART_END = "@@proxy-deploy-fact-end"


def fact(cls: type[FactBase[T]], **kwargs: Any) -> T:
    """host.get_fact(CLS, **KWARGS), asked once per host and run."""
    key = _key(cls, kwargs)
    if key not in _read:
        _read[key] = host.get_fact(cls, **kwargs)
    return _read[key]


def asks(request: Request) -> Request:
    """Declare REQUEST (a function returning a fact class and its arguments) as read by
    `read_all`; returns it, so the module asks through the same function (`ask(REQUEST)`)."""
    _DECLARED.append(request)
    return request


def ask(request: Request) -> Any:
    cls, kwargs = request()
    return fact(cls, **kwargs)


def read_all() -> None:
    """Read every declared fact of this host not read yet, in one remote command."""
    wanted = [(cls, kwargs) for cls, kwargs in (r() for r in _DECLARED)]
    wanted = [(cls, kwargs) for cls, kwargs in wanted if _key(cls, kwargs) not in _read]
    if not wanted:
        return
    parts = tuple(_command_of(cls, kwargs) for cls, kwargs in wanted)
    outputs = host.get_fact(Bundle, parts=parts)
    for (cls, kwargs), (status, lines) in zip(wanted, outputs, strict=False):
        if status == 0:
            instance = cls()
            _read[_key(cls, kwargs)] = instance.process(lines) if lines else instance.default()


def _command_of(cls: type[FactBase], kwargs: dict[str, Any]) -> str:
    command = cls().command(**kwargs) if callable(cls.command) else cls.command
    return command.get_raw_value() if isinstance(command, StringCommand) else str(command)


def _key(cls: type[FactBase], kwargs: dict[str, Any]) -> tuple:
    return (host.name, cls, tuple(sorted((k, _hashable(v)) for k, v in kwargs.items())))


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


class ManagedFiles(FactBase):
    """path -> (sha1, octal mode) of each existing file of PATHS (missing files are absent),
    one command for them all."""

    def command(self, paths: tuple[str, ...]) -> str:
        quoted = " ".join(shlex.quote(p) for p in paths)
        return (
            f'for p in {quoted}; do [ -f "$p" ] && echo "$(sha1sum < "$p" | cut -c1-40)'
            ' $(stat -c %a "$p") $p"; done; true'
        )

    def process(self, output: list[str]) -> dict[str, tuple[str, str]]:
        files = {}
        for line in output:
            digest, mode, path = [*line.split(" ", 2), "", ""][:3]
            if path:
                files[path] = (digest, mode)
        return files


class Bundle(FactBase):
    """(exit status, output lines) of each of PARTS (shell commands), run one after the other in
    one command, each in its own subshell (an `exit` ends only its part); each part's stderr is
    dropped, as pyinfra drops a fact's."""

    default = list

    def command(self, parts: tuple[str, ...]) -> str:
        return " ".join(
            f'( {part}\n) 2>/dev/null; echo "{PART_END} {number} $?";'
            for number, part in enumerate(parts)
        )

    def process(self, output: list[str]) -> list[tuple[int, list[str]]]:
        results: list[tuple[int, list[str]]] = []
        lines: list[str] = []
        for line in output:
            before, marker, after = line.partition(PART_END)
            if not marker:
                lines.append(line)
                continue
            if before:  # the part's last line had no newline
                lines.append(before)
            results.append((int(after.split()[1]), lines))
            lines = []
        return results


class PresentPaths(FactBase):
    """The PATHS that exist (a symbolic link counts, even a dangling one), one command."""

    default = set

    def command(self, paths: tuple[str, ...]) -> str:
        quoted = " ".join(shlex.quote(p) for p in paths)
        return f'for p in {quoted}; do {{ [ -e "$p" ] || [ -L "$p" ]; }} && echo "$p"; done; true'

    def process(self, output: list[str]) -> set[str]:
        return set(output)


_LOOKED_FOR: list[str] = []


def looks_for(*paths: str) -> None:
    """Register PATHS whose existence a task asks (`exists`): one command answers for all."""
    _LOOKED_FOR.extend(p for p in paths if p not in _LOOKED_FOR)


@asks
def _present_paths() -> tuple[type[FactBase], dict[str, Any]]:
    return PresentPaths, {"paths": tuple(_LOOKED_FOR)}


def exists(path: str) -> bool:
    """Whether PATH exists on the host (PATH registered with `looks_for`, else one command)."""
    if path in _LOOKED_FOR:
        return path in ask(_present_paths)
    return path in fact(PresentPaths, paths=(path,))
