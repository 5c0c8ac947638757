"""tasks/nginx_upstream.py: backends, their repetition to reach the tries, health limits, resolve.

The rendered `server` lines are checked in tests/test_templates.py; here the structured upstream
the template is handed.
"""

from __future__ import annotations

from typing import Any

import pytest

from tasks.nginx_upstream import Upstream, UpstreamServer, backends, nginx_has_resolve, upstream
from tasks.settings import SettingsError, from_data

REQUIRED: dict[str, Any] = {"admin_cidrs": ["10.77.0.1/32"], "allowed_http_cidrs": ["0.0.0.0/0"]}
RETRY_5XX = ("error", "timeout", "http_500", "http_502", "http_503", "http_504")


def shaped(
    servers: list[str], tries: int, retry_on: tuple[str, ...] = RETRY_5XX, **data: Any
) -> Upstream:
    """The upstream for upstream_servers SERVERS, proxy_tries TRIES and retry_on RETRY_ON."""
    settings = {"upstream_servers": servers, "proxy_tries": tries, "retry_on": list(retry_on)}
    return upstream(from_data({**REQUIRED, **settings, **data}), [])


def line(address: str, *, resolve: bool = False, passive: bool = False) -> UpstreamServer:
    if passive:
        return UpstreamServer(address, resolve, max_fails=3, fail_timeout="10s")
    return UpstreamServer(address, resolve, max_fails=0, fail_timeout=None)


def test_single_backend_listed_tries_times_without_max_fails() -> None:
    found = shaped(["10.77.0.10:8080"], 5)
    assert found.servers == (line("10.77.0.10:8080"),) * 5
    assert found.one_backend and not found.passive_health and not found.resolve


def test_single_backend_never_gets_passive_checks() -> None:
    found = shaped(["10.77.0.10:8080"], 2, ("error", "timeout"))
    assert found.servers == (line("10.77.0.10:8080"),) * 2
    assert not found.passive_health


def test_several_backends_interleaved_to_reach_tries() -> None:
    found = shaped(["10.0.0.1:80", "10.0.0.2:80"], 5)
    assert found.servers == (line("10.0.0.1:80"), line("10.0.0.2:80")) * 3
    assert not found.one_backend


def test_backends_beyond_tries_listed_once() -> None:
    backend_list = [f"10.0.0.{i}:80" for i in range(1, 8)]
    assert shaped(backend_list, 5).servers == tuple(line(b) for b in backend_list)


@pytest.mark.parametrize("status", ["http_500", "http_502", "http_503", "http_504", "http_429"])
def test_no_passive_checks_when_retried_statuses_count_as_failures(status: str) -> None:
    found = shaped(["10.0.0.1:80", "10.0.0.2:80"], 2, ("error", status))
    assert found.servers == (line("10.0.0.1:80"), line("10.0.0.2:80"))
    assert not found.passive_health


def test_several_backends_passive_checks_without_retried_statuses() -> None:
    retry_on = ("error", "timeout", "invalid_header", "http_404")
    found = shaped(
        ["10.0.0.1:80", "10.0.0.2:80"],
        2,
        retry_on,
        retry_on_client_errors_reason="the backend answers 404 until its cache is warm",
    )
    assert found.servers == (
        line("10.0.0.1:80", passive=True),
        line("10.0.0.2:80", passive=True),
    )
    assert found.passive_health


@pytest.mark.parametrize(("source", "has_resolve"), [("nginx.org", True), ("distribution", False)])
def test_hostname_backend_resolved_only_when_nginx_has_it(source: str, has_resolve: bool) -> None:
    found = shaped(["app.internal:8080"], 2, nginx_source=source)
    assert found.servers == (line("app.internal:8080", resolve=has_resolve),) * 2
    assert found.resolve is has_resolve
    assert nginx_has_resolve(from_data({**REQUIRED, "nginx_source": source})) is has_resolve


def test_ip_backends_never_get_resolve() -> None:
    found = shaped(["10.0.0.1:80", "[::1]:80"], 3, nginx_source="nginx.org")
    assert not any(server.resolve for server in found.servers)
    assert not found.resolve


def test_resolvers_written_as_nginx_reads_them() -> None:
    found = shaped(
        ["app.internal:8080"], 2, nginx_source="nginx.org", dns_resolvers=["10.0.0.2", "fd00::53"]
    )
    assert found.resolvers == ("10.0.0.2", "[fd00::53]")


def test_backends_from_group_addresses_on_upstream_port() -> None:
    s = from_data(REQUIRED)
    found = backends(s, ["10.77.0.10", "fd00::10", "10.77.0.10"])
    assert found == ("10.77.0.10:8080", "[fd00::10]:8080")
    assert upstream(s, ["10.77.0.10", "fd00::10"]).servers[:2] == (
        line("10.77.0.10:8080"),
        line("[fd00::10]:8080"),
    )


def test_backends_from_upstream_servers_first() -> None:
    s = from_data({**REQUIRED, "upstream_servers": ["10.0.0.9:9000"]})
    assert backends(s, ["10.77.0.10"]) == ("10.0.0.9:9000",)


@pytest.mark.parametrize("address", ["10.77.0.10:8080", "bad_host", "[::1]"])
def test_backends_refuse_bad_group_address(address: str) -> None:
    with pytest.raises(SettingsError, match="must be an IP address or a hostname, without a port"):
        backends(from_data(REQUIRED), [address])


def test_backends_refused_when_inventory_found_none() -> None:
    with pytest.raises(SettingsError, match="the inventory found no backend instances"):
        backends(from_data(REQUIRED), [])
