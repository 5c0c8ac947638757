"""templates/nginx/*.j2: rendered by the deploy's own path, checked by content, gixy and nginx -t.

`nginx -t` runs only where an nginx binary is on PATH (the lab hosts run the real one after every
change); gixy (gixy-ng, in the venv) always runs, on the whole rendered tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import UndefinedError

from tasks import nginx_proxy
from tasks import settings as st
from tasks.activation import render
from tasks.nginx_install import NGINX_ORG_KEYRING
from tasks.nginx_proxy import NGINX_CONF
from tasks.nginx_upstream import upstream

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "nginx"
REQUIRED: dict[str, Any] = {"admin_cidrs": ["10.77.0.1/32"], "allowed_http_cidrs": ["0.0.0.0/0"]}
MIME_TYPES = "types {\n    text/html html;\n    text/plain txt;\n}\n"
RETRY_ON = "error timeout http_500 http_502 http_503 http_504"

# name: (settings on top of REQUIRED, the inventory's ec2_backend_addresses)
VARIANTS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "default": ({}, ["10.77.0.10"]),
    "named_behind_balancer": (
        {
            "server_names": ["proxy.example.com", "*.example.org"],
            "trusted_proxy_cidrs": ["10.0.0.0/16"],
        },
        ["10.77.0.10"],
    ),
    "retry_post_limits_off": (
        {
            "retry_non_idempotent_locations": ["/appointments", "/pets"],
            "rate_limit_rps": 0,
            "conn_limit_per_client": 0,
            "upstream_keepalive": 0,
            "security_headers": False,
            "nginx_source": "nginx.org",
        },
        ["10.77.0.10"],
    ),
    "several_backends": ({"rate_limit_burst": 0}, ["127.0.0.1", "::1"]),
    "several_backends_passive": ({"retry_on": ["error", "timeout"]}, ["127.0.0.1", "::1"]),
    "hostname_backend": ({"upstream_servers": ["localhost:8080"]}, []),
    "hostname_backend_resolve": (
        {"upstream_servers": ["localhost:8080"], "nginx_source": "nginx.org"},
        [],
    ),
    "behind_lb_subnets": (
        {"lb_subnet_cidrs": ["10.0.1.0/24", "10.0.2.0/24"], "ec2_instance_id": "i-0abc"},
        ["10.77.0.10"],
    ),
    "dual_stack_named": (
        {"allowed_http_cidrs": ["0.0.0.0/0", "::/0"], "server_names": ["proxy.example.com"]},
        ["10.77.0.10"],
    ),
    "dual_stack": ({"allowed_http_cidrs": ["10.0.0.0/8", "fd00:77::/64"]}, ["10.77.0.10"]),
}


def proxy_part(s: st.Settings, backend_addresses: list[str]) -> str:
    """The proxy part of nginx.conf for S, as the deploy renders it."""
    return nginx_proxy.proxy_conf(nginx_proxy.template_data(s, backend_addresses))


def rendered(variant: str) -> tuple[str, str]:
    """(nginx.conf as installed, its proxy part alone) of a variant: the deploy's own rendering."""
    data, backend_list = VARIANTS[variant]
    s = st.from_data({**REQUIRED, **data})
    return nginx_proxy.rendered_files(s, backend_list)[NGINX_CONF], proxy_part(s, backend_list)


def render_tree(root: Path, variant: str) -> Path:
    """The files as they lie in /etc/nginx, under ROOT; returns ROOT/nginx.conf."""
    main, _ = rendered(variant)
    root.mkdir(parents=True, exist_ok=True)
    (root / "mime.types").write_text(MIME_TYPES)
    (root / "nginx.conf").write_text(main)
    return root / "nginx.conf"


def code(text: str) -> str:
    """TEXT without its comments (no value in these files contains a #)."""
    return re.sub(r"#.*", "", text)


def block(text: str, opening: str) -> str:
    """The body of the block opened by the line `opening {` (blocks here nest one level deep)."""
    match = re.search(rf"^\s*{re.escape(opening)} {{\n(.*?)^\s*}}", text, re.M | re.S)
    assert match, f"no block {opening!r}"
    return match.group(1)


# --- every template ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["nginx.conf.j2", "proxy.conf.j2", "nginx-org.list.j2", "nginx-org.pref.j2"]
)
def test_template_starts_with_managed_header(name: str) -> None:
    head = (TEMPLATES / name).read_text().splitlines()[:4]
    assert head[0].startswith("# /etc/")
    assert "Managed by this deploy (tasks/" in head[1]
    assert any("Do not edit by hand" in line for line in head)


def test_missing_variable_fails_render() -> None:
    with pytest.raises(UndefinedError):
        render("nginx/proxy.conf.j2", s=st.from_data(REQUIRED))


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_python_or_template_leaks(variant: str) -> None:
    for text in rendered(variant):
        assert not re.search(r"\bNone\b|\bTrue\b|\bFalse\b|\(\'|\{\{|\{%", text)


# --- nginx.conf -------------------------------------------------------------------------------


def test_main_config_hardening_and_includes() -> None:
    main, _ = rendered("default")
    for line in [
        "user www-data;",
        "server_tokens off;",
        "client_max_body_size 10m;",
        "client_body_timeout 10s;",
        "client_header_timeout 10s;",
        "pid /run/nginx.pid;",
        "include mime.types;",
        "access_log /var/log/nginx/proxy_access.log proxy_json;",
    ]:
        assert f"    {line}" in main or f"\n{line}" in main, line
    assert "sites-enabled" not in code(main) and "conf.d" not in code(main)
    assert "upstream backend {" in main  # the proxy part is inlined: one file, one rename
    assert not re.search(r"^\s*(daemon|master_process)\b", main, re.M)


def test_main_config_user_for_nginx_org() -> None:
    main, _ = rendered("retry_post_limits_off")
    assert "\nuser nginx;" in main


def test_access_log_format_is_json_with_report_fields() -> None:
    main, _ = rendered("default")
    body = re.search(r"log_format proxy_json escape=json\n(.*?);\n", main, re.S)
    assert body, "no JSON log_format"
    template = "".join(re.findall(r"'([^']*)'", body.group(1)))
    # Numbers are unquoted in the format; strings become any text.
    sample = re.sub(r'"\$\w+"', '"x"', template)
    sample = re.sub(r"\$\w+", "1", sample)
    fields = json.loads(sample)
    assert set(fields) >= {
        "request_id",
        "time",
        "remote_addr",
        "method",
        "uri",
        "path",
        "status",
        "request_time",
        "upstream_status",
        "upstream_addr",
        "upstream_response_time",
        "upstream_connect_time",
        "bytes_sent",
        "user_agent",
        "host",
        "blocked",
    }
    assert '"blocked":$proxy_blocked' in template
    assert '"upstream_status":"$upstream_status"' in template


# --- proxy.conf -------------------------------------------------------------------------------


def test_default_retries_one_backend_five_times() -> None:
    _, proxy = rendered("default")
    upstream = block(proxy, "upstream backend")
    assert upstream.count("    server 10.77.0.10:8080 max_fails=0;\n") == 5
    assert "keepalive 32;" in upstream
    assert "keepalive_timeout 20s;" in upstream
    assert f"    proxy_next_upstream {RETRY_ON};\n" in proxy
    assert "    proxy_next_upstream_tries 5;\n" in proxy
    assert "    proxy_next_upstream_timeout 15s;\n" in proxy
    assert "    proxy_http_version 1.1;\n" in proxy
    assert '    proxy_set_header Connection "";\n' in proxy
    assert "non_idempotent" not in code(proxy)
    assert "resolve" not in code(upstream)


def test_healthz_answered_by_nginx_and_readyz_by_backend() -> None:
    _, proxy = rendered("default")
    healthz = block(proxy, "location = /healthz")
    assert 'return 200 "ok\\n";' in healthz
    assert "access_log off;" in healthz
    assert "proxy_pass" not in code(healthz)
    readyz = block(proxy, "location = /readyz")
    assert "proxy_pass http://backend/health;" in readyz


def test_readyz_has_its_own_small_limit_and_is_logged() -> None:
    for variant in ("default", "retry_post_limits_off"):  # limits on, and every limit off
        _, proxy = rendered(variant)
        zone = "limit_req_zone $binary_remote_addr zone=proxy_readyz_per_client:1m rate=1r/s;"
        assert f"\n{zone}\n" in proxy, variant
        readyz = code(block(proxy, "location = /readyz"))
        assert re.findall(r"^\s*(limit_req .*)$", readyz, re.M) == [
            "limit_req zone=proxy_readyz_per_client burst=5 nodelay;"
        ]
        assert "access_log" not in readyz  # inherits the JSON access log


def test_status_page_local_only() -> None:
    _, proxy = rendered("default")
    status = block(proxy, "location = /nginx_status")
    assert "stub_status;" in status
    assert status.index("allow 127.0.0.1;") < status.index("deny all;")


def test_method_allowlist_answers_405() -> None:
    _, proxy = rendered("default")
    methods = block(proxy, "map $request_method $proxy_method_allowed")
    assert re.findall(r"^\s+(\w+) 1;", methods, re.M) == ["GET", "HEAD", "POST"]
    assert "default 0;" in methods
    assert "if ($proxy_method_allowed = 0) {\n        return 405;" in proxy


def test_blocked_paths_answer_404_and_mark_log() -> None:
    _, proxy = rendered("default")
    blocked = block(proxy, "map $uri $proxy_blocked")
    assert '    "~*^/\\.git" 1;' in blocked
    assert '    "~*^/wp-login\\.php" 1;' in blocked
    assert "if ($proxy_blocked) {\n        return 404;" in proxy


def test_non_idempotent_only_in_opted_in_locations() -> None:
    _, proxy = rendered("retry_post_limits_off")
    for prefix in ("/appointments", "/pets"):
        location = block(proxy, f"location {prefix}")
        assert f"proxy_next_upstream {RETRY_ON} non_idempotent;" in location
        assert "proxy_pass http://backend;" in location
    assert "non_idempotent" not in code(block(proxy, "location /"))
    assert f"    proxy_next_upstream {RETRY_ON};\n" in proxy


def test_non_idempotent_everywhere_when_root_opted_in() -> None:
    s = st.from_data({**REQUIRED, "retry_non_idempotent_locations": ["/"]})
    proxy = proxy_part(s, ["10.0.0.1"])
    assert f"proxy_next_upstream {RETRY_ON} non_idempotent;" in block(proxy, "location /")
    assert proxy.count("location / {") == 1


def test_any_host_served_by_default() -> None:
    _, proxy = rendered("default")
    assert proxy.count("server {") == 1
    assert "    listen 80 default_server;\n" in proxy


def test_server_names_get_catch_all_with_healthz_only() -> None:
    _, proxy = rendered("named_behind_balancer")
    assert proxy.count("server {") == 2
    catch_all, named = proxy.split("# --- the proxy")
    assert "listen 80 default_server;" in catch_all
    assert 'return 200 "ok\\n";' in catch_all
    assert "return 444;" in catch_all
    assert "proxy_pass" not in code(catch_all)
    assert "    listen 80;\n" in named
    assert "    server_name proxy.example.com *.example.org;\n" in named


def test_real_ip_only_from_trusted_proxies() -> None:
    _, proxy = rendered("named_behind_balancer")
    assert "set_real_ip_from 10.0.0.0/16;" in proxy
    assert "real_ip_header X-Forwarded-For;" in proxy
    assert "    10.0.0.0/16 1;" in block(proxy, "geo $realip_remote_addr $proxy_from_trusted")
    _, untrusting = rendered("default")
    assert "set_real_ip_from" not in code(untrusting)
    assert "proxy_set_header X-Forwarded-For $proxy_x_forwarded_for;" in untrusting


def test_lb_subnets_are_the_default_trusted_proxies() -> None:
    _, proxy = rendered("behind_lb_subnets")
    trusted = block(proxy, "geo $realip_remote_addr $proxy_from_trusted")
    assert re.findall(r"^\s+(\S+) 1;", trusted, re.M) == ["10.0.1.0/24", "10.0.2.0/24"]
    assert re.findall(r"^set_real_ip_from (\S+);", proxy, re.M) == ["10.0.1.0/24", "10.0.2.0/24"]
    assert "real_ip_recursive on;" in proxy


def test_explicit_trusted_proxies_win_over_lb_subnets() -> None:
    s = st.from_data(
        {**REQUIRED, "lb_subnet_cidrs": ["10.0.1.0/24"], "trusted_proxy_cidrs": ["10.9.0.0/16"]}
    )
    proxy = proxy_part(s, ["10.0.0.1"])
    assert re.findall(r"^set_real_ip_from (\S+);", proxy, re.M) == ["10.9.0.0/16"]


FORGEABLE_CLEARED = [
    "Forwarded",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "X-Forwarded-Server",
    "X-Forwarded-Scheme",
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-Original-Host",
    "X-Host",
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_forgeable_routing_headers_cleared_or_set_by_nginx(variant: str) -> None:
    _, proxy = rendered(variant)
    server = proxy.split("# --- the proxy")[1]
    for header in FORGEABLE_CLEARED:
        assert f'\n    proxy_set_header {header} "";\n' in server, header
    assert "\n    proxy_set_header X-Forwarded-Host $host;\n" in server
    # Set at server level only: a location with any proxy_set_header would drop all of them.
    assert not re.search(r"^\s{8,}proxy_set_header", proxy, re.M)
    assert "underscores_in_headers" not in code(proxy)  # off: X_Original_URL is dropped


def test_ipv6_listened_on_only_when_the_firewall_admits_it() -> None:
    _, v4 = rendered("default")
    assert "[::]" not in code(v4)
    _, dual = rendered("dual_stack")
    assert "    listen 80 default_server;\n    listen [::]:80 default_server ipv6only=on;\n" in dual
    _, named = rendered("dual_stack_named")
    catch_all, served = named.split("# --- the proxy")
    assert "listen [::]:80 default_server ipv6only=on;" in catch_all
    assert "    listen [::]:80;\n" in served  # socket options once per address: nginx -t


def test_put_and_delete_get_the_same_retry_rules_as_get() -> None:
    # nginx counts only POST, PATCH and LOCK as non-idempotent: with PUT/DELETE allowed, the
    # retry rules are the same (no `non_idempotent`), so they are retried after reaching a
    # backend. The template says so; tests/test_trust_lab.py measures it on the lab.
    s = st.from_data({**REQUIRED, "allowed_methods": ["GET", "PUT", "DELETE"]})
    proxy = proxy_part(s, ["10.0.0.1"])
    assert "non_idempotent" not in code(proxy)
    assert f"    proxy_next_upstream {RETRY_ON};\n" in proxy
    assert "PUT and DELETE, when allowed_methods has them, ARE retried" in proxy


def test_limits_keyed_on_client_address() -> None:
    _, proxy = rendered("default")
    assert "limit_req_zone $binary_remote_addr zone=proxy_req_per_client:10m rate=100r/s;" in proxy
    assert "limit_req zone=proxy_req_per_client burst=200 nodelay;" in proxy
    assert "limit_conn proxy_conn_per_client 100;" in proxy
    assert "limit_req_status 429;" in proxy


def test_limits_off_when_zero() -> None:
    _, proxy = rendered("retry_post_limits_off")
    outside_readyz = proxy.replace(block(proxy, "location = /readyz"), "")
    assert not re.search(r"^\s*limit_(req|conn) ", outside_readyz, re.M)
    assert "proxy_req_per_client" not in code(proxy)
    assert "limit_conn_zone" not in code(proxy)


def test_burst_zero_omitted() -> None:
    _, proxy = rendered("several_backends")
    assert "    limit_req zone=proxy_req_per_client;\n" in proxy


def test_security_headers_always_and_optional() -> None:
    _, proxy = rendered("default")
    assert 'add_header X-Content-Type-Options "nosniff" always;' in proxy
    assert 'add_header X-Frame-Options "DENY" always;' in proxy
    _, without = rendered("retry_post_limits_off")
    assert "X-Frame-Options" not in code(without)
    assert "add_header X-Request-ID $proxy_request_id always;" in without


def test_add_header_only_at_http_level() -> None:
    # A server or location with its own add_header silently drops the inherited ones.
    for variant in VARIANTS:
        _, proxy = rendered(variant)
        assert not re.search(r"^\s+add_header", proxy, re.M), variant


def test_keepalive_off_when_zero() -> None:
    _, proxy = rendered("retry_post_limits_off")
    assert "keepalive" not in code(block(proxy, "upstream backend"))


def test_several_backends_interleaved_without_max_fails() -> None:
    _, proxy = rendered("several_backends")
    upstream = block(proxy, "upstream backend")
    assert (
        re.findall(r"^\s+(server .*)$", upstream, re.M)
        == [
            "server 127.0.0.1:8080 max_fails=0;",
            "server [::1]:8080 max_fails=0;",
        ]
        * 3
    )
    assert "    proxy_next_upstream_tries 5;\n" in proxy


def test_several_backends_passive_checks_when_no_status_retried() -> None:
    _, proxy = rendered("several_backends_passive")
    upstream = block(proxy, "upstream backend")
    assert upstream.count("server 127.0.0.1:8080 max_fails=3 fail_timeout=10s;") == 3
    assert "    proxy_next_upstream error timeout;\n" in proxy


def test_resolve_and_resolver_only_when_nginx_has_them() -> None:
    _, proxy = rendered("hostname_backend_resolve")
    upstream = block(proxy, "upstream backend")
    assert "    resolver 169.254.169.253;\n" in upstream
    assert "server localhost:8080 resolve max_fails=0;" in upstream
    _, older = rendered("hostname_backend")
    assert not re.search(r"\bresolver?\b", code(block(older, "upstream backend")))


# --- nginx.org apt files ----------------------------------------------------------------------


def test_nginx_org_source_signed_by_its_keyring() -> None:
    text = render(
        "nginx/nginx-org.list.j2", vendor="debian", codename="trixie", keyring=NGINX_ORG_KEYRING
    )
    deb = [line for line in text.splitlines() if line.startswith("deb ")]
    assert deb == [
        f"deb [signed-by={NGINX_ORG_KEYRING}] https://nginx.org/packages/debian trixie nginx"
    ]


def test_nginx_org_pinned_at_900() -> None:
    text = render("nginx/nginx-org.pref.j2")
    stanza = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert stanza == ["Package: *", "Pin: origin nginx.org", "Pin-Priority: 900"]


# --- unattended-upgrades (templates/apt/50unattended-upgrades.j2) ---------------------------------

SECURITY = "origin=Debian,codename=${distro_codename}-security,label=Debian-Security"
NGINX_ORG = "origin=nginx,codename=${distro_codename},site=nginx.org"


def unattended_origins(nginx_source: str) -> tuple[str, list[str]]:
    """(the rendered file, its Origins-Pattern entries) for NGINX_SOURCE."""
    s = st.from_data({**REQUIRED, "nginx_source": nginx_source})
    text = render("apt/50unattended-upgrades.j2", s=s)
    found = re.search(r"^Unattended-Upgrade::Origins-Pattern \{\n(.*?)^\};", text, re.M | re.S)
    assert found, "no Origins-Pattern block"
    return text, re.findall(r'^\s*"([^"]*)";', found.group(1), re.M)


def test_unattended_upgrades_take_nginx_org_when_nginx_comes_from_there() -> None:
    assert unattended_origins("nginx.org")[1] == [SECURITY, NGINX_ORG]


def test_unattended_upgrades_security_only_with_the_distributions_nginx() -> None:
    text, origins = unattended_origins("distribution")
    assert origins == [SECURITY]
    assert "nginx.org" not in re.sub(r"//.*", "", text)


def test_unattended_upgrades_with_nginx_org_parse_with_apt_config(tmp_path: Path) -> None:
    apt_config = shutil.which("apt-config")
    if apt_config is None:
        pytest.skip("no apt-config on this machine")
    path = tmp_path / "50unattended-upgrades"
    path.write_text(unattended_origins("nginx.org")[0])
    dumped = subprocess.run(
        [apt_config, "dump", "-c", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert f'Unattended-Upgrade::Origins-Pattern:: "{NGINX_ORG}";' in dumped


# --- external checkers ------------------------------------------------------------------------


def gixy_findings(config: Path) -> list[dict[str, Any]]:
    """gixy's JSON findings for CONFIG (includes followed, relative to its directory)."""
    done = subprocess.run(
        [sys.executable, "-m", "gixy", "-f", "json", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gixy_finds_nothing(variant: str, tmp_path: Path) -> None:
    findings = gixy_findings(render_tree(tmp_path, variant))
    assert findings == [], [(f.get("plugin"), f.get("summary")) for f in findings]


def test_gixy_reads_the_inlined_proxy_part(tmp_path: Path) -> None:
    # Guards the test above: a finding planted in the proxy part must be reported.
    config = render_tree(tmp_path, "default")
    planted = "        location / {\n            add_header X-Planted 1;"
    config.write_text(config.read_text().replace("        location / {", planted))
    assert any(f.get("plugin") == "add_header_redefinition" for f in gixy_findings(config))


def _nginx_version(binary: str) -> tuple[int, ...]:
    output = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False).stderr
    return tuple(int(n) for n in re.findall(r"nginx/(\d+)\.(\d+)\.(\d+)", output)[0])


def _testable(config: Path) -> None:
    """Point the rendered tree's absolute paths (logs, pid, temp files) into its own directory, and
    drop `user` (the workers' user may not exist here): nginx -t opens logs and makes temp dirs."""
    root = config.parent
    (root / "logs").mkdir()
    (root / "temp").mkdir()
    temp_paths = " ".join(
        f"{kind}_temp_path {root}/temp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    for path in (config,):
        text = path.read_text().replace("/var/log/nginx/", f"{root}/logs/")
        text = text.replace("/run/nginx.pid", f"{root}/nginx.pid")
        text = re.sub(r"^user .*;$", "", text, flags=re.M)
        path.write_text(text.replace("\nhttp {\n", f"\nhttp {{\n    {temp_paths}\n"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_nginx_accepts_config(variant: str, tmp_path: Path) -> None:
    binary = shutil.which("nginx")
    if binary is None:
        pytest.skip("no nginx binary on PATH (the lab hosts run nginx -t on every change)")
    data, backend_list = VARIANTS[variant]
    shaped = upstream(st.from_data({**REQUIRED, **data}), backend_list)
    if shaped.resolve and _nginx_version(binary) < (1, 27, 3):  # open-source `resolve`: 1.27.3+
        pytest.skip("`resolve` needs nginx 1.27.3+")
    config = render_tree(tmp_path, variant)
    _testable(config)
    # NGINX in the environment means "inherited listening sockets" to nginx.
    env = {key: value for key, value in os.environ.items() if key != "NGINX"}
    done = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
