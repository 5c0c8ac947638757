"""nginx as the retrying reverse proxy: its configuration, activated safely, and the service.

Owns: /etc/nginx/nginx.conf (one file, rendered from templates/nginx/nginx.conf.j2 with
proxy.conf.j2 inlined), the removal of the distribution's default site and of the conf.d/proxy.conf
earlier versions wrote, the nginx service (running, enabled at boot, reloaded until it runs the
deployed configuration), the post-reload health check and nginx's activation record.

What nginx runs is read from nginx itself, not only from the record: its workers are replaced on
every successful (re)load, so workers that started before nginx.conf last changed mean the file
went live on disk but not in nginx (a run killed before the reload, or a hand edit).
Reads: every proxy and nginx-hardening setting (see tasks/settings.py); the upstream block comes
from tasks/nginx_upstream.py.
Leaves alone: the nginx package (tasks/nginx_install.py) and the host firewall.

A configuration that fails `nginx -t` never goes live (tasks/activation.py); nginx is reloaded,
never restarted, and only when what it runs is not the deployed configuration (the files changed,
or a run died between installing them and the reload); after the reload `/healthz` must answer
200 or the host fails, and only then is the configuration recorded as active.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.operations import files

from tasks import drift
from tasks.activation import activate, install_validated, manages, render
from tasks.apt_packages import installed_packages
from tasks.facts import ask, asks, exists, looks_for
from tasks.nginx_upstream import upstream
from tasks.settings import Settings, for_host, inventory_backend_addresses
from tasks.units import service_state, watches

# The distribution's package enables a demo site on port 80 (a symlink), nginx.org's ships one
# in conf.d. Our nginx.conf loads neither, but a later hand edit must not bring them back.
DEFAULT_SITE_LINK = "/etc/nginx/sites-enabled/default"
DEFAULT_SITE_FILE = "/etc/nginx/conf.d/default.conf"
# Versions before the one-file layout kept the proxy here; nothing includes it any more.
OLD_PROXY_FILE = "/etc/nginx/conf.d/proxy.conf"
NGINX_CONF = "/etc/nginx/nginx.conf"
manages(NGINX_CONF)
watches("nginx.service")
looks_for(DEFAULT_SITE_LINK, DEFAULT_SITE_FILE, OLD_PROXY_FILE)


@deploy("Configure nginx as a retrying reverse proxy")
def configure_proxy() -> None:
    settings = for_host(host)
    _remove(files.link, DEFAULT_SITE_LINK, f"Remove the default site {DEFAULT_SITE_LINK}")
    _remove(files.file, DEFAULT_SITE_FILE, f"Remove the default site {DEFAULT_SITE_FILE}")
    wanted = rendered_files(settings, inventory_backend_addresses(host))
    config = install_validated(
        name="Install the nginx configuration (checked with nginx -t first)",
        files=wanted,
        check="nginx -t -q -c {stage}/nginx.conf",
        tree="/etc/nginx",
        label="nginx",
    )
    service_state(
        name="Keep nginx running and enabled at boot", unit="nginx", running=True, enabled=True
    )
    activate(
        name="Reload nginx until it runs the deployed configuration, then check /healthz",
        label="nginx",
        files=wanted,
        commands=["systemctl reload-or-restart nginx", health_check_command(settings)],
        subject="nginx",
        installed=config,
        live_drift=ask(_nginx_loaded).drift(NGINX_CONF),
    )
    _remove(files.file, OLD_PROXY_FILE, f"Remove {OLD_PROXY_FILE} (now part of nginx.conf)")


def _remove(operation: Callable[..., object], path: str, name: str) -> None:
    """Remove PATH with OPERATION (files.file or files.link) when it is there: a drift line.

    The facts were read before this run installed anything: when nginx was not installed yet,
    its package is about to create the default site, so the removal is planned anyway (pyinfra's
    operation looks at the path itself when it runs)."""
    if exists(path):
        drift.state_differs(path, "present, should not be", name)
    elif "nginx" in installed_packages():
        return
    operation(name=name, path=path, present=False)


@asks
def _nginx_loaded() -> tuple[type[NginxLoaded], dict]:
    return NginxLoaded, {}


@dataclass(frozen=True)
class LoadTimes:
    """When nginx last loaded its configuration, and when the file last changed (epoch s)."""

    loaded: float | None  # start of the newest worker: workers are replaced on each (re)load
    changed: float | None  # ctime of nginx.conf: `cp -p` or `touch` cannot set it back

    def drift(self, path: str) -> str | None:
        """The drift line when nginx runs a configuration older than PATH, else None."""
        if self.loaded is None or self.changed is None:
            return None  # not running (the service operation starts it) or no file yet
        # 20 ms of slack for the clocks' resolution (10 ms ticks); a deploy reloads ~100s later.
        if self.loaded + 0.02 >= self.changed:
            return None
        stamp = lambda t: time.strftime("%H:%M:%S", time.gmtime(t))  # noqa: E731
        return (
            f"running configuration older than {path} (workers started {stamp(self.loaded)} UTC,"
            f" file changed {stamp(self.changed)} UTC: reload pending)"
        )


class NginxLoaded(FactBase):
    """LoadTimes from the kernel: the newest nginx worker's start (ticks since boot, placed on
    the wall clock with /proc/uptime) and nginx.conf's ctime. One command."""

    def command(self) -> str:
        return (
            'echo "$(date +%s.%N) $(cut -d" " -f1 /proc/uptime) $(getconf CLK_TCK)'
            f' $(stat -c %.9Z {NGINX_CONF} 2>/dev/null || echo -)";'
            " pid=$(cat /run/nginx.pid 2>/dev/null);"
            ' [ -n "$pid" ] && for w in $(pgrep -P "$pid"); do cut -d" " -f22 /proc/$w/stat; done;'
            " true"
        )

    def process(self, output: list[str]) -> LoadTimes:
        now, uptime, ticks_per_second, ctime = output[0].split()
        booted = float(now) - float(uptime)
        workers = [int(line) for line in output[1:] if line.strip().isdigit()]
        loaded = booted + max(workers) / int(ticks_per_second) if workers else None
        return LoadTimes(loaded, None if ctime == "-" else float(ctime))


def rendered_files(settings: Settings, backend_addresses: list[str]) -> dict[str, str]:
    """The managed nginx files and their full content for this host."""
    data = template_data(settings, backend_addresses)
    return {NGINX_CONF: render("nginx/nginx.conf.j2", **data, proxy_conf=proxy_conf(data))}


def template_data(settings: Settings, backend_addresses: list[str]) -> dict[str, Any]:
    """What templates/nginx/proxy.conf.j2 gets: the settings and the upstream shaped from them."""
    return {"s": settings, "upstream": upstream(settings, backend_addresses)}


def proxy_conf(data: dict) -> str:
    """The proxy part of nginx.conf (templates/nginx/proxy.conf.j2), inlined in http {}."""
    return render("nginx/proxy.conf.j2", **data).rstrip("\n")


def health_check_command(settings: Settings) -> str:
    """curl /healthz on the host itself, retrying while the reloaded workers come up: for a
    moment after `systemctl reload` the old workers still answer with the old configuration."""
    return (
        "curl -fsS -o /dev/null --max-time 2 --retry 10 --retry-delay 1 --retry-all-errors "
        f"http://127.0.0.1:{settings.listen_port}/healthz"
    )
