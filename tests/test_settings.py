"""tasks/settings.py: defaults, every rule, derived values, host data, the docs table."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api import Inventory

from tasks import settings as st
from tasks.settings import Settings, SettingsError, from_data

# firewall_enabled is on by default and these two have no safe default: every valid host sets them.
REQUIRED: dict[str, Any] = {"admin_cidrs": ["10.77.0.1/32"], "allowed_http_cidrs": ["0.0.0.0/0"]}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def refused(**data: Any) -> str:
    """The SettingsError message for REQUIRED plus `data`; fails the test if nothing is refused."""
    with pytest.raises(SettingsError) as caught:
        from_data({**REQUIRED, **data})
    return str(caught.value)


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_valid_with_required_networks() -> None:
    s = from_data(REQUIRED)
    assert s.listen_port == 80
    assert s.retry_on == ("error", "timeout", "http_500", "http_502", "http_503", "http_504")
    assert s.proxy_tries is None
    assert s.tries == 5
    assert s.admin_cidrs == ("10.77.0.1/32",)
    assert s.sysctl_overrides == {}


def test_defaults_each_pass_their_own_check() -> None:
    for spec in dataclasses.fields(Settings):
        default = st._defaults()[spec.name]
        assert spec.metadata["check"](default) == default, spec.name


def test_defaults_refused_without_networks_naming_both() -> None:
    with pytest.raises(SettingsError) as caught:
        from_data({})
    assert caught.value.errors == (
        "admin_cidrs = []: must list at least one CIDR network when firewall_enabled",
        "allowed_http_cidrs = []: must list at least one CIDR network when firewall_enabled",
    )


def test_networks_optional_when_firewall_disabled() -> None:
    assert from_data({"firewall_enabled": False}).admin_cidrs == ()


def test_settings_frozen_and_lists_become_tuples() -> None:
    s = from_data({**REQUIRED, "allowed_methods": ["GET", "POST"]})
    assert s.allowed_methods == ("GET", "POST")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.listen_port = 81  # type: ignore[misc]


def test_sysctl_overrides_read_only() -> None:
    s = from_data({**REQUIRED, "sysctl_overrides": {"net.ipv4.tcp_syncookies": 1}})
    with pytest.raises(TypeError):
        s.sysctl_overrides["net.ipv4.ip_forward"] = 1  # type: ignore[index]


# --- one rule per row: the message names the key, the bad value and what is allowed ------------

BAD_VALUES = [
    ("proxy_tries", 0, "must be None (computed) or an integer from 1 to 10"),
    ("proxy_tries", True, "must be None (computed) or an integer from 1 to 10"),
    ("listen_port", "80", "must be an integer from 1 to 65535"),
    ("listen_port", 70000, "must be an integer from 1 to 65535"),
    ("upstream_keepalive", -1, "must be an integer from 0 to 1024"),
    ("target_success_rate", 1.0, "must be a number greater than 0 and less than 1"),
    ("expected_backend_failure_rate", True, "must be a number at least 0 and less than 1"),
    ("expected_backend_failure_rate", "0.2", "must be a number at least 0 and less than 1"),
    ("security_headers", "yes", "must be True or False"),
    ("firewall_enabled", 1, "must be True or False"),
    ("nginx_source", "apt", 'must be one of "distribution", "nginx.org"'),
    ("admin_cidrs", ["10.0.0.1/8"], "must be a list of CIDR networks (no host bits set)"),
    ("admin_cidrs", "10.0.0.0/8", "must be a list of CIDR networks"),
    ("admin_cidrs", ["0.0.0.0/0"], "not /0 ('0.0.0.0/0' is not allowed)"),
    ("admin_cidrs", ["10.0.0.0/8", "::/0"], "not /0 ('::/0' is not allowed)"),
    ("allowed_http_cidrs", ["10.0.0.0/33"], "'10.0.0.0/33' is not allowed"),
    ("trusted_proxy_cidrs", ["0.0.0.0/0"], "not /0"),
    ("trusted_proxy_cidrs", "10.0.0.0/8", "must be None (`lb_subnet_cidrs`) or a list of CIDR"),
    ("lb_subnet_cidrs", ["fd00:77::/64"], "must be a list of IPv4 CIDR networks (not /0)"),
    ("behind_load_balancer", "yes", "None (yes for hosts of the EC2 inventory) or True or False"),
    ("retry_on_client_errors_reason", "why", "empty, or a reason of 10-200 characters"),
    ("upstream_servers", ["app.internal"], 'must be a list of "host:port"'),
    ("upstream_servers", ["app.internal:0"], "port 1-65535"),
    ("upstream_servers", ["::1:8080"], "[IPv6]"),
    ("upstream_servers", ["999.1.1.1:80"], "'999.1.1.1:80' is not allowed"),
    ("upstream_servers", ["bad_host:80"], "'bad_host:80' is not allowed"),
    ("upstream_servers", ["10.0.0.1:80", "10.0.0.1:80"], "'10.0.0.1:80' is listed twice"),
    ("dns_resolvers", ["dns.google"], "must be a list of IP addresses"),
    ("dns_resolvers", [3232235777], "3232235777 is not allowed"),
    ("proxy_read_timeout", "10", 'a duration: an integer and a unit (ms, s, m, h), e.g. "500ms"'),
    ("proxy_read_timeout", 10, "a duration"),
    ("proxy_read_timeout", "10 s", "a duration"),
    ("proxy_read_timeout", "1d", "a duration"),
    ("proxy_connect_timeout", "90s", "from 100ms to 75s"),
    ("proxy_next_upstream_timeout", "0s", "from 1s to 10m"),
    ("sshd_login_grace_time", "500ms", "an integer and a unit (s, m, h)"),
    (
        "client_max_body_size",
        "10g",
        'a size: an integer with an optional k or m suffix, e.g. "512k"',
    ),
    ("client_max_body_size", "0", "from 1k to 1024m"),
    ("client_max_body_size", "10mb", "a size"),
    (
        "allowed_methods",
        ["GET", "TRACE"],
        "methods from GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
    ),
    ("allowed_methods", ["get"], "'get' is not allowed"),
    ("allowed_methods", "GET", "must be a list of methods"),
    ("allowed_methods", [], "at least one (it is empty)"),
    ("retry_on", ["error", "non_idempotent"], "'non_idempotent' is not allowed"),
    ("retry_on", ["http_501"], "conditions from error, timeout, invalid_header, http_500"),
    ("retry_on", ["error", "error"], "'error' is listed twice"),
    ("blocked_paths", ["wp-admin"], "path prefixes (each starting with /)"),
    ("blocked_paths", ["/a b"], "'/a b' is not allowed"),
    ("blocked_paths", ["/a;b{"], "'/a;b{' is not allowed"),
    ("retry_non_idempotent_locations", ["appointments"], "path prefixes"),
    ("backend_health_path", "health", 'a path starting with "/"'),
    ("access_log", "proxy.log", "an absolute file path"),
    ("server_names", ["~^regex$"], 'hostnames (optionally starting with "*.")'),
    ("sshd_allow_users", ["root!"], "a list of login names"),
    ("sshd_ciphers", ["aes256-ctr", "AES 128"], "'AES 128' is not allowed"),
    ("sysctl_overrides", {"net.ipv4.ip_forward": True}, "value True of net.ipv4.ip_forward"),
    ("sysctl_overrides", {"bad key": 1}, "key 'bad key' is not allowed"),
    ("sysctl_overrides", {"net.core.somaxconn": "1\n2"}, "is not allowed"),
    ("sysctl_overrides", [("net.ipv4.ip_forward", 0)], "a dict of kernel parameter"),
]


@pytest.mark.parametrize(("key", "value", "allowed"), BAD_VALUES)
def test_bad_value_refused_naming_key_value_and_allowed(key: str, value: Any, allowed: str) -> None:
    message = refused(**{key: value})
    assert f"{key} = {value!r}: must be " in message
    assert allowed in message


@pytest.mark.parametrize("value", [True, False])
def test_removed_setting_is_refused_saying_why_and_what_to_do(value: bool) -> None:
    """https_enabled opened 443 while nginx never listened there (issue 13 item 7): it is gone."""
    assert refused(https_enabled=value) == (
        f"https_enabled = {value!r}: removed: TLS terminates at the load balancer, which speaks "
        "HTTP to the proxies inside the VPC (nginx never had a certificate or a listener on 443); "
        "delete the line"
    )


def test_example_message_from_the_brief() -> None:
    assert (
        refused(proxy_tries=0)
        == "proxy_tries = 0: must be None (computed) or an integer from 1 to 10"
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"proxy_tries": 6, "max_tries": 5}, "proxy_tries = 6: must be at most max_tries (5)"),
        (
            {"upstream_keepalive_timeout": "30s"},
            "upstream_keepalive_timeout = '30s': must be shorter than backend_idle_timeout (30s)",
        ),
        (
            {"upstream_keepalive_timeout": "2m", "backend_idle_timeout": "60s"},
            "upstream_keepalive_timeout = '2m': must be shorter than backend_idle_timeout (60s)",
        ),
        (
            {"ssh_user": "deploy"},
            "sshd_allow_users = ['admin']: must contain ssh_user ('deploy')",
        ),
        (
            {"admin_cidrs": []},
            "admin_cidrs = []: must list at least one CIDR network when firewall_enabled",
        ),
        (
            {"upstream_servers": ["app.internal:8080"], "dns_resolvers": []},
            "dns_resolvers = []: must list at least one IP address when upstream_servers names",
        ),
        (
            {"retry_non_idempotent_locations": ["/appointments"], "allowed_methods": ["GET"]},
            "retry_non_idempotent_locations = ['/appointments']: has no effect unless "
            "allowed_methods contains POST or PATCH",
        ),
        (
            {"sshd_ciphers": ["chacha20-poly1305@openssh.com"]},
            "sshd_ciphers = ['chacha20-poly1305@openssh.com']: must contain one that pyinfra's "
            "SSH client (paramiko) speaks",
        ),
        (
            {"sshd_kex_algorithms": ["sntrup761x25519-sha512@openssh.com"]},
            "sshd_kex_algorithms = ['sntrup761x25519-sha512@openssh.com']: must contain one",
        ),
        (
            {"retry_on": ["error", "http_404", "http_403"]},
            "retry_on = ['error', 'http_404', 'http_403']: http_404 and http_403 refused",
        ),
        (
            {"ec2_instance_id": "i-0abc"},
            "trusted_proxy_cidrs = None: no trusted proxies behind a load balancer with "
            "rate_limit_rps = 100 and conn_limit_per_client = 100",
        ),
        (
            {
                "ec2_instance_id": "i-0abc",
                "lb_subnet_cidrs": ["10.0.1.0/24"],
                "trusted_proxy_cidrs": [],
            },
            "trusted_proxy_cidrs = []: no trusted proxies behind a load balancer",
        ),
        (
            {"audit_log_prefix": "proxy-access-logs/audit"},
            "audit_log_prefix = 'proxy-access-logs/audit': must lie outside log_prefix "
            "('proxy-access-logs')",
        ),
        (
            {"audit_log_prefix": "logs", "log_prefix": "logs/access"},
            "audit_log_prefix = 'logs': must lie outside log_prefix ('logs/access')",
        ),
        (
            {"behind_load_balancer": True, "rate_limit_rps": 0},
            "trusted_proxy_cidrs = None: no trusted proxies behind a load balancer with "
            "conn_limit_per_client = 100: nginx would key the limits on the balancer's few",
        ),
    ],
)
def test_cross_field_rule_refused(data: dict[str, Any], expected: str) -> None:
    assert expected in refused(**data)


@pytest.mark.parametrize(
    "data",
    [
        {"proxy_tries": 5, "max_tries": 5},
        {"upstream_keepalive_timeout": "29s"},
        {"ssh_user": "admin"},
        {"ssh_user": "deploy", "sshd_allow_users": ["admin", "deploy"]},
        {"upstream_servers": ["10.0.0.5:8080"], "dns_resolvers": []},
        {"retry_non_idempotent_locations": ["/appointments"], "allowed_methods": ["PATCH"]},
        {"retry_on": ["http_404"], "retry_on_client_errors_reason": "answers 404 while warming"},
        {"audit_log_prefix": "proxy-access-logs-audit"},
        {"audit_log_prefix": ""},
        {"ec2_instance_id": "i-0abc", "lb_subnet_cidrs": ["10.0.1.0/24"]},
        {"ec2_instance_id": "i-0abc", "trusted_proxy_cidrs": ["10.0.0.0/16"]},
        {"ec2_instance_id": "i-0abc", "behind_load_balancer": False},
        {"ec2_instance_id": "i-0abc", "rate_limit_rps": 0, "conn_limit_per_client": 0},
    ],
)
def test_cross_field_rule_accepts_the_valid_side(data: dict[str, Any]) -> None:
    from_data({**REQUIRED, **data})


def test_cross_rule_skipped_when_its_input_is_invalid() -> None:
    message = refused(proxy_tries="3", max_tries=2)
    assert message == "proxy_tries = '3': must be None (computed) or an integer from 1 to 10"


def test_all_errors_reported_together_one_per_line() -> None:
    message = refused(proxy_tries=0, listen_port="80", nginx_source="apt", proxy_trys=3)
    lines = message.splitlines()
    assert len(lines) == 4
    assert [line.split(" = ")[0] for line in lines] == [
        "proxy_trys",
        "listen_port",
        "proxy_tries",
        "nginx_source",
    ]


def test_long_value_cut_short_in_message() -> None:
    message = refused(blocked_paths=["/ok"] * 40 + ["bad"])
    assert len(message.split(": must be")[0]) < 140


# --- unknown keys -----------------------------------------------------------------------------


def test_unknown_key_refused_with_suggestion() -> None:
    message = refused(proxy_trys=3)
    assert message.startswith("proxy_trys = 3: unknown setting")
    assert "did you mean proxy_tries?" in message


def test_unknown_key_refused_without_suggestion() -> None:
    assert "unknown setting: must be one of those in docs/settings.md" in refused(colour="red")


@pytest.mark.parametrize("key", ["ssh_user", "ssh_key", "ec2_instance_id", "ec2_tags", "_sudo"])
def test_foreign_keys_allowed(key: str) -> None:
    data = {**REQUIRED, "behind_load_balancer": False}  # ec2_instance_id implies one
    from_data({**data, key: {"anything": 1}} if key != "ssh_user" else {**data, key: "admin"})


# --- derived values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure_rate", "target", "cap", "tries"),
    [
        (0.2, 0.999, 10, 5),
        (0.5, 0.99, 10, 7),
        (0.1, 0.999, 10, 3),  # 1 - 0.1**3 is 0.99899999... in floating point
        (0.5, 0.999999, 10, 10),  # would need 20: capped
        (0.9, 0.999, 3, 3),
        (0.0, 0.999, 10, 1),
        (0.2, 0.5, 10, 1),
    ],
)
def test_tries_computed(failure_rate: float, target: float, cap: int, tries: int) -> None:
    assert st.tries_for(failure_rate, target, cap) == tries


def test_tries_from_settings_computed_capped_or_fixed() -> None:
    assert from_data(REQUIRED).tries == 5
    assert from_data({**REQUIRED, "max_tries": 3}).tries == 3
    assert from_data({**REQUIRED, "proxy_tries": 2}).tries == 2
    assert from_data({**REQUIRED, "expected_backend_failure_rate": 0}).tries == 1


def test_trusted_proxies_default_to_the_load_balancer_subnets() -> None:
    assert from_data(REQUIRED).trusted_proxies == ()
    behind = from_data({**REQUIRED, "lb_subnet_cidrs": ["10.0.2.0/24", "10.0.1.0/24"]})
    assert behind.trusted_proxy_cidrs is None
    assert behind.trusted_proxies == ("10.0.2.0/24", "10.0.1.0/24")
    explicit = from_data(
        {**REQUIRED, "lb_subnet_cidrs": ["10.0.1.0/24"], "trusted_proxy_cidrs": ["10.9.0.0/16"]}
    )
    assert explicit.trusted_proxies == ("10.9.0.0/16",)


def test_firewall_that_shuts_out_the_load_balancer_is_refused() -> None:
    message = refused(
        allowed_http_cidrs=["10.0.1.0/24", "192.0.2.0/24"],
        lb_subnet_cidrs=["10.0.1.0/25", "10.0.2.0/24", "10.0.3.0/24"],
    )
    assert "allowed_http_cidrs = ['10.0.1.0/24', '192.0.2.0/24']" in message
    assert "does not admit the load balancer's subnets 10.0.2.0/24, 10.0.3.0/24" in message
    assert "10.0.1.0/25," not in message  # inside 10.0.1.0/24: admitted
    # Covered by a wider network, or the firewall not managed: accepted.
    from_data({**REQUIRED, "lb_subnet_cidrs": ["10.0.2.0/24"]})  # 0.0.0.0/0
    from_data({"firewall_enabled": False, "lb_subnet_cidrs": ["10.0.2.0/24"]})


def test_nginx_listens_on_ipv6_only_when_the_firewall_admits_it() -> None:
    assert not from_data(REQUIRED).listen_ipv6
    assert not from_data({**REQUIRED, "admin_cidrs": ["2001:db8::/48"]}).listen_ipv6
    assert from_data({**REQUIRED, "allowed_http_cidrs": ["0.0.0.0/0", "::/0"]}).listen_ipv6


def test_nginx_user_follows_source() -> None:
    assert from_data(REQUIRED).nginx_user == "www-data"
    assert from_data({**REQUIRED, "nginx_source": "nginx.org"}).nginx_user == "nginx"


def test_blocked_path_patterns_escape_regex_characters() -> None:
    s = from_data({**REQUIRED, "blocked_paths": ["/wp-login.php", "/a+b*"]})
    assert s.blocked_path_patterns == ("~*^/wp-login\\.php", "~*^/a\\+b\\*")


def test_host_port_normalised() -> None:
    s = from_data({**REQUIRED, "upstream_servers": ["App.Internal:8080", "[::0001]:80"]})
    assert s.upstream_servers == ("app.internal:8080", "[::1]:80")


# --- pyinfra host data ------------------------------------------------------------------------


def test_for_host_reads_merged_host_data() -> None:
    inventory = Inventory(
        ([("proxy-1", {"listen_port": 8081, "ssh_user": "admin"})], {"upstream_port": 9000}),
        proxies=(["proxy-1"], {**REQUIRED, "listen_port": 9999}),
    )
    s = st.for_host(inventory.get_host("proxy-1"))
    assert (s.listen_port, s.upstream_port, s.admin_cidrs) == (8081, 9000, ("10.77.0.1/32",))


def test_for_host_error_names_the_host() -> None:
    inventory = Inventory(([("proxy-2", {"proxy_tries": 0})], REQUIRED))
    with pytest.raises(SettingsError) as caught:
        st.for_host(inventory.get_host("proxy-2"))
    assert str(caught.value).splitlines() == [
        "invalid settings for host proxy-2:",
        "proxy_tries = 0: must be None (computed) or an integer from 1 to 10",
    ]


def test_for_host_validates_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = Inventory(([("proxy-1", {}), ("proxy-2", {"listen_port": 8081})], REQUIRED))
    calls: list[int] = []
    real = st.from_data
    monkeypatch.setattr(st, "from_data", lambda data: calls.append(1) or real(data))
    one, two = inventory.get_host("proxy-1"), inventory.get_host("proxy-2")
    first = st.for_host(one)
    assert st.for_host(one) is first and st.for_host(two).listen_port == 8081
    assert st.for_host(two) is st.for_host(two)
    assert len(calls) == 2  # one validation per host, however many tasks ask


# --- generated docs ---------------------------------------------------------------------------


def test_docs_table_lists_every_setting_with_default() -> None:
    table = st.markdown()
    for spec in dataclasses.fields(Settings):
        assert f"| `{spec.name}` |" in table
    assert "| `proxy_tries` | `None` |" in table
    assert "| `listen_port` | `80` |" in table


def test_docs_settings_md_is_up_to_date() -> None:
    assert DOCS.read_text() == st.markdown(), (
        "docs/settings.md is stale: python -m tasks.settings --markdown > docs/settings.md"
    )


def test_main_prints_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert st.main(["--markdown"]) == 0
    assert capsys.readouterr().out == st.markdown()
