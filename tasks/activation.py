"""Safe activation of configuration files: validate the new files before they go live.

pyinfra's `files.template` writes straight to the destination and cannot validate. A service's
configuration that fails its own check (`nginx -t`, `sshd -t`, `nft -c`) must never go live, so
`install_validated` stages the new files next to a copy of the live tree, runs the check on the
staged tree, keeps a copy of the live files as the last good configuration, and only then moves
the new files into place. When the check fails the operation fails with the checker's own
error text, and the live files are untouched.

The comparison is by content hash of each live file (a fact), so a second run is a no-op and a
hand edit of a managed file (drift) is noticed and repaired by the next run.
"""

from __future__ import annotations

import hashlib
import posixpath
from io import StringIO
from shlex import quote

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation
from pyinfra.api.util import get_template
from pyinfra.facts.files import Sha1File

STATE_DIR = "/var/lib/proxy-deploy"


def _sha1(content: str) -> str:
    return hashlib.sha1(content.encode()).hexdigest()


@operation()
def install_validated(
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

    The previous live files stay in /var/lib/proxy-deploy/last-good/LABEL (same layout).
    """
    drifted = {
        path: content
        for path, content in files.items()
        if host.get_fact(Sha1File, path=path) != _sha1(content)
    }
    if not drifted:
        host.noop(f"{label} configuration is up to date")
        return

    stage = f"{STATE_DIR}/stage/{label}"
    last_good = f"{STATE_DIR}/last-good/{label}"
    yield f"rm -rf {quote(stage)} && mkdir -p {quote(stage)}"
    if tree:
        yield f"cp -a {quote(tree)}/. {quote(stage)}/"
    for path, content in drifted.items():
        staged = _under(stage, path, tree)
        yield StringCommand("mkdir", "-p", posixpath.dirname(staged))
        yield FileUploadCommand(
            StringIO(content), staged, remote_temp_filename=host.get_temp_filename(staged)
        )
        yield StringCommand("chmod", mode, staged)
    # The check must pass before anything live changes; it fails the operation otherwise.
    yield check.format(stage=stage)
    yield f"rm -rf {quote(last_good)} && mkdir -p {quote(last_good)}"
    if tree:
        yield f"cp -a {quote(tree)}/. {quote(last_good)}/"
    else:
        for path in files:
            kept = _under(last_good, path, tree)
            yield (
                f"if [ -e {quote(path)} ]; then mkdir -p {quote(posixpath.dirname(kept))}"
                f" && cp -p {quote(path)} {quote(kept)}; fi"
            )
    for path in drifted:
        # cp to a temporary name then rename: each file is swapped atomically.
        new = quote(path + ".new")
        yield (
            f"mkdir -p {quote(posixpath.dirname(path))}"
            f" && cp -p {quote(_under(stage, path, tree))} {new} && mv -f {new} {quote(path)}"
        )


def _under(directory: str, path: str, tree: str | None) -> str:
    """Where live PATH goes inside DIRECTORY: relative to TREE, or to / without one."""
    return posixpath.join(directory, path.removeprefix(tree or "/").lstrip("/"))


TEMPLATES = posixpath.join(posixpath.dirname(posixpath.dirname(__file__)), "templates")


def render(template: str, **data: object) -> str:
    """Render templates/TEMPLATE exactly as pyinfra's files.template does (StrictUndefined)."""
    return get_template(posixpath.join(TEMPLATES, template)).render(**data)
