"""systemd sandboxes for nginx and the log shipper: drop-ins, never the packages' own units.

Owns: /etc/systemd/system/nginx.service.d/proxy-sandbox.conf (templates/systemd/
nginx-sandbox.conf.j2), /etc/systemd/system/proxy-log-shipping.service.d/proxy-sandbox.conf
(templates/systemd/proxy-log-shipping-sandbox.conf, only with `log_bucket` set), the restart of
nginx that puts a changed sandbox in force, and the activation record `nginx-sandbox`.
Reads: service_sandbox_enabled, access_log (its directory is writable), log_bucket.
Leaves alone: nginx's configuration and its reloads (tasks/nginx_proxy.py), the shipper's own
units (tasks/log_shipping.py). No package.

Restart vs reload. A sandbox is set up when a process starts: `systemctl reload nginx` (a new
nginx.conf) keeps the running master in the sandbox it started in, and a changed drop-in needs a
daemon-reload *and a restart* of nginx to take effect. So:
- a change to nginx.conf alone is reloaded as always (tasks/nginx_proxy.py), never restarted;
- a change to the nginx drop-in (or a run that died between installing it and the restart) is
  the only thing that restarts nginx, in this order: `nginx -t` inside a transient unit that
  has the drop-in's very properties (`systemd-run -p ...`: the logs it opens, the paths it
  writes, its system calls), before the file replaces the live one; daemon-reload; restart;
  /healthz. If the restart or the health check fails, the previous drop-in is put back (or the
  file removed), systemd reloaded and nginx started again under it, and the host fails.
- the activation record (tasks/activation.py) is written only after that, so a killed run
  restarts nginx at the next one; a drop-in that matches while systemd still reports
  NeedDaemonReload for nginx.service is drift too.
The shipper is a oneshot started by its timer: a daemon-reload is all its drop-in needs.

With `service_sandbox_enabled = False` both drop-ins are removed, systemd reloaded and nginx
restarted, once, outside any sandbox.
"""

from __future__ import annotations

import posixpath
import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from tasks import drift
from tasks.activation import (
    ACTIVE_DIR,
    STATE_DIR,
    activate,
    install_validated,
    manages,
    render,
    template_text,
)
from tasks.facts import exists, looks_for
from tasks.settings import Settings, for_host
from tasks.units import install_units, unit_state, watches

UNIT_DIR = "/etc/systemd/system"
NGINX_DROPIN = f"{UNIT_DIR}/nginx.service.d/proxy-sandbox.conf"
SHIPPER_DROPIN = f"{UNIT_DIR}/proxy-log-shipping.service.d/proxy-sandbox.conf"
LABEL = "nginx-sandbox"
manages(NGINX_DROPIN, SHIPPER_DROPIN)
watches("nginx.service", "proxy-log-shipping.service")
looks_for(NGINX_DROPIN, SHIPPER_DROPIN)

# Where nginx writes besides its access log's directory: both packagings' temp directories
# (`-`: absent on the other packaging) and /run, for /run/nginx.pid.
NGINX_WRITABLE = ("/var/log/nginx", "-/var/lib/nginx", "-/var/cache/nginx", "/run")


@deploy("Sandbox nginx and the log shipper (systemd)")
def sandbox_services() -> None:
    settings = for_host(host)
    if not settings.service_sandbox_enabled:
        _remove_sandboxes()
        return
    wanted = {NGINX_DROPIN: nginx_dropin(settings)}
    installed = install_validated(
        name=f"Install {NGINX_DROPIN} (nginx -t inside the same sandbox first)",
        files=wanted,
        check=sandboxed_check_command(wanted[NGINX_DROPIN]),
        label=LABEL,
    )
    stale = unit_state("nginx.service").get("NeedDaemonReload") == "yes"
    activate(
        name="Restart nginx into its sandbox (daemon-reload, restart, /healthz; else roll back)",
        label=LABEL,
        files=wanted,
        commands=["systemctl daemon-reload", restart_or_roll_back_command(settings)],
        subject="nginx sandbox",
        installed=installed,
        live_drift="systemd runs an older definition of nginx.service (daemon-reload pending)"
        if stale
        else None,
    )
    if settings.log_bucket:
        _shipper_sandbox()


def _shipper_sandbox() -> None:
    """The shipper's drop-in, and a daemon-reload when it changed or systemd still runs an older
    definition of the unit (its next run, hourly, starts in the new sandbox)."""
    install_units(
        {SHIPPER_DROPIN: template_text("systemd/proxy-log-shipping-sandbox.conf")},
        "log shipper sandbox",
    )


def nginx_writable_paths(settings: Settings) -> list[str]:
    """ReadWritePaths of nginx: the fixed ones, and the access log's directory when elsewhere."""
    log_dir = posixpath.dirname(settings.access_log)
    paths = list(NGINX_WRITABLE)
    if log_dir not in (p.lstrip("-") for p in paths):
        paths.insert(1, log_dir)
    return paths


def nginx_dropin(settings: Settings) -> str:
    return render("systemd/nginx-sandbox.conf.j2", writable=nginx_writable_paths(settings))


def dropin_properties(content: str) -> list[str]:
    """The `Key=Value` lines of a drop-in's [Service] section, in order (what systemd-run -p
    takes)."""
    properties = []
    for line in content.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            properties.append(line)
    return properties


def sandboxed_check_command(content: str) -> str:
    """Shell: `nginx -t` of the live nginx.conf in a transient unit with CONTENT's properties.
    It opens the logs and reads the files nginx will, under the same restrictions."""
    props = " ".join(f"-p {shlex.quote(p)}" for p in dropin_properties(content))
    return (
        "systemd-run --quiet --wait --pipe --collect --service-type=exec"
        f" {props} /usr/sbin/nginx -t -q -g 'daemon on; master_process on;'"
    )


def restart_or_roll_back_command(settings: Settings) -> str:
    """Shell: restart nginx and check /healthz; on failure put the last good drop-in back (or
    remove it), reload systemd, start nginx again and fail."""
    kept = f"{STATE_DIR}/last-good/{LABEL}{NGINX_DROPIN}"
    health = (
        "curl -fsS -o /dev/null --max-time 2 --retry 10 --retry-delay 1 --retry-all-errors "
        f"http://127.0.0.1:{settings.listen_port}/healthz"
    )
    roll_back = (
        f"if [ -e {kept} ]; then cp -p {kept} {NGINX_DROPIN}; else rm -f {NGINX_DROPIN}; fi;"
        " systemctl daemon-reload; systemctl restart nginx;"
        " echo 'nginx failed under the new sandbox: the previous one is back' >&2; exit 1"
    )
    return f"if ! {{ systemctl restart nginx && {health}; }}; then {roll_back}; fi"


def _remove_sandboxes() -> None:
    present = [path for path in (NGINX_DROPIN, SHIPPER_DROPIN) if exists(path)]
    if not present:
        host.noop("no service sandbox (service_sandbox_enabled is False)")
        return
    for path in present:
        drift.state_differs(path, "present, should not be", "Remove the service sandboxes")
    restart = NGINX_DROPIN in present
    server.shell(
        name="Remove the service sandboxes (service_sandbox_enabled is False)"
        + (", restart nginx" if restart else ""),
        commands=[
            f"rm -f {' '.join(present)} {ACTIVE_DIR}/{LABEL}",
            "systemctl daemon-reload",
            *(["systemctl restart nginx"] if restart else []),
        ],
    )
