"""nginx as the retrying reverse proxy: its configuration, activated safely, and the service.

Owns: /etc/nginx/nginx.conf and /etc/nginx/conf.d/proxy.conf (rendered from templates/nginx/),
the removal of the distribution's default site, the nginx service (running, enabled at boot,
reloaded when its configuration changed) and the post-reload health check.
Reads: every proxy and nginx-hardening setting (see tasks/settings.py).
Leaves alone: the nginx package (tasks/nginx_install.py) and the host firewall.

A configuration that fails `nginx -t` never goes live (tasks/activation.py); nginx is reloaded,
never restarted, and only when its configuration changed; after the reload `/healthz` must
answer 200 or the host fails.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from tasks.activation import install_validated, render
from tasks.settings import (
    Settings,
    backends,
    for_host,
    inventory_backend_addresses,
    nginx_template_vars,
)

# The distribution's package enables a demo site on port 80 (a symlink), nginx.org's ships one
# in conf.d. Our nginx.conf loads neither, but a later hand edit must not bring them back.
DEFAULT_SITE_LINK = "/etc/nginx/sites-enabled/default"
DEFAULT_SITE_FILE = "/etc/nginx/conf.d/default.conf"


@deploy("Configure nginx as a retrying reverse proxy")
def configure_proxy() -> None:
    settings = for_host(host)
    files.link(
        name=f"Remove the default site {DEFAULT_SITE_LINK}", path=DEFAULT_SITE_LINK, present=False
    )
    files.file(
        name=f"Remove the default site {DEFAULT_SITE_FILE}", path=DEFAULT_SITE_FILE, present=False
    )
    config = install_validated(
        name="Install the nginx configuration (checked with nginx -t first)",
        files=rendered_files(settings, inventory_backend_addresses(host)),
        check="nginx -t -q -c {stage}/nginx.conf",
        tree="/etc/nginx",
        label="nginx",
    )
    service = systemd.service(
        name="Keep nginx running and enabled at boot",
        service="nginx",
        running=True,
        enabled=True,
    )
    systemd.service(
        name="Reload nginx (its configuration changed)",
        service="nginx",
        reloaded=True,
        _if=config.did_change,
    )
    server.shell(
        name="Check that /healthz answers 200 after the change",
        commands=[health_check_command(settings)],
        _if=any_changed(config, service),
    )


def rendered_files(settings: Settings, backend_addresses: list[str]) -> dict[str, str]:
    """The managed nginx files and their full content for this host."""
    data = nginx_template_vars(
        settings, backends(settings, backend_addresses), nginx_has_resolve(settings)
    )
    return {
        "/etc/nginx/nginx.conf": render("nginx/nginx.conf.j2", **data),
        "/etc/nginx/conf.d/proxy.conf": render("nginx/proxy.conf.j2", **data),
    }


def nginx_has_resolve(settings: Settings) -> bool:
    """Whether the installed nginx re-resolves hostname upstreams (`resolve`, 1.27.3+).

    Decided from the package source, not from the installed version: on a fresh host nginx is
    not installed yet when the deploy is prepared, and a fact that changes between the first and
    the second run would make the second run report a change. nginx.org's stable is 1.28+;
    every distribution nginx this deploy supports is older (Debian 12: 1.22, 13: 1.26).
    """
    return settings.nginx_source == "nginx.org"


def health_check_command(settings: Settings) -> str:
    """curl /healthz on the host itself, retrying while the reloaded workers come up: for a
    moment after `systemctl reload` the old workers still answer with the old configuration."""
    return (
        "curl -fsS -o /dev/null --max-time 2 --retry 10 --retry-delay 1 --retry-all-errors "
        f"http://127.0.0.1:{settings.listen_port}/healthz"
    )
