"""Host controls a reverse proxy should have (dev-sec os_hardening and CIS Debian, picked for it).

Owns, each behind a setting that turns it off:
- kernel_module_blacklist: /etc/modprobe.d/proxy-blacklist.conf (`install X /bin/false`);
- core_dumps_disabled: /etc/security/limits.d/90-proxy-no-core.conf and
  /etc/systemd/coredump.conf.d/90-proxy.conf (fs.suid_dumpable = 0 is tasks/sysctl.py's);
- login_defs_hardened: the UMASK and SHA_CRYPT_*_ROUNDS lines of /etc/login.defs, and nothing
  else of that file (tasks/hardening_defaults.LOGIN_DEFS); where the PAM session stack has no
  pam_umask (Debian 12), the pam-auth-update profile /usr/share/pam-configs/proxy-umask that
  adds it, so the UMASK reaches SSH sessions;
- legal_banner: /etc/issue and /etc/issue.net (sshd shows the latter: `Banner` in
  templates/ssh/sshd_config.j2, tasks/sshd.py);
- needrestart_enabled: /etc/needrestart/conf.d/90-proxy.conf; declares the package needrestart
  (tasks/packages.py installs it with the others).
Turned off, the files this module owns are removed; /etc/login.defs and the issue files, which
are the distribution's, are left as they are.
The login umask applies to the deploy's own sessions from the next run on (sudo keeps the union
of both umasks: 027): every file and directory it needs others to read already exists after the
first run or gets an explicit mode (tasks/activation.py), and dpkg sets its own umask.
Reads: the settings above.
Leaves alone: modules already loaded (a blacklisted one stays until the next boot), and inside a
container all of it is persisted only: the kernel is the machine's (the lab reports it so).
"""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.api import deploy, operation
from pyinfra.facts.server import Command
from pyinfra.operations import files, server

from tasks import drift
from tasks.activation import STATE_DIR, install_file, manages, render, template_text
from tasks.facts import ask, asks, exists, looks_for
from tasks.hardening_defaults import KERNEL_MODULE_REASONS, LOGIN_DEFS, NEEDRESTART_CONF
from tasks.settings import for_host

PACKAGES = ("needrestart",)
MODPROBE_CONF = "/etc/modprobe.d/proxy-blacklist.conf"
LIMITS_CONF = "/etc/security/limits.d/90-proxy-no-core.conf"
COREDUMP_CONF = "/etc/systemd/coredump.conf.d/90-proxy.conf"
NEEDRESTART_CONF_PATH = "/etc/needrestart/conf.d/90-proxy.conf"
ISSUE_FILES = ("/etc/issue", "/etc/issue.net")
LOGIN_DEFS_PATH = "/etc/login.defs"
LOGIN_DEFS_KEPT = f"{STATE_DIR}/last-good/login.defs"
PAM_PROFILE_NAME = "proxy-umask"
PAM_PROFILE = f"/usr/share/pam-configs/{PAM_PROFILE_NAME}"
PAM_COMMON_SESSION = "/etc/pam.d/common-session"
OWNED = (MODPROBE_CONF, LIMITS_CONF, COREDUMP_CONF, NEEDRESTART_CONF_PATH)
manages(*OWNED, *ISSUE_FILES, PAM_PROFILE)
looks_for(*OWNED, PAM_PROFILE)


@asks
def _login_defs() -> tuple[type[Command], dict]:
    """`KEY VALUE` of each active LOGIN_DEFS line of /etc/login.defs (none: empty output)."""
    keys = "|".join(key for key, _, _ in LOGIN_DEFS)
    return Command, {"command": f"awk '$1 ~ /^({keys})$/ {{print $1, $2}}' {LOGIN_DEFS_PATH}"}


@asks
def _pam_umask_lines() -> tuple[type[Command], dict]:
    """How many lines of the PAM session stack call pam_umask."""
    return Command, {"command": f"grep -c pam_umask {PAM_COMMON_SESSION} || true"}


@deploy("Host controls: modules, core dumps, login.defs, banner, needrestart")
def host_controls() -> None:
    settings = for_host(host)
    _file_or_absent(
        MODPROBE_CONF,
        render(
            "modprobe/proxy-blacklist.conf.j2",
            modules=settings.kernel_module_blacklist,
            reasons=KERNEL_MODULE_REASONS,
        )
        if settings.kernel_module_blacklist
        else None,
    )
    for path, template in (
        (LIMITS_CONF, "90-proxy-no-core.conf"),
        (COREDUMP_CONF, "coredump-proxy.conf"),
    ):
        _file_or_absent(
            path, template_text(f"host/{template}") if settings.core_dumps_disabled else None
        )
    _file_or_absent(
        NEEDRESTART_CONF_PATH,
        render("host/needrestart.conf.j2", conf=NEEDRESTART_CONF)
        if settings.needrestart_enabled
        else None,
    )
    if settings.legal_banner:
        for path in ISSUE_FILES:
            install_file(
                name=f"Install {path} (legal banner)",
                path=path,
                content=render("host/issue.j2", banner=settings.legal_banner),
            )
    if not settings.login_defs_hardened and exists(PAM_PROFILE):
        server.shell(
            name=f"Remove {PAM_PROFILE} and its pam_umask (login_defs_hardened is False)",
            commands=[
                f"pam-auth-update --package --remove {PAM_PROFILE_NAME} && rm -f {PAM_PROFILE}"
            ],
        )
    if settings.login_defs_hardened:
        _pam_umask()
        wrong = login_defs_differences(ask(_login_defs) or "")
        if wrong:
            for key, (live, wanted) in wrong.items():
                drift.state_differs(
                    f"{LOGIN_DEFS_PATH} {key}",
                    f"{live or 'unset'}, should be {wanted}",
                    f"Set {', '.join(wrong)} in {LOGIN_DEFS_PATH}",
                )
            login_defs_lines(
                name=f"Set {', '.join(wrong)} in {LOGIN_DEFS_PATH}",
                values={key: wanted for key, (_, wanted) in wrong.items()},
            )


def _pam_umask() -> None:
    """login.defs' UMASK reaches SSH sessions through pam_umask: Debian 13's PAM session stack has
    it, Debian 12's has not. There a pam-auth-update profile adds it (kept once installed)."""
    in_stack = (ask(_pam_umask_lines) or "0").strip() not in ("", "0")
    if in_stack and not exists(PAM_PROFILE):
        return
    changed = install_file(
        name=f"Install {PAM_PROFILE} (pam_umask for every session)",
        path=PAM_PROFILE,
        content=template_text("login/pam-configs-proxy-umask"),
    )
    if changed or not in_stack:
        if not in_stack:
            drift.state_differs("pam_umask", "not in /etc/pam.d/common-session", "pam-auth-update")
        server.shell(
            name="Add pam_umask to the PAM sessions (pam-auth-update)",
            commands=[f"pam-auth-update --package --enable {PAM_PROFILE_NAME}"],
        )


def login_defs_differences(live_output: str) -> dict[str, tuple[str, str]]:
    """KEY -> (live value or "", wanted value) for each LOGIN_DEFS key that differs."""
    live: dict[str, str] = {}
    for line in live_output.splitlines():
        key, _, value = line.partition(" ")
        live.setdefault(key, value.strip())  # login.defs: the first active line counts
    return {
        key: (live.get(key, ""), wanted) for key, wanted, _ in LOGIN_DEFS if live.get(key) != wanted
    }


def login_defs_command(
    values: dict[str, str], path: str = LOGIN_DEFS_PATH, kept: str = LOGIN_DEFS_KEPT
) -> str:
    """Shell: set each KEY to VALUE in login.defs, touching only that key's line: the active one,
    else the first commented example with a value (`#KEY 5000`), else a new line at the end.
    The file before the change is kept (KEPT)."""
    steps = [f"mkdir -p {posixpath.dirname(kept)} && cp -p {path} {kept}"]
    for key, value in values.items():
        active = rf"^[[:space:]]*{key}[[:space:]]"
        example = rf"^#[[:space:]]*{key}[[:space:]]+[0-9]"
        steps.append(
            f"if grep -qE '{active}' {path}; then"
            f" sed -i -E 's/{active}.*/{key}\\t{value}/' {path};"
            f" elif grep -qE '{example}' {path}; then"
            f" sed -i -E '0,/{example}.*/s//{key}\\t{value}/' {path};"
            f" else printf '{key}\\t{value}\\n' >> {path}; fi"
        )
    return " && ".join(steps)


@operation()
def login_defs_lines(values: dict[str, str]):
    """
    Set login.defs keys, touching no other line.

    + values: key -> value (e.g. {"UMASK": "027"})
    """
    yield login_defs_command(values)


def _file_or_absent(path: str, content: str | None) -> None:
    """Install PATH with CONTENT, or remove it (when it exists) for CONTENT None: turned off."""
    if content is not None:
        install_file(name=f"Install {path}", path=path, content=content)
    elif exists(path):
        drift.state_differs(path, "present, turned off", f"Remove {path}")
        files.file(name=f"Remove {path} (turned off)", path=path, present=False)
