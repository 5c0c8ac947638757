"""Safe activation of configuration files, and a record of what each service runs.

pyinfra's `files.template` writes straight to the destination and cannot validate. A service's
configuration that fails its own check (`nginx -t`, `sshd -t`, `nft -c`) must never go live, so
`install_validated` stages the new files next to a copy of the live tree, runs the check on the
staged tree, keeps a copy of the live files as the last good configuration, and only then moves
the new files into place (each by one rename). When the check fails the operation fails with the
checker's own error text, and the live files are untouched.

Files on disk are half the story: a file put in place by a run that died before the reload is
not what the service runs. So every service has an *activation record*,
/var/lib/proxy-deploy/active/LABEL: the fingerprint of the configuration it was last activated
with, written by `activated` only after the reload and its checks succeeded. Installing new files
first deletes the record; a record that differs from the desired fingerprint makes the next run
reload (and check, and record) even though every file already matches.

The comparisons use facts (content hashes, the records), so a converged host is a no-op, and a
drift check (tasks/drift.py) validates what a repair would install without touching live files.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
from io import StringIO
from shlex import quote

from pyinfra import host
from pyinfra.api import FactBase, FileUploadCommand, StringCommand, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.api.util import get_template
from pyinfra.facts.files import Sha1File

from tasks import drift
from tasks.facts import ManagedFiles, ask, asks, fact

STATE_DIR = "/var/lib/proxy-deploy"
ACTIVE_DIR = f"{STATE_DIR}/active"
TEMPLATES = posixpath.join(posixpath.dirname(posixpath.dirname(__file__)), "templates")
# Programs installed on the hosts as they are (no template): programs/README.md.
PROGRAMS = posixpath.join(posixpath.dirname(TEMPLATES), "programs")


class ActivationRecords(FactBase):
    """LABEL -> the fingerprint its service was last activated with (every record, one command)."""

    def command(self) -> str:
        return (
            f'for f in {ACTIVE_DIR}/*; do [ -f "$f" ] && echo "${{f##*/}} $(cat "$f")"; done; true'
        )

    def process(self, output: list[str]) -> dict[str, str]:
        records = {}
        for line in output:
            label, _, value = line.partition(" ")
            records[label] = value.strip()
        return records


def sha1(content: str) -> str:
    return hashlib.sha1(content.encode()).hexdigest()


def fingerprint(files: dict[str, str]) -> str:
    """One value for a set of files (path -> content): what a service's record holds."""
    listing = "".join(f"{path} {sha1(files[path])}\n" for path in sorted(files))
    return sha1(listing)


def recorded(label: str) -> str | None:
    """The fingerprint LABEL's service was last activated with, if any."""
    return (ask(_activation_records) or {}).get(label)


def record_command(label: str, value: str) -> str:
    """Shell: write LABEL's activation record (a rename: never half written)."""
    path = f"{ACTIVE_DIR}/{label}"
    return f"mkdir -p {ACTIVE_DIR} && echo {quote(value)} > {path}.new && mv -f {path}.new {path}"


# Every file the deploy manages, registered by the task modules as they are imported (`manages`):
# their hashes come in one command for the whole host.
MANAGED_FILES: list[str] = []


def manages(*paths: str) -> None:
    """Register PATHS as files the deploy installs (before any deploy function runs)."""
    MANAGED_FILES.extend(p for p in paths if p not in MANAGED_FILES)


def live_sha1(path: str) -> str | None:
    """sha1 of the live file at PATH, None when it does not exist."""
    if path in MANAGED_FILES:
        return _managed(path)[0]
    return fact(Sha1File, path=path)


def wrong_mode(path: str, mode: str) -> str | None:
    """The live file's mode when it exists and is not MODE (registered files only)."""
    live = _managed(path)[1] if path in MANAGED_FILES else None
    return live if live and live != mode.lstrip("0") else None


@asks
def _managed_files() -> tuple[type[ManagedFiles], dict]:
    return ManagedFiles, {"paths": tuple(MANAGED_FILES)}


@asks
def _activation_records() -> tuple[type[ActivationRecords], dict]:
    return ActivationRecords, {}


def _managed(path: str) -> tuple[str | None, str | None]:
    return ask(_managed_files).get(path, (None, None))


def differing(files: dict[str, str]) -> dict[str, str]:
    """The FILES (path -> desired content) whose live content differs."""
    return {path: content for path, content in files.items() if live_sha1(path) != sha1(content)}


def install_validated(
    name: str,
    files: dict[str, str],
    check: str,
    label: str,
    tree: str | None = None,
    mode: str = "644",
) -> OperationMeta | None:
    """The operation `validated_install` (below) when a file of FILES differs in content or
    mode; None, and no operation at all, when every one matches. (Each pyinfra operation costs
    the controller a walk of the Python stack: on a converged fleet, calling none is most of what
    makes a no-op cheap.)"""
    if not differing(files) and not any(wrong_mode(path, mode) for path in files):
        return None
    return validated_install(name=name, files=files, check=check, label=label, tree=tree, mode=mode)


@operation()
def validated_install(
    files: dict[str, str],
    check: str,
    label: str,
    tree: str | None = None,
    mode: str = "644",
):
    """
    Install FILES (live path -> content) once CHECK passes on a staged copy.

    + files: live destination path -> full file content
    + check: the validation command; `{stage}` is replaced by the staging directory
    + label: short name for the stage and last-good directories (e.g. "nginx")
    + tree: a configuration directory to stage whole, for files that include each other
      (e.g. /etc/nginx: staged as `{stage}/nginx.conf`); without it each file is staged
      alone at its own path under `{stage}` (e.g. `{stage}/etc/ssh/sshd_config`)
    + mode: permissions of the installed files

    The previous live files stay in /var/lib/proxy-deploy/last-good/LABEL (same layout), and the
    activation record of LABEL is removed before the first file moves.
    """
    drifted = differing(files)
    if not drifted:
        for path in files:
            yield from _fix_mode(path, mode)
        return
    if drift.checking():
        _report_drift(drifted, check, label, tree)

    stage = f"{STATE_DIR}/stage/{label}"
    yield from _stage_commands(stage, drifted, tree, mode)
    # The check must pass before anything live changes; it fails the operation otherwise.
    yield check.format(stage=stage)
    yield from _keep_last_good(label, list(files), tree)
    # From here on the running service no longer matches its record, whatever happens next.
    yield f"rm -f {ACTIVE_DIR}/{label}"
    for path in drifted:
        # cp to a temporary name then rename: each file is swapped atomically.
        new = quote(path + ".new")
        yield (
            f"mkdir -p {quote(posixpath.dirname(path))}"
            f" && cp -p {quote(_under(stage, path, tree))} {new} && mv -f {new} {quote(path)}"
        )


def activate(
    name: str,
    label: str,
    files: dict[str, str],
    commands: list[str],
    subject: str,
    installed: OperationMeta | None,
    live_drift: str | None = None,
) -> None:
    """Make LABEL's service run FILES (COMMANDS: reload, then checks; the record written last).

    + installed: what install_validated returned for FILES
    + live_drift: what the service itself shows is stale (e.g. nginx's workers older than its
      file), when it offers such a fingerprint; None if nothing

    When the files differ, the activation follows their installation (`_if=`: a drift check does
    not count it as drift of its own). When they match but the service runs something else (its
    record differs, or LIVE_DRIFT), that is drift: reported, and activated unconditionally.
    Otherwise there is nothing to do.
    """
    if differing(files) and installed is not None:
        activated(name=name, label=label, files=files, commands=commands, _if=installed.did_change)
        return
    why = live_drift
    if why is None and recorded(label) != fingerprint(files):
        why = f"running configuration older than {', '.join(sorted(files))} (reload pending)"
    if why is None:
        host.noop(f"{subject} runs the deployed configuration")
        return
    drift.state_differs(subject, why, name)
    activated(name=name, label=label, files=files, commands=commands)


@operation()
def activated(label: str, files: dict[str, str], commands: list[str]):
    """
    Run COMMANDS (reload, then checks), then record FILES' fingerprint as LABEL's active one.

    + label: the record's name (e.g. "nginx")
    + files: the desired files (path -> content)
    + commands: shell commands, in order; any failure stops before the record is written
    """
    yield from commands
    yield record_command(label, fingerprint(files))


def _fix_mode(path: str, mode: str):
    """chmod PATH when only its mode drifted (a file with secrets made world-readable)."""
    now = wrong_mode(path, mode)
    if now is None:
        host.noop(f"{path} is up to date")
        return
    drift.state_differs(path, f"mode {now}, should be {mode}", f"Install {path}")
    yield StringCommand("chmod", mode, path)


def _stage_commands(stage: str, files: dict[str, str], tree: str | None, mode: str):
    yield f"rm -rf {quote(stage)} && mkdir -p {quote(stage)}"
    if tree:
        yield f"cp -a {quote(tree)}/. {quote(stage)}/"
    for path, content in files.items():
        yield from _write(content, _under(stage, path, tree), mode)


def _keep_last_good(label: str, paths: list[str], tree: str | None):
    last_good = f"{STATE_DIR}/last-good/{label}"
    yield f"rm -rf {quote(last_good)} && mkdir -p {quote(last_good)}"
    if tree:
        yield f"cp -a {quote(tree)}/. {quote(last_good)}/"
        return
    for path in paths:
        kept = _under(last_good, path, tree)
        yield (
            f"if [ -e {quote(path)} ]; then mkdir -p {quote(posixpath.dirname(kept))}"
            f" && cp -p {quote(path)} {quote(kept)}; fi"
        )


def _report_drift(files: dict[str, str], check: str, label: str, tree: str | None) -> None:
    """Drift check: a diff per differing file, and the repair's validation on a staged copy in
    /var/lib/proxy-deploy/drift-check/LABEL (live files untouched)."""
    operation = f"Install the {label} configuration"
    for path, content in files.items():
        drift.file_differs(path, content, operation)
    stage = f"{STATE_DIR}/drift-check/{label}"
    prepare = f"rm -rf {quote(stage)} && mkdir -p {quote(stage)}"
    if tree:
        prepare += f" && cp -a {quote(tree)}/. {quote(stage)}/"
    dirs = {posixpath.dirname(_under(stage, path, tree)) for path in files}
    prepare += "".join(f" && mkdir -p {quote(d)}" for d in sorted(dirs))
    if not host.run_shell_command(prepare, _sudo=True)[0]:
        drift.repair_invalid(label, "could not prepare a staged copy to validate", operation)
        return
    for path, content in files.items():
        host.put_file(StringIO(content), _under(stage, path, tree), _sudo=True)
    ok, output = host.run_shell_command(check.format(stage=stage) + " 2>&1", _sudo=True)
    if not ok:
        drift.repair_invalid(label, "\n".join(output.stdout_lines), operation)


def _under(directory: str, path: str, tree: str | None) -> str:
    """Where live PATH goes inside DIRECTORY: relative to TREE, or to / without one."""
    return posixpath.join(directory, path.removeprefix(tree or "/").lstrip("/"))


def template_text(template: str) -> str:
    """templates/TEMPLATE as it is (scripts and units with nothing to fill in)."""
    with open(posixpath.join(TEMPLATES, template), encoding="utf-8") as source:
        return source.read()


def program_text(program: str) -> str:
    """programs/PROGRAM, the source of a program the deploy installs on the hosts."""
    with open(posixpath.join(PROGRAMS, program), encoding="utf-8") as source:
        return source.read()


def render(template: str, **data: object) -> str:
    """Render templates/TEMPLATE exactly as pyinfra's files.template does (StrictUndefined)."""
    return get_template(posixpath.join(TEMPLATES, template)).render(**data)


def install_file(name: str, path: str, content: str, mode: str = "644") -> bool:
    """The operation `file_installed` (below) when PATH differs from CONTENT or MODE; True
    then, False (and no operation) when it matches."""
    if live_sha1(path) == sha1(content) and not wrong_mode(path, mode):
        return False
    file_installed(name=name, path=path, content=content, mode=mode)
    return True


@operation()
def file_installed(path: str, content: str, mode: str = "644"):
    """
    Install one file that needs no validation (units, scripts, drop-ins), by one rename; a drift
    check records its diff.

    + path: live destination path
    + content: full file content
    + mode: permissions
    """
    if live_sha1(path) == sha1(content):
        yield from _fix_mode(path, mode)
        return
    drift.file_differs(path, content, f"Install {path}")
    new = f"{path}.new"
    yield from _write(content, new, mode, then=f"mv -f {quote(new)} {quote(path)}")


# Content written inside the command itself (one round trip instead of an SFTP upload and the
# three commands pyinfra's sudo upload runs) when it is small and not private: a command line
# can be read by any user of the host while it runs (/proc/PID/cmdline).
INLINE_MAX_BYTES = 48 * 1024


def _write(content: str, dest: str, mode: str, then: str = ""):
    """Commands that write CONTENT to DEST with MODE (its directory made first), then THEN."""
    directory = quote(posixpath.dirname(dest))
    data = content.encode()
    world_readable = int(mode, 8) & 0o004
    if world_readable and len(data) <= INLINE_MAX_BYTES:
        encoded = base64.b64encode(data).decode()
        yield (
            f"mkdir -p {directory} && printf %s {encoded} | base64 -d > {quote(dest)}"
            f" && chmod {mode} {quote(dest)}" + (f" && {then}" if then else "")
        )
        return
    yield StringCommand("mkdir", "-p", posixpath.dirname(dest))
    yield FileUploadCommand(
        StringIO(content), dest, remote_temp_filename=host.get_temp_filename(dest)
    )
    yield f"chmod {mode} {quote(dest)}" + (f" && {then}" if then else "")
