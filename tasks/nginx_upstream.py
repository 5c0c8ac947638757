"""The nginx `upstream` of the proxy: which backends, how many server lines, with which flags.

Owns: the backends (`upstream_servers`, else the inventory's backend instances on
`upstream_port`), their repetition to reach the number of tries, passive health checks
(`max_fails`/`fail_timeout`) and `resolve` for hostname backends. The result is an `Upstream`
(its servers and its flags) that templates/nginx/proxy.conf.j2 iterates: the template decides
nothing about them. Pure: no pyinfra host here; tasks/nginx_proxy.py passes the host's values.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from tasks.checks import HOSTNAME_RE, is_hostname
from tasks.settings import Settings, SettingsError

# Passive health checks (several backends only): after PASSIVE_MAX_FAILS failed attempts within
# PASSIVE_FAIL_TIMEOUT a server line is skipped for PASSIVE_FAIL_TIMEOUT. nginx always counts error,
# timeout and invalid_header as failures, and these statuses too when retry_on lists them. With a
# backend that fails by design that trips all the time: measured with nginx 1.22, two backends
# failing 20% with 500/502, max_fails=3 fail_timeout=10s: 0.26% success ("no live upstreams"),
# max_fails=20 fail_timeout=1s: 15%. So the checks are used only when retry_on has none of these.
PASSIVE_MAX_FAILS = 3
PASSIVE_FAIL_TIMEOUT = "10s"
STATUSES_COUNTED_AS_FAILURES = frozenset(
    {"http_500", "http_502", "http_503", "http_504", "http_429"}
)


@dataclass(frozen=True)
class UpstreamServer:
    """One `server` line: "host:port", re-resolved while nginx runs or not, its health limits."""

    address: str
    resolve: bool
    max_fails: int  # 0: never marked down
    fail_timeout: str | None  # None: nginx's default (unused with max_fails=0)


@dataclass(frozen=True)
class Upstream:
    """The upstream block: every server line in order, and what the template explains."""

    servers: tuple[UpstreamServer, ...]
    one_backend: bool  # a lone backend, listed `tries` times
    resolve: bool  # some line has `resolve`: the block needs `resolver`
    passive_health: bool  # lines carry max_fails/fail_timeout
    resolvers: tuple[str, ...]  # dns_resolvers as nginx writes them (IPv6 in brackets)


def nginx_has_resolve(settings: Settings) -> bool:
    """Whether the installed nginx re-resolves hostname upstreams (`resolve`, 1.27.3+).

    Decided from the package source, not from the installed version: on a fresh host nginx is
    not installed yet when the deploy is prepared, and a fact that changes between the first and
    the second run would make the second run report a change. nginx.org's stable is 1.28+;
    every distribution nginx this deploy supports is older (Debian 12: 1.22, 13: 1.26).
    """
    return settings.nginx_source == "nginx.org"


def upstream(settings: Settings, backend_addresses: Sequence[str]) -> Upstream:
    """The upstream for SETTINGS, with BACKEND_ADDRESSES (the inventory's backend instances)
    used when `upstream_servers` is empty.

    nginx tries each server line at most once per request, and never retries a lone server
    (measured: 79.9% success at p=0.2 with retries configured). So there must be at least `tries`
    lines: one backend is listed `tries` times; several are listed ceil(tries/n) times each,
    interleaved so that a retry goes to another backend (measured, two backends at p=0.2: each
    listed once 95.5%, each listed 3 times 99.99%).
    max_fails=0 unless passive health checks are safe (see PASSIVE_MAX_FAILS): a 5xx must not mark
    servers down ("no live upstreams"; one backend listed 3 times with default max_fails: 0.1%).
    A lone backend never gets them: there is nothing else to send its requests to.
    Hostnames get `resolve` (re-resolved while running) only when nginx has it (1.27.3+).
    """
    found = backends(settings, backend_addresses)
    passive = len(found) > 1 and not STATUSES_COUNTED_AS_FAILURES.intersection(settings.retry_on)
    resolving = nginx_has_resolve(settings)
    repeats = -(-settings.tries // len(found))  # ceil(tries / n)
    servers = tuple(
        UpstreamServer(
            address=backend,
            resolve=resolving and is_hostname(backend),
            max_fails=PASSIVE_MAX_FAILS if passive else 0,
            fail_timeout=PASSIVE_FAIL_TIMEOUT if passive else None,
        )
        for _ in range(repeats)
        for backend in found
    )
    return Upstream(
        servers=servers,
        one_backend=len(found) == 1,
        resolve=any(server.resolve for server in servers),
        passive_health=passive,
        resolvers=tuple(f"[{r}]" if ":" in r else r for r in settings.dns_resolvers),
    )


def backends(settings: Settings, group_addresses: Sequence[str]) -> tuple[str, ...]:
    """The backends as "host:port": `upstream_servers`, or the given addresses of the hosts of
    backend instances on `upstream_port` (duplicates dropped, order kept)."""
    if settings.upstream_servers:
        return settings.upstream_servers
    found: list[str] = []
    for address in group_addresses:
        backend = f"{_bare_host(address)}:{settings.upstream_port}"
        if backend not in found:
            found.append(backend)
    if not found:
        raise SettingsError(
            [
                "upstream_servers = []: must list backends when the inventory found no backend "
                "instances (EC2 instances tagged Role=app: see EC2_INVENTORY_BACKEND_TAGS)"
            ]
        )
    return tuple(found)


def _bare_host(address: str) -> str:
    """An inventory host's address as the host part of "host:port" (IPv6 in brackets)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if HOSTNAME_RE.fullmatch(address):
            return address.lower()
        raise SettingsError(
            [
                f"backend address {address!r} from the inventory: must be an IP "
                "address or a hostname, without a port (the port is upstream_port)"
            ]
        ) from None
    return f"[{ip}]" if ip.version == 6 else str(ip)
