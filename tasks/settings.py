"""Every setting the deploy reads: declared, documented and validated in this one place.

Owns: the `Settings` object (one per host, frozen, built once per host and run), its defaults,
its validation (each value by its check, then the rules across settings), the values derived from
it (number of tries, nginx's user, trusted proxies...) and the generated settings table
(`python -m tasks.settings --markdown` > docs/settings.md).

Each setting is a field of `Settings` declared with `_setting(default, check, doc)`: the check
(tasks/checks.py) converts the value (lists become tuples) and says what is allowed; the doc says
what the setting does and why the default is what it is. Validation, error messages and the docs
table are all generated from those declarations, so they cannot drift apart. (The SSH algorithm
defaults are data in tasks/hardening_defaults.py, next to their reasons; they are declared here
like the rest.)

Leaves alone: reading facts from hosts, and what the tasks make of the settings (e.g. the nginx
upstream: tasks/nginx_upstream.py).
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

try:
    from pyinfra.api.exceptions import PyinfraError
except ImportError:  # tools/firewall_tfvars.py in the Terraform image: python3 without pyinfra
    PyinfraError = Exception  # type: ignore[misc,assignment]

from tasks.checks import (
    HOSTNAME_RE,
    Address,
    Bool,
    Check,
    Choice,
    Cidr,
    Duration,
    EnvMap,
    HostPort,
    Int,
    Invalid,
    ListOf,
    NoneOr,
    Pattern,
    Rate,
    Size,
    SysctlMap,
    TimeServer,
    is_hostname,
    parse_duration,
)
from tasks.hardening_defaults import (
    KERNEL_MODULES_NOT_ON_A_PROXY,
    LEGAL_BANNER,
    PARAMIKO_CIPHERS,
    PARAMIKO_KEX,
    PARAMIKO_MACS,
    SSHD_CIPHERS,
    SSHD_KEX_ALGORITHMS,
    SSHD_MACS,
)

if TYPE_CHECKING:
    from pyinfra.api.host import Host

# Keys owned by pyinfra (ssh_*, and `_`-prefixed global arguments) and by the EC2 inventory (ec2_*):
# they are not settings of this deploy, so they are neither checked nor reported as unknown.
FOREIGN_KEY_PREFIXES = ("ssh_", "ec2_", "_")

# proxy_next_upstream's vocabulary (nginx 1.22+), without `off` and `non_idempotent`: retrying
# POST/PATCH can repeat their side effects, so that is opted into per location instead
# (retry_non_idempotent_locations).
RETRY_ON_VALUES = (
    "error",
    "timeout",
    "invalid_header",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "http_403",
    "http_404",
    "http_429",
)
# Methods that may be let through to the backend. TRACE and CONNECT are never proxied.
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
NGINX_SOURCES = ("distribution", "nginx.org")

_EPSILON = 1e-9  # float slack: 1 - 0.1**3 is 0.99899999..., which must count as reaching 0.999


class SettingsError(PyinfraError):
    """Bad settings: one line per problem, naming the key, the bad value and what is allowed."""

    def __init__(self, errors: Sequence[str], host: str | None = None) -> None:
        self.errors = tuple(errors)
        self.host = host
        lines = [f"invalid settings for host {host}:", *self.errors] if host else list(self.errors)
        super().__init__("\n".join(lines))


# Path prefixes end up literally in nginx locations and regexes: no whitespace, quotes, `;`, `{`,
# `}`, `$`, `#` or `%` ($uri is already percent-decoded, so an encoded prefix would never match).
_PATH = Pattern(
    r"/[A-Za-z0-9._~!*+,=:@/-]*",
    'a path starting with "/" (letters, digits and ._~!*+,=:@/- only; no whitespace)',
)
_SERVER_NAME = Pattern(
    rf"(?:\*\.)?{HOSTNAME_RE.pattern}",
    'a hostname, optionally starting with "*.", e.g. "*.example.com"',
)
_USER = Pattern(r"[a-z_][a-z0-9_-]{0,31}", 'a login name, e.g. "admin"')
_SSH_ALGORITHM = Pattern(r"[a-z0-9][a-z0-9.@+-]*", 'an algorithm name, e.g. "aes256-ctr"')


def _setting(
    default: Any, check: Check, doc: str, *, factory: Callable[[], Any] | None = None
) -> Any:
    """Declare one setting: its default, its check (which also says what is allowed) and why."""
    metadata = {"check": check, "doc": doc}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# --- the settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """One host's validated settings. Build it with `from_data` or `for_host`, never directly."""

    # Proxy
    listen_port: int = _setting(80, Int(1, 65535), "TCP port nginx serves HTTP on.")
    upstream_servers: tuple[str, ...] = _setting(
        (),
        ListOf(HostPort()),
        "Backends. Empty: the backend instances the EC2 inventory found (tagged Role=app, "
        "`ec2_backend_addresses`), on `upstream_port`. "
        "nginx tries each server line once per request and never retries a lone server, so each "
        "backend is listed ceil(tries / number of backends) times, interleaved, with max_fails=0 "
        "(passive health checks only when `retry_on` has no 5xx/429: nginx would count every "
        "retried 5xx and mark flaky backends down).",
    )
    upstream_port: int = _setting(
        8080, Int(1, 65535), "Backend port used with the backend instances the inventory found."
    )
    retry_on: tuple[str, ...] = _setting(
        ("error", "timeout", "http_500", "http_502", "http_503", "http_504"),
        ListOf(
            Choice(RETRY_ON_VALUES),
            at_least_one=True,
            what="conditions from " + ", ".join(RETRY_ON_VALUES),
        ),
        "Failures after which nginx tries again (proxy_next_upstream). The default covers what "
        "another try can cure: connection errors, timeouts and 5xx. http_403/http_404 only with "
        "`retry_on_client_errors_reason`. `non_idempotent` is not accepted here: see "
        "`retry_non_idempotent_locations` (PUT and DELETE are retried like GET: nginx counts "
        "only POST, PATCH and LOCK as non-idempotent).",
    )
    retry_on_client_errors_reason: str = _setting(
        "",
        Pattern(r"(?:[^\s\"'\\][^\n\r\"'\\]{9,199})?", "empty, or a reason of 10-200 characters"),
        "Why `retry_on` may list http_403 or http_404 (e.g. a backend that answers 404 until its "
        "cache is warm). Empty: they are refused, since every 403/404 a scanner provokes would "
        "cost `tries` backend calls.",
    )
    proxy_tries: int | None = _setting(
        None,
        Int(1, 10, none="computed"),
        "Attempts per request, the first included. None: the smallest k with "
        "1 - p^k >= `target_success_rate` (p = `expected_backend_failure_rate`), at most "
        "`max_tries`. Must not exceed `max_tries`.",
    )
    target_success_rate: float = _setting(
        0.999,
        Rate(zero_ok=False),
        "Share of requests that should succeed although single attempts fail; sets the computed "
        "number of tries (0.999 at p=0.2: 5 tries).",
    )
    expected_backend_failure_rate: float = _setting(
        0.2,
        Rate(zero_ok=True),
        "Probability that one attempt fails (0.2: the lab backend answers 500/502 one time in "
        "five).",
    )
    max_tries: int = _setting(
        10,
        Int(1, 10),
        "Cap on tries: each try adds load to a backend that is already failing (retry storm) "
        "and can add a full connect + read timeout of latency.",
    )
    proxy_next_upstream_timeout: str = _setting(
        "15s",
        Duration(1, 600),
        "Time budget for all tries of one request. nginx checks it only between attempts: each "
        "attempt still gets the full connect/send/read timeouts.",
    )
    proxy_connect_timeout: str = _setting(
        "2s",
        Duration(0.1, 75),
        "Time to open a backend connection. Short: a dead backend should cost a try, not the "
        "request (nginx caps it at 75 s).",
    )
    proxy_send_timeout: str = _setting(
        "10s", Duration(1, 3600), "Longest pause while sending the request to the backend."
    )
    proxy_read_timeout: str = _setting(
        "10s",
        Duration(1, 3600),
        "Longest pause while reading the backend's response; a timeout counts as a failed try.",
    )
    retry_non_idempotent_locations: tuple[str, ...] = _setting(
        (),
        ListOf(_PATH, what="path prefixes (each starting with /)"),
        "Path prefixes whose POST/PATCH requests may be retried after they reached a backend "
        "(proxy_next_upstream non_idempotent). Only for endpoints that are safe to repeat: a retry "
        "can apply the request twice.",
    )
    upstream_keepalive: int = _setting(
        32,
        Int(0, 1024),
        "Idle backend connections each nginx worker keeps open (0: a new connection per attempt). "
        "Saves a TCP handshake per try.",
    )
    upstream_keepalive_timeout: str = _setting(
        "20s",
        Duration(1, 3600),
        "How long nginx keeps an idle backend connection. Must be shorter than "
        "`backend_idle_timeout`, or nginx reuses connections the backend is closing and "
        'non-idempotent requests fail with "upstream prematurely closed connection".',
    )
    backend_idle_timeout: str = _setting(
        "30s",
        Duration(1, 3600),
        "The backend's own idle keepalive timeout (a fact about the backend; not applied by this "
        "deploy). Used only to check `upstream_keepalive_timeout`.",
    )
    backend_health_path: str = _setting(
        "/health", _PATH, "Backend path that /readyz asks, through the retrying upstream."
    )
    access_log: str = _setting(
        "/var/log/nginx/proxy_access.log",
        Pattern(r"/[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*", "an absolute file path"),
        "JSON access log. Keep it in /var/log/nginx/, where the nginx package's logrotate "
        "rotates it.",
    )
    nginx_source: str = _setting(
        "distribution",
        Choice(NGINX_SOURCES),
        'Where nginx comes from: "distribution" (Debian: 1.22 on 12, 1.26 on 13) or "nginx.org" '
        "(stable repository, signing key fingerprints checked, pinned at priority 900). Hostname "
        "backends are re-resolved (`resolve`) only with nginx 1.27.3+, i.e. nginx.org.",
    )
    dns_resolvers: tuple[str, ...] = _setting(
        ("169.254.169.253",),
        ListOf(Address(), what="IP addresses"),
        "DNS servers nginx uses to re-resolve hostname backends (only with `resolve`, nginx "
        "1.27.3+). Default: the Amazon VPC resolver.",
    )

    # nginx hardening
    client_max_body_size: str = _setting(
        "10m",
        Size(1024, 1024 * 1024 * 1024),
        "Largest request body accepted (413 above). Bodies are buffered before proxying, which is "
        "also what lets nginx send them again on a retry.",
    )
    client_body_timeout: str = _setting(
        "10s",
        Duration(1, 300),
        "Longest pause while a client sends its body: slow clients (slowloris) cannot hold "
        "connections open.",
    )
    client_header_timeout: str = _setting(
        "10s", Duration(1, 300), "Time a client has to send its request headers (slowloris)."
    )
    rate_limit_rps: int = _setting(
        100,
        Int(0, 100000),
        "Requests per second per client address (limit_req; 429 above; 0 = off). Behind a load "
        "balancer the client address comes from trusted proxies (`lb_subnet_cidrs`, "
        "`trusted_proxy_cidrs`); without them the deploy refuses (`behind_load_balancer`).",
    )
    rate_limit_burst: int = _setting(
        200,
        Int(0, 100000),
        "Requests a client may send above the rate, served without delay, before getting 429.",
    )
    conn_limit_per_client: int = _setting(
        100,
        Int(0, 100000),
        "Concurrent connections per client address (limit_conn; 429 above; 0 = off).",
    )
    allowed_methods: tuple[str, ...] = _setting(
        ("GET", "HEAD", "POST"),
        ListOf(
            Choice(HTTP_METHODS), at_least_one=True, what="methods from " + ", ".join(HTTP_METHODS)
        ),
        "HTTP methods passed to the backend; any other gets 405 from nginx.",
    )
    blocked_paths: tuple[str, ...] = _setting(
        (
            "/.git",
            "/.svn",
            "/.hg",
            "/.env",
            "/.aws",
            "/.ssh",
            "/.htaccess",
            "/.htpasswd",
            "/.DS_Store",
            "/wp-admin",
            "/wp-login.php",
            "/wp-content",
            "/wp-includes",
            "/xmlrpc.php",
            "/phpmyadmin",
            "/vendor/phpunit",
            "/cgi-bin",
            "/server-status",
            "/actuator",
            "/boaform",
            "/HNAP1",
        ),
        ListOf(_PATH, what="path prefixes (each starting with /)"),
        "Path prefixes nginx answers with 404 without asking the backend (scanner targets), "
        'matched case-insensitively on the normalised path and logged with "blocked":1.',
    )
    security_headers: bool = _setting(
        True,
        Bool(),
        "Add X-Content-Type-Options, X-Frame-Options and Referrer-Policy to every response, errors "
        "included (replacing the backend's own).",
    )
    server_names: tuple[str, ...] = _setting(
        (),
        ListOf(_SERVER_NAME, what='hostnames (optionally starting with "*.")'),
        "Host names proxied. Empty: any Host. Otherwise a catch-all server answers only /healthz "
        "and closes everything else without a response (444).",
    )
    lb_subnet_cidrs: tuple[str, ...] = _setting(
        (),
        ListOf(Cidr(everything_ok=False, ipv4_only=True), what="IPv4 CIDR networks (not /0)"),
        "Networks the load balancer connects from: Terraform's output `lb_subnet_cidrs` "
        "(`tools/terraform.sh output -json lb_subnet_cidrs`), copied into the environment's "
        "group_data file. The default of `trusted_proxy_cidrs`.",
    )
    trusted_proxy_cidrs: tuple[str, ...] | None = _setting(
        None,
        NoneOr(
            ListOf(Cidr(everything_ok=False), what="CIDR networks (no host bits set, not /0)"),
            none="`lb_subnet_cidrs`",
        ),
        "Peers trusted to say who the client is. Only from these is the client address taken from "
        "X-Forwarded-For (real_ip), so per-client limits and logs see real clients; from anyone "
        "else that header is dropped, since clients can forge it. None: `lb_subnet_cidrs`.",
    )
    behind_load_balancer: bool | None = _setting(
        None,
        NoneOr(Bool(), none="yes for hosts of the EC2 inventory"),
        "Whether clients reach the proxies through a load balancer (terraform/ puts every proxy "
        "behind one). Then per-client limits need trusted proxies: without them every client "
        "shares the balancer's few addresses and one noisy client gets everyone 429s, so the "
        "deploy refuses. False: clients connect directly.",
    )

    # Host hardening
    admin_cidrs: tuple[str, ...] = _setting(
        (),
        ListOf(Cidr(everything_ok=False), what="CIDR networks (no host bits set), not /0"),
        "Networks allowed to reach SSH (IPv4 and IPv6). Required when `firewall_enabled`: "
        "there is no safe default; never 0.0.0.0/0 or ::/0, SSH open to everyone (Terraform's "
        "security group refuses it too).",
    )
    allowed_http_cidrs: tuple[str, ...] = _setting(
        (),
        ListOf(Cidr(), what="CIDR networks (no host bits set)"),
        "Networks allowed to reach `listen_port`; 0.0.0.0/0 for everyone (IPv4). An IPv6 network "
        "here makes nginx listen on IPv6 too, so nginx and the firewall agree. Required when "
        "`firewall_enabled`.",
    )
    firewall_enabled: bool = _setting(
        True, Bool(), "Install the nftables policy: drop everything not allowed above."
    )
    sshd_allow_users: tuple[str, ...] = _setting(
        ("admin",),
        ListOf(_USER, at_least_one=True, what="login names"),
        "The only users sshd lets in (AllowUsers). Must contain the deploy's `ssh_user`, or the "
        "next run locks itself out.",
    )
    sshd_login_grace_time: str = _setting(
        "30s",
        Duration(1, 600, units=("s", "m", "h")),
        "Time to authenticate before sshd drops the connection (LoginGraceTime): unauthenticated "
        "connections cannot pile up.",
    )
    sshd_max_auth_tries: int = _setting(
        3, Int(1, 10), "Authentication attempts per connection (MaxAuthTries): slows guessing."
    )
    sshd_ciphers: tuple[str, ...] = _setting(
        SSHD_CIPHERS,
        ListOf(_SSH_ALGORITHM, at_least_one=True, what="algorithm names"),
        "sshd Ciphers: AEAD and CTR only, all known to OpenSSH 9.2 (Debian 12) and 10 (Debian 13): "
        "sshd refuses to start on a name it does not know. Must keep one that paramiko "
        "(pyinfra's SSH client) speaks: aes*-ctr or aes*-gcm.",
    )
    sshd_kex_algorithms: tuple[str, ...] = _setting(
        SSHD_KEX_ALGORITHMS,
        ListOf(_SSH_ALGORITHM, at_least_one=True, what="algorithm names"),
        "sshd KexAlgorithms: post-quantum hybrid first, then curve25519; no NIST curves, no "
        "finite-field DH, no SHA-1 (reasons in tasks/hardening_defaults.py). Must keep one that "
        "paramiko speaks: curve25519-sha256@libssh.org.",
    )
    sshd_macs: tuple[str, ...] = _setting(
        SSHD_MACS,
        ListOf(_SSH_ALGORITHM, at_least_one=True, what="algorithm names"),
        "sshd MACs: encrypt-then-MAC only. Must keep one that paramiko speaks (hmac-sha2-*).",
    )
    sshd_client_alive_interval: int = _setting(
        300,
        Int(0, 3600),
        "Seconds between probes of an idle SSH client (ClientAliveInterval; 0 = off): dead "
        "sessions are closed.",
    )
    sysctl_overrides: Mapping[str, int | str] = _setting(
        None,
        SysctlMap(),
        "Kernel parameters merged over the hardening defaults. kernel.* cannot be changed inside "
        "containers: there they are only persisted.",
        factory=lambda: MappingProxyType({}),
    )
    unattended_upgrades_enabled: bool = _setting(
        True, Bool(), "Install security updates daily (unattended-upgrades)."
    )
    unattended_upgrades_reboot: bool = _setting(
        False,
        Bool(),
        "Reboot by itself when an update needs it. Off: proxies rebooting on their own, maybe "
        "together, drop traffic; reboot them in a controlled `--serial` run instead.",
    )
    first_security_upgrade: bool = _setting(
        True,
        Bool(),
        "On the first converge (no /var/lib/proxy-deploy/first-security-upgrade yet), apply the "
        "pending security updates once with unattended-upgrade, before nginx is configured to "
        "serve: a fresh host does not keep its image's vulnerable packages until the nightly run.",
    )
    service_sandbox_enabled: bool = _setting(
        True,
        Bool(),
        "systemd sandboxes (drop-ins) for nginx and the log shipper: read-only system, few "
        "capabilities and system calls (`systemd-analyze security`: nginx 9.6 -> 2.6, the "
        "shipper 8.9 -> 1.1). A change restarts nginx once, after `nginx -t` inside the sandbox.",
    )
    kernel_module_blacklist: tuple[str, ...] = _setting(
        KERNEL_MODULES_NOT_ON_A_PROXY,
        ListOf(
            Pattern(r"[a-z0-9][a-z0-9_-]{0,55}", "a kernel module name"),
            what='kernel module names (e.g. "dccp")',
        ),
        "Kernel modules made unloadable (`install X /bin/false`): rare network protocols and file "
        "systems (a history of kernel exploits, loadable by any user), USB storage, FireWire "
        "(reasons in tasks/hardening_defaults.py). Empty: off. Persisted only in a container.",
    )
    core_dumps_disabled: bool = _setting(
        True,
        Bool(),
        "No core dumps (limits.d hard limit 0, systemd-coredump Storage=none): a dump of nginx "
        "holds requests, cookies and keys in clear.",
    )
    login_defs_hardened: bool = _setting(
        True,
        Bool(),
        "/etc/login.defs: UMASK 027 and 640000 SHA-512 rounds; only those lines are replaced.",
    )
    legal_banner: str = _setting(
        LEGAL_BANNER,
        Pattern(
            r"(?:[ -\[\]-~]{1,200}(?:\n[ -\[\]-~]{1,200}){0,9})?",
            "empty (off), or up to 10 lines of printable ASCII (no backslash), 200 characters each",
        ),
        "Legal notice shown by sshd before login (Banner) and in /etc/issue, /etc/issue.net. "
        "Empty: none (sshd Banner none, the issue files left alone).",
    )
    needrestart_enabled: bool = _setting(
        True,
        Bool(),
        "Install needrestart in automatic mode: after unattended-upgrades patches a library, the "
        "services still using the old one are restarted (nginx, sshd), not left vulnerable until "
        "a reboot.",
    )
    auditd_enabled: bool = _setting(
        True,
        Bool(),
        "Install auditd with a small rule set: changes to sshd_config, sudoers, identity files, "
        "nginx and nftables configuration, unit files, and kernel module loading. Inside a "
        "container only persisted (the audit subsystem is the machine's).",
    )
    time_servers: tuple[str, ...] = _setting(
        ("169.254.169.123",),
        ListOf(TimeServer(), what="IP addresses or hostnames"),
        "NTP servers for systemd-timesyncd, tried in order (the logs and reports compare "
        "timestamps across proxies). Default: the Amazon Time Sync Service, link-local on every "
        "EC2 instance. Empty: time sync is left alone; a host running chrony or ntp keeps it.",
    )

    # Log shipping
    log_bucket: str = _setting(
        "",
        Pattern(r"(?:[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?", "an S3 bucket name, or empty (off)"),
        "S3 bucket that receives the rotated JSON access logs, hourly (the bucket from "
        "terraform/, output `access_logs_bucket`). Empty: logs stay on the host (logrotate keeps "
        "14 days).",
    )
    log_prefix: str = _setting(
        "proxy-access-logs",
        Pattern(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*", "an S3 key prefix without leading /"),
        "Key prefix in `log_bucket`; objects are PREFIX/INSTANCE-ID/YYYY/MM/DD/FILE.",
    )
    audit_log_prefix: str = _setting(
        "proxy-audit-logs",
        Pattern(
            r"(?:[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*)?",
            "an S3 key prefix without leading /, or empty (off)",
        ),
        "Key prefix in `log_bucket` of the audit log's rotated files (auditd_enabled), shipped "
        "with the access logs: PREFIX/INSTANCE-ID/YYYY/MM/DD/audit.log-... Its own prefix, as "
        "everything under `log_prefix` is read as JSON access logs. Empty: the audit log stays "
        "on the host (auditd keeps 5 files of 8 MB).",
    )
    log_shipping_env: Mapping[str, str] = _setting(
        None,
        EnvMap(),
        "Extra environment for the uploader. On EC2 leave it empty: it signs with the "
        "instance role's credentials, from IMDSv2. Only for S3-compatible endpoints or a test "
        "lab (AWS_ENDPOINT_URL and keys).",
        factory=lambda: MappingProxyType({}),
    )

    # --- derived values ---

    @property
    def tries(self) -> int:
        """Attempts per request: `proxy_tries`, or computed from the failure and target rates."""
        if self.proxy_tries is not None:
            return self.proxy_tries
        return tries_for(
            self.expected_backend_failure_rate, self.target_success_rate, self.max_tries
        )

    @property
    def blocked_path_patterns(self) -> tuple[str, ...]:
        """`blocked_paths` as nginx map regexes: anchored prefixes, case-insensitive."""
        return tuple("~*^" + _regex_literal(path) for path in self.blocked_paths)

    @property
    def nginx_user(self) -> str:
        """The user nginx's workers run as: each packaging creates its own."""
        return "www-data" if self.nginx_source == "distribution" else "nginx"

    @property
    def trusted_proxies(self) -> tuple[str, ...]:
        """The peers nginx takes the client address from: `trusted_proxy_cidrs`, or when that is
        None the load balancer's subnets (`lb_subnet_cidrs`)."""
        if self.trusted_proxy_cidrs is not None:
            return self.trusted_proxy_cidrs
        return self.lb_subnet_cidrs

    @property
    def listen_ipv6(self) -> bool:
        """nginx listens on IPv6 too: exactly when the firewall admits IPv6 HTTP clients
        (an IPv6 network in `allowed_http_cidrs`), so both layers agree."""
        return any(":" in cidr for cidr in self.allowed_http_cidrs)


_FIELDS: dict[str, Field[Any]] = {f.name: f for f in fields(Settings)}


# --- helpers of the derived values ------------------------------------------------------------


def _regex_literal(path: str) -> str:
    """`path` as a PCRE literal. `_PATH` lets through only three regex metacharacters: . * +"""
    return re.sub(r"([.*+])", r"\\\1", path)


def tries_for(failure_rate: float, target: float, cap: int) -> int:
    """Smallest k with 1 - failure_rate**k >= target, at most `cap` (1 when nothing fails)."""
    if failure_rate <= 0:
        return 1
    k = 1
    while k < cap and 1 - failure_rate**k < target - _EPSILON:
        k += 1
    return k


# --- building Settings --------------------------------------------------------------------------


def from_data(data: Mapping[str, Any]) -> Settings:
    """Validated Settings from host data (pure). Raises SettingsError listing every problem."""
    return Settings(**_checked(data, every_rule=True))


def group_data_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """The settings one group_data file sets (DATA: its top-level names), each converted by its
    check, as the deploy would; unknown keys refused. A rule across settings runs when the file
    sets all of its inputs: the others come from other groups' files and host data, which only
    the deploy sees whole (it checks everything again before touching a host). Raises
    SettingsError with the deploy's own messages."""
    return _checked(data, every_rule=False)


def _checked(data: Mapping[str, Any], *, every_rule: bool) -> dict[str, Any]:
    """The values DATA sets, converted; raises SettingsError listing every problem."""
    errors = [_unknown_key(key, data[key]) for key in sorted(data) if _is_unknown(key)]
    values: dict[str, Any] = {}
    invalid: set[str] = set()
    for name, spec in _FIELDS.items():
        if name not in data:
            continue
        check: Check = spec.metadata["check"]
        try:
            values[name] = check(data[name])
        except Invalid as problem:
            invalid.add(name)
            errors.append(_message(name, data[name], f"must be {check.allowed}", problem.detail))
    merged = {**_defaults(), **values}
    for inputs, rule in _CROSS_RULES:
        if not invalid.intersection(inputs) and (every_rule or set(inputs) <= values.keys()):
            errors.extend(rule(merged, data))
    if errors:
        raise SettingsError(errors)
    return values


# One Settings per host and run: every task asks for_host, validation runs once. Keyed by the
# host's data object (pyinfra's `host` is a context proxy that hashes like whichever host is
# current), weakly: a finished run's hosts take their settings with them.
_BUILT: WeakKeyDictionary[object, Settings] = WeakKeyDictionary()


def for_host(host: Host) -> Settings:
    """Validated Settings from everything pyinfra knows about `host` (HostData.dict(): override,
    host, group, `all` and @deploy data merged in pyinfra's precedence order). Validated on the
    first call for a host (tasks/preflight.py, before anything runs); later calls get the same
    object."""
    data = host.data
    if data not in _BUILT:
        try:
            _BUILT[data] = from_data(data.dict())
        except SettingsError as error:
            raise SettingsError(error.errors, host=host.name) from None
    return _BUILT[data]


def inventory_backend_addresses(host: Host) -> list[str]:
    """Private addresses of the backend instances, as the EC2 inventory gives them to each proxy
    (host data `ec2_backend_addresses`); empty when the inventory found none."""
    return list(host.data.get("ec2_backend_addresses") or [])


def instance_identity(host: Host) -> tuple[str, str | None]:
    """(instance id, region) as the EC2 inventory gives them; the host name and no region for
    hosts from another inventory (boto3 then uses its own default region)."""
    return host.data.get("ec2_instance_id") or host.name, host.data.get("ec2_region")


def ssh_port_of(host: Host) -> int:
    """The port the deploy reaches sshd on (pyinfra's `ssh_port`, default 22): sshd listens
    there and the firewall must keep it open to admin_cidrs."""
    return int(host.data.get("ssh_port") or 22)


def _is_unknown(key: str) -> bool:
    return key not in _FIELDS and not key.startswith(FOREIGN_KEY_PREFIXES)


# Settings that existed and went, with what to do instead: a group_data file that still sets one
# gets this rather than "unknown setting".
REMOVED_SETTINGS = {
    "https_enabled": (
        "removed: TLS terminates at the load balancer, which speaks HTTP to the proxies inside "
        "the VPC (nginx never had a certificate or a listener on 443); delete the line"
    ),
}


def _unknown_key(key: str, value: Any) -> str:
    if key in REMOVED_SETTINGS:
        return _message(key, value, REMOVED_SETTINGS[key])
    close = difflib.get_close_matches(key, _FIELDS, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return _message(
        key,
        value,
        "unknown setting: must be one of those in docs/settings.md, or start with "
        + ", ".join(FOREIGN_KEY_PREFIXES)
        + hint,
    )


def _message(name: str, value: Any, problem: str, detail: str = "") -> str:
    """`name = value: problem (detail)`, the value's repr cut short if it is long."""
    shown = repr(value)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return f"{name} = {shown}: {problem}" + (f" ({detail})" if detail else "")


def _defaults() -> dict[str, Any]:
    return {
        f.name: f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        for f in _FIELDS.values()
    }


# --- cross-field rules: (inputs, rule); a rule is skipped when one of its inputs is invalid ------

_Rule = Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]


def _tries_within_cap(v: Mapping[str, Any], _data: Mapping[str, Any]) -> list[str]:
    """`proxy_tries` <= `max_tries`."""
    if v["proxy_tries"] is not None and v["proxy_tries"] > v["max_tries"]:
        return [
            _message(
                "proxy_tries", v["proxy_tries"], f"must be at most max_tries ({v['max_tries']})"
            )
        ]
    return []


def _keepalive_below_backend(v: Mapping[str, Any], _data: Mapping[str, Any]) -> list[str]:
    """`upstream_keepalive_timeout` < `backend_idle_timeout`."""
    ours, theirs = v["upstream_keepalive_timeout"], v["backend_idle_timeout"]
    if parse_duration(ours) < parse_duration(theirs):
        return []
    return [
        _message(
            "upstream_keepalive_timeout",
            ours,
            f"must be shorter than backend_idle_timeout ({theirs}), or nginx reuses connections "
            'the backend is closing ("upstream prematurely closed connection")',
        )
    ]


def _deploy_user_allowed(v: Mapping[str, Any], data: Mapping[str, Any]) -> list[str]:
    """`sshd_allow_users` contains the host's `ssh_user` (when it is set)."""
    user = data.get("ssh_user")
    if user is None or user in v["sshd_allow_users"]:
        return []
    return [
        _message(
            "sshd_allow_users",
            list(v["sshd_allow_users"]),
            f"must contain ssh_user ({user!r}), or the next deploy cannot log in",
        )
    ]


def _firewall_has_sources(v: Mapping[str, Any], _data: Mapping[str, Any]) -> list[str]:
    """`admin_cidrs` and `allowed_http_cidrs` are not empty when `firewall_enabled`."""
    if not v["firewall_enabled"]:
        return []
    return [
        _message(name, list(v[name]), "must list at least one CIDR network when firewall_enabled")
        for name in ("admin_cidrs", "allowed_http_cidrs")
        if not v[name]
    ]


def _firewall_admits_load_balancer(v: Mapping[str, Any], _data: Mapping[str, Any]) -> list[str]:
    """`allowed_http_cidrs` covers every `lb_subnet_cidrs` network when `firewall_enabled`."""
    if not v["firewall_enabled"] or not v["lb_subnet_cidrs"]:
        return []
    allowed = [ipaddress.ip_network(c) for c in v["allowed_http_cidrs"]]
    shut_out = [
        cidr
        for cidr in v["lb_subnet_cidrs"]
        if not any(
            net.version == ipaddress.ip_network(cidr).version
            and ipaddress.ip_network(cidr).subnet_of(net)
            for net in allowed
        )
    ]
    if not shut_out:
        return []
    return [
        _message(
            "allowed_http_cidrs",
            list(v["allowed_http_cidrs"]),
            f"does not admit the load balancer's subnets {', '.join(shut_out)} "
            "(lb_subnet_cidrs): nftables would drop all of its traffic while every probe from "
            "the runner passes; add them",
        )
    ]


def _resolvers_for_hostnames(v: Mapping[str, Any], _data: Mapping[str, Any]) -> list[str]:
    """`dns_resolvers` is not empty when `upstream_servers` names hosts."""
    if v["dns_resolvers"] or not any(is_hostname(b) for b in v["upstream_servers"]):
        return []
    return [
        _message(
            "dns_resolvers",
            [],
            "must list at least one IP address when upstream_servers names hosts (nginx 1.27.3+ "
            "re-resolves them with it)",
        )
    ]


def _non_idempotent_needs_methods(v: Mapping[str, Any], _data: Mapping[str, Any]) -> list[str]:
    """`retry_non_idempotent_locations` needs POST or PATCH in `allowed_methods`."""
    if not v["retry_non_idempotent_locations"] or {"POST", "PATCH"} & set(v["allowed_methods"]):
        return []
    return [
        _message(
            "retry_non_idempotent_locations",
            list(v["retry_non_idempotent_locations"]),
            "has no effect unless allowed_methods contains POST or PATCH",
        )
    ]


def _ssh_client_can_connect(v: Mapping[str, Any], _data: Mapping[str, Any]) -> list[str]:
    """`sshd_ciphers`, `sshd_kex_algorithms`, `sshd_macs` each keep one that paramiko speaks."""
    kinds = (
        ("sshd_ciphers", PARAMIKO_CIPHERS),
        ("sshd_kex_algorithms", PARAMIKO_KEX),
        ("sshd_macs", PARAMIKO_MACS),
    )
    return [
        _message(
            name,
            list(v[name]),
            "must contain one that pyinfra's SSH client (paramiko) speaks: "
            + ", ".join(sorted(supported))
            + "; or the next deploy cannot connect",
        )
        for name, supported in kinds
        if not supported.intersection(v[name])
    ]


def _client_errors_need_reason(v: Mapping[str, Any], _data: Mapping[str, Any]) -> list[str]:
    """`retry_on` lists http_403 or http_404 only with a `retry_on_client_errors_reason`."""
    listed = [c for c in v["retry_on"] if c in ("http_403", "http_404")]
    if not listed or v["retry_on_client_errors_reason"]:
        return []
    return [
        _message(
            "retry_on",
            list(v["retry_on"]),
            f"{' and '.join(listed)} refused: another try rarely cures a 403 or 404, and every "
            "one a scanner provokes would be sent to the backends again, up to the number of "
            "tries; remove them, or say why in retry_on_client_errors_reason",
        )
    ]


def _limits_see_clients(v: Mapping[str, Any], data: Mapping[str, Any]) -> list[str]:
    """Rate or connection limits `behind_load_balancer` need `trusted_proxy_cidrs` or `lb_subnet_cidrs`."""  # noqa: E501
    limits = [f"{k} = {v[k]}" for k in ("rate_limit_rps", "conn_limit_per_client") if v[k]]
    behind = v["behind_load_balancer"]
    if behind is None:
        behind = bool(data.get("ec2_instance_id"))
    trusted = v["trusted_proxy_cidrs"]
    if not limits or not behind or (v["lb_subnet_cidrs"] if trusted is None else trusted):
        return []
    return [
        _message(
            "trusted_proxy_cidrs",
            None if trusted is None else list(trusted),
            f"no trusted proxies behind a load balancer with {' and '.join(limits)}: nginx would "
            "key the limits on the balancer's few addresses, so one noisy client gets every "
            "client 429s. Set lb_subnet_cidrs (Terraform output lb_subnet_cidrs) or "
            "trusted_proxy_cidrs; or behind_load_balancer = False if clients connect directly; "
            "or rate_limit_rps = 0 and conn_limit_per_client = 0",
        )
    ]


def _audit_logs_apart(v: Mapping[str, Any], _data: Mapping[str, Any]) -> list[str]:
    """`audit_log_prefix` is neither `log_prefix` nor inside it, nor around it."""
    audit, access = v["audit_log_prefix"], v["log_prefix"]
    if not audit or not (
        audit == access or audit.startswith(access + "/") or access.startswith(audit + "/")
    ):
        return []
    return [
        _message(
            "audit_log_prefix",
            audit,
            f"must lie outside log_prefix ({access!r}) and not contain it: everything under "
            "log_prefix is read as JSON access logs (the report, Athena), and audit records are "
            "not JSON",
        )
    ]


_CROSS_RULES: tuple[tuple[tuple[str, ...], _Rule], ...] = (
    (("proxy_tries", "max_tries"), _tries_within_cap),
    (("upstream_keepalive_timeout", "backend_idle_timeout"), _keepalive_below_backend),
    (("sshd_allow_users",), _deploy_user_allowed),
    (("firewall_enabled", "admin_cidrs", "allowed_http_cidrs"), _firewall_has_sources),
    (
        ("firewall_enabled", "allowed_http_cidrs", "lb_subnet_cidrs"),
        _firewall_admits_load_balancer,
    ),
    (("dns_resolvers", "upstream_servers"), _resolvers_for_hostnames),
    (("retry_non_idempotent_locations", "allowed_methods"), _non_idempotent_needs_methods),
    (("sshd_ciphers", "sshd_kex_algorithms", "sshd_macs"), _ssh_client_can_connect),
    (("retry_on", "retry_on_client_errors_reason"), _client_errors_need_reason),
    (("audit_log_prefix", "log_prefix"), _audit_logs_apart),
    (
        (
            "rate_limit_rps",
            "conn_limit_per_client",
            "behind_load_balancer",
            "trusted_proxy_cidrs",
            "lb_subnet_cidrs",
        ),
        _limits_see_clients,
    ),
)


# --- the generated docs table -------------------------------------------------------------------


def _show_default(value: Any) -> str:
    """A default as it would be written in group_data (Python), lists rather than tuples."""
    if isinstance(value, tuple):
        return "[" + ", ".join(_show_default(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {_show_default(i)}" for k, i in value.items()) + "}"
    return repr(value).replace("'", '"')


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """docs/settings.md: every setting with its default, what is allowed and why."""
    defaults = _defaults()
    lines = [
        "# Settings",
        "",
        "<!-- Generated by `python -m tasks.settings --markdown` from tasks/settings.py. "
        "Do not edit: change the declarations and regenerate. -->",
        "",
        "Every key the deploy reads, with its default. Set them in `group_data/*.py`, host data "
        "or `--data`. Keys not listed here are refused, except those starting with "
        + ", ".join(f"`{p}`" for p in FOREIGN_KEY_PREFIXES)
        + " (pyinfra's and the inventory's own).",
        "",
        "| Setting | Default | Allowed | Meaning |",
        "|---|---|---|---|",
    ]
    for name, spec in _FIELDS.items():
        check: Check = spec.metadata["check"]
        row = (
            f"`{name}`",
            f"`{_show_default(defaults[name])}`",
            check.allowed,
            spec.metadata["doc"],
        )
        lines.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
    lines += ["", "Rules across settings:", ""]
    lines += [f"- {rule.__doc__}" for _inputs, rule in _CROSS_RULES]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the settings table")
    args = parser.parse_args(argv)
    if not args.markdown:
        parser.print_help()
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
