"""Every setting the deploy reads: declared, documented and validated in this one place.

Owns: the `Settings` object (one per host, frozen), its defaults, its validation, the values derived
from it (number of tries, nginx upstream `server` lines) and the generated settings table
(`python -m tasks.settings --markdown` > docs/settings.md).

Each setting is a field of `Settings` declared with `_setting(default, check, doc)`: the check
converts the value (lists become tuples) and says what is allowed; the doc says what the setting
does and why the default is what it is. Validation, error messages and the docs table are all
generated from those declarations, so they cannot drift apart. (The SSH algorithm defaults are
data in tasks/hardening_defaults.py, next to their reasons; they are declared here like the rest.)

Leaves alone: reading facts from hosts (the tasks pass them in, e.g. `nginx_has_resolve`) and
choosing each backend's address (the EC2 inventory gives each proxy `ec2_backend_addresses`;
the task passes them to `backends`).
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

from pyinfra.api.exceptions import PyinfraError

from tasks.hardening_defaults import (
    KERNEL_MODULES_NOT_ON_A_PROXY,
    LEGAL_BANNER,
    SSHD_CIPHERS,
    SSHD_KEX_ALGORITHMS,
    SSHD_MACS,
    SYSCTL_PINNED,
    sysctl_pinned_violation,
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

# `server ... resolve` (re-resolving hostname backends) and `resolver` inside `upstream` exist in
# open-source nginx since 1.27.3: nginx.org's stable repo has them, Debian 12 (1.22) and 13 (1.26)
# do not.
NGINX_RESOLVE_SINCE = (1, 27, 3)

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

# nginx.org package repository (nginx_source = "nginx.org"). The key file at NGINX_ORG_KEY_URL
# holds three signing keys; refuse a key file whose fingerprints are not exactly these.
# Source: nginx.org's linux_packages page documents 573BFD6B... ("the output can contain other
# keys used to sign the packages"); the other two (added 2024-05-29 for future releases) are the
# rest of that file as published in the nginx/nginx.org repository (text/keys/nginx_signing.key),
# listed with `gpg --dry-run --quiet --no-keyring --import --import-options import-show`.
NGINX_ORG_KEY_URL = "https://nginx.org/keys/nginx_signing.key"
NGINX_ORG_KEY_FINGERPRINTS = frozenset(
    {
        "573BFD6B3D8FBC641079A6ABABF5BD827BD9BF62",  # rsa2048, 2011-08-19, expires 2027-05-24
        "8540A6F18833A80E9C1653A42FD21310B49F6B46",  # rsa4096, 2024-05-29
        "9E9BE90EACBCDE69FE9B204CBCDCD8A38D88A2B3",  # rsa4096, 2024-05-29
    }
)
# apt (2.4+) reads an ASCII-armoured key from a `.asc` signed-by file: no gpg --dearmor on the host.
# The directory is the one nginx.org's instructions use.
NGINX_ORG_KEYRING = "/usr/share/keyrings/nginx-archive-keyring.asc"

# Algorithms pyinfra's SSH client (paramiko 4.0) speaks. sshd must keep at least one of each kind,
# or the next deploy cannot connect (tests/test_settings.py checks these against paramiko itself).
PARAMIKO_CIPHERS = frozenset(
    {"aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
)
PARAMIKO_KEX = frozenset(
    {
        "curve25519-sha256@libssh.org",
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group-exchange-sha256",
        "diffie-hellman-group14-sha256",
    }
)
PARAMIKO_MACS = frozenset(
    {
        "hmac-sha2-256",
        "hmac-sha2-512",
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
    }
)

_EPSILON = 1e-9  # float slack: 1 - 0.1**3 is 0.99899999..., which must count as reaching 0.999
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
_DURATION_RE = re.compile(r"([0-9]+)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
_SIZE_RE = re.compile(r"([0-9]+)([kKmM]?)")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024}


def _show_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _show_bytes(size: int) -> str:
    for unit, scale in (("m", 1024 * 1024), ("k", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


class SettingsError(PyinfraError):
    """Bad settings: one line per problem, naming the key, the bad value and what is allowed."""

    def __init__(self, errors: Sequence[str], host: str | None = None) -> None:
        self.errors = tuple(errors)
        self.host = host
        lines = [f"invalid settings for host {host}:", *self.errors] if host else list(self.errors)
        super().__init__("\n".join(lines))


class _Invalid(ValueError):
    """Raised by a check; `detail` optionally says which part of the value is wrong."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


# --- checks: each converts a value or raises _Invalid, and says what is allowed -----------------


class _Check:
    """Base of the checks: `allowed` completes the sentence "must be ..."."""

    allowed = "valid"

    def __call__(self, value: Any) -> Any:
        raise NotImplementedError


class _Bool(_Check):
    allowed = "True or False"

    def __call__(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _Invalid()
        return value


class _Int(_Check):
    """An int in [lo, hi]; a bool is refused (True would otherwise count as 1)."""

    def __init__(self, lo: int, hi: int, *, none: str = "") -> None:
        self.lo, self.hi, self.none = lo, hi, none
        self.allowed = f"an integer from {lo} to {hi}"
        if none:
            self.allowed = f"None ({none}) or {self.allowed}"

    def __call__(self, value: Any) -> int | None:
        if value is None and self.none:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise _Invalid()
        return value


class _Rate(_Check):
    """A probability: a float (or int) in [0, 1), or (0, 1) when zero is not ok."""

    def __init__(self, *, zero_ok: bool) -> None:
        self.zero_ok = zero_ok
        low = "at least 0" if zero_ok else "greater than 0"
        self.allowed = f"a number {low} and less than 1"

    def __call__(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid()
        if not (0 <= value < 1) or (value == 0 and not self.zero_ok):
            raise _Invalid()
        return float(value)


class _Choice(_Check):
    def __init__(self, choices: Sequence[str]) -> None:
        self.choices = tuple(choices)
        self.allowed = "one of " + ", ".join(f'"{c}"' for c in choices)

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise _Invalid()
        return value


class _Pattern(_Check):
    def __init__(self, pattern: str, allowed: str) -> None:
        self.regex = re.compile(pattern)
        self.allowed = allowed

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or not self.regex.fullmatch(value):
            raise _Invalid()
        return value


class _Duration(_Check):
    """An nginx time ("500ms", "10s", "2m", "1h") between lo and hi seconds; kept as text."""

    def __init__(self, lo: float, hi: float, units: Sequence[str] = ("ms", "s", "m", "h")) -> None:
        self.lo, self.hi, self.units = lo, hi, tuple(units)
        examples = ", ".join(
            f'"{e}"' for e in ("500ms", "10s", "2m", "1h") if e.lstrip("0123456789") in units
        )
        self.allowed = (
            f"a duration: an integer and a unit ({', '.join(units)}), e.g. {examples}; "
            f"from {_show_seconds(lo)} to {_show_seconds(hi)}"
        )

    def __call__(self, value: Any) -> str:
        match = _DURATION_RE.fullmatch(value) if isinstance(value, str) else None
        if not match or match.group(2) not in self.units:
            raise _Invalid()
        if not self.lo <= parse_duration(value) <= self.hi:
            raise _Invalid()
        return value


class _Size(_Check):
    """An nginx size ("512k", "10m") between lo and hi bytes; kept as text."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.allowed = (
            'a size: an integer with an optional k or m suffix, e.g. "512k", "10m"; '
            f"from {_show_bytes(lo)} to {_show_bytes(hi)}"
        )

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or not _SIZE_RE.fullmatch(value):
            raise _Invalid()
        if not self.lo <= parse_size(value) <= self.hi:
            raise _Invalid()
        return value


class _HostPort(_Check):
    allowed = '"host:port" (a hostname, an IPv4 address or an [IPv6] address; port 1-65535)'

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid()
        host, port = split_host_port(value)
        return f"{host}:{port}"


class _Address(_Check):
    allowed = 'an IP address, e.g. "169.254.169.253"'

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):  # ip_address(1) would be 0.0.0.1
            raise _Invalid()
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise _Invalid() from None


class _TimeServer(_Check):
    allowed = "an IP address or a hostname"

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid()
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
        if re.fullmatch(r"[0-9.]+", value) or not _HOSTNAME_RE.fullmatch(value):
            raise _Invalid()  # 169.254.169.1234 is a typo, not a hostname
        return value.lower()


class _Cidr(_Check):
    """A network in CIDR notation, strict (no host bits); optionally refusing /0."""

    def __init__(self, *, everything_ok: bool = True, ipv4_only: bool = False) -> None:
        self.everything_ok, self.ipv4_only = everything_ok, ipv4_only
        self.allowed = 'a CIDR network, e.g. "10.0.0.0/16" (no host bits set)'
        if ipv4_only:
            self.allowed = "an IPv4 " + self.allowed[2:]
        if not everything_ok:
            self.allowed = self.allowed[:-1] + ", not 0.0.0.0/0 or ::/0)"

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid()
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError:
            raise _Invalid() from None
        if network.prefixlen == 0 and not self.everything_ok:
            raise _Invalid()
        if network.version != 4 and self.ipv4_only:
            raise _Invalid()
        return str(network)


class _List(_Check):
    """A list (or tuple) of items that each pass `item`; returned as a tuple."""

    def __init__(self, item: _Check, *, at_least_one: bool = False, what: str = "") -> None:
        self.item, self.at_least_one = item, at_least_one
        self.allowed = f"a list of {what or item.allowed}" + (
            ", at least one" if at_least_one else ""
        )

    def __call__(self, value: Any) -> tuple[Any, ...]:
        # A bare string is a sequence too: "GET" would silently become ["G", "E", "T"].
        if not isinstance(value, list | tuple):
            raise _Invalid()
        if self.at_least_one and not value:
            raise _Invalid("it is empty")
        items = []
        for item in value:
            try:
                converted = self.item(item)
            except _Invalid:
                raise _Invalid(f"{item!r} is not allowed") from None
            if converted in items:
                raise _Invalid(f"{item!r} is listed twice")
            items.append(converted)
        return tuple(items)


class _Only(_Check):
    """One value only; `allowed` says why (a setting kept for its name, not yet built)."""

    def __init__(self, value: Any, allowed: str) -> None:
        self.value, self.allowed = value, allowed

    def __call__(self, value: Any) -> Any:
        if type(value) is not type(self.value) or value != self.value:
            raise _Invalid()
        return value


class _Optional(_Check):
    """None (meaning NONE, e.g. "computed"), or a value that passes `check`."""

    def __init__(self, check: _Check, *, none: str) -> None:
        self.check = check
        self.allowed = f"None ({none}) or {check.allowed}"

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.check(value)


class _SysctlMap(_Check):
    allowed = (
        'a dict of kernel parameter (e.g. "net.ipv4.tcp_syncookies") to an integer or a '
        "one-line string; pinned keys keep their value ("
        + ", ".join(f"{key} = {value}" for key, value in SYSCTL_PINNED.items())
        + ")"
    )
    _KEY_RE = re.compile(r"[a-z0-9_]+(?:\.[A-Za-z0-9_-]+)+")
    _TEXT_RE = re.compile(r"[^\s#;][^\n\r#;]*")

    def __call__(self, value: Any) -> Mapping[str, int | str]:
        if not isinstance(value, Mapping):
            raise _Invalid()
        for key, item in value.items():
            if not isinstance(key, str) or not self._KEY_RE.fullmatch(key):
                raise _Invalid(f"key {key!r} is not allowed")
            if isinstance(item, bool) or not isinstance(item, int | str):
                raise _Invalid(f"value {item!r} of {key} is not allowed")
            if isinstance(item, str) and not self._TEXT_RE.fullmatch(item):
                raise _Invalid(f"value {item!r} of {key} is not allowed")
            pinned = sysctl_pinned_violation(key, item)
            if pinned:
                raise _Invalid(pinned)
        return MappingProxyType(dict(value))


class _EnvMap(_Check):
    allowed = 'a dict of environment variable names (e.g. "AWS_ENDPOINT_URL") to one-line strings'
    _KEY_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
    _TEXT_RE = re.compile(r"[^\n\r\"\\]*")

    def __call__(self, value: Any) -> Mapping[str, str]:
        if not isinstance(value, Mapping):
            raise _Invalid()
        for key, item in value.items():
            if not isinstance(key, str) or not self._KEY_RE.fullmatch(key):
                raise _Invalid(f"key {key!r} is not allowed")
            if not isinstance(item, str) or not self._TEXT_RE.fullmatch(item):
                raise _Invalid(f"value of {key} is not allowed")
        return MappingProxyType(dict(value))


# Path prefixes end up literally in nginx locations and regexes: no whitespace, quotes, `;`, `{`,
# `}`, `$`, `#` or `%` ($uri is already percent-decoded, so an encoded prefix would never match).
_PATH = _Pattern(
    r"/[A-Za-z0-9._~!*+,=:@/-]*",
    'a path starting with "/" (letters, digits and ._~!*+,=:@/- only; no whitespace)',
)
_SERVER_NAME = _Pattern(
    rf"(?:\*\.)?{_HOSTNAME_RE.pattern}",
    'a hostname, optionally starting with "*.", e.g. "*.example.com"',
)
_USER = _Pattern(r"[a-z_][a-z0-9_-]{0,31}", 'a login name, e.g. "admin"')
_SSH_ALGORITHM = _Pattern(r"[a-z0-9][a-z0-9.@+-]*", 'an algorithm name, e.g. "aes256-ctr"')


def _setting(
    default: Any, check: _Check, doc: str, *, factory: Callable[[], Any] | None = None
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
    listen_port: int = _setting(80, _Int(1, 65535), "TCP port nginx serves HTTP on.")
    upstream_servers: tuple[str, ...] = _setting(
        (),
        _List(_HostPort()),
        "Backends. Empty: the backend instances the EC2 inventory found (tagged Role=app, "
        "`ec2_backend_addresses`), on `upstream_port`. "
        "nginx tries each server line once per request and never retries a lone server, so each "
        "backend is listed ceil(tries / number of backends) times, interleaved, with max_fails=0 "
        "(passive health checks only when `retry_on` has no 5xx/429: nginx would count every "
        "retried 5xx and mark flaky backends down).",
    )
    upstream_port: int = _setting(
        8080, _Int(1, 65535), "Backend port used with the backend instances the inventory found."
    )
    retry_on: tuple[str, ...] = _setting(
        ("error", "timeout", "http_500", "http_502", "http_503", "http_504"),
        _List(
            _Choice(RETRY_ON_VALUES),
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
        _Pattern(r"(?:[^\s\"'\\][^\n\r\"'\\]{9,199})?", "empty, or a reason of 10-200 characters"),
        "Why `retry_on` may list http_403 or http_404 (e.g. a backend that answers 404 until its "
        "cache is warm). Empty: they are refused, since every 403/404 a scanner provokes would "
        "cost `tries` backend calls.",
    )
    proxy_tries: int | None = _setting(
        None,
        _Int(1, 10, none="computed"),
        "Attempts per request, the first included. None: the smallest k with "
        "1 - p^k >= `target_success_rate` (p = `expected_backend_failure_rate`), at most "
        "`max_tries`. Must not exceed `max_tries`.",
    )
    target_success_rate: float = _setting(
        0.999,
        _Rate(zero_ok=False),
        "Share of requests that should succeed although single attempts fail; sets the computed "
        "number of tries (0.999 at p=0.2: 5 tries).",
    )
    expected_backend_failure_rate: float = _setting(
        0.2,
        _Rate(zero_ok=True),
        "Probability that one attempt fails (0.2: the lab backend answers 500/502 one time in "
        "five).",
    )
    max_tries: int = _setting(
        10,
        _Int(1, 10),
        "Cap on tries: each try adds load to a backend that is already failing (retry storm) "
        "and can add a full connect + read timeout of latency.",
    )
    proxy_next_upstream_timeout: str = _setting(
        "15s",
        _Duration(1, 600),
        "Time budget for all tries of one request. nginx checks it only between attempts: each "
        "attempt still gets the full connect/send/read timeouts.",
    )
    proxy_connect_timeout: str = _setting(
        "2s",
        _Duration(0.1, 75),
        "Time to open a backend connection. Short: a dead backend should cost a try, not the "
        "request (nginx caps it at 75 s).",
    )
    proxy_send_timeout: str = _setting(
        "10s", _Duration(1, 3600), "Longest pause while sending the request to the backend."
    )
    proxy_read_timeout: str = _setting(
        "10s",
        _Duration(1, 3600),
        "Longest pause while reading the backend's response; a timeout counts as a failed try.",
    )
    retry_non_idempotent_locations: tuple[str, ...] = _setting(
        (),
        _List(_PATH, what="path prefixes (each starting with /)"),
        "Path prefixes whose POST/PATCH requests may be retried after they reached a backend "
        "(proxy_next_upstream non_idempotent). Only for endpoints that are safe to repeat: a retry "
        "can apply the request twice.",
    )
    upstream_keepalive: int = _setting(
        32,
        _Int(0, 1024),
        "Idle backend connections each nginx worker keeps open (0: a new connection per attempt). "
        "Saves a TCP handshake per try.",
    )
    upstream_keepalive_timeout: str = _setting(
        "20s",
        _Duration(1, 3600),
        "How long nginx keeps an idle backend connection. Must be shorter than "
        "`backend_idle_timeout`, or nginx reuses connections the backend is closing and "
        'non-idempotent requests fail with "upstream prematurely closed connection".',
    )
    backend_idle_timeout: str = _setting(
        "30s",
        _Duration(1, 3600),
        "The backend's own idle keepalive timeout (a fact about the backend; not applied by this "
        "deploy). Used only to check `upstream_keepalive_timeout`.",
    )
    backend_health_path: str = _setting(
        "/health", _PATH, "Backend path that /readyz asks, through the retrying upstream."
    )
    access_log: str = _setting(
        "/var/log/nginx/proxy_access.log",
        _Pattern(r"/[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*", "an absolute file path"),
        "JSON access log. Keep it in /var/log/nginx/, where the nginx package's logrotate "
        "rotates it.",
    )
    nginx_source: str = _setting(
        "distribution",
        _Choice(NGINX_SOURCES),
        'Where nginx comes from: "distribution" (Debian: 1.22 on 12, 1.26 on 13) or "nginx.org" '
        "(stable repository, signing key fingerprints checked, pinned at priority 900). Hostname "
        "backends are re-resolved (`resolve`) only with nginx 1.27.3+, i.e. nginx.org.",
    )
    dns_resolvers: tuple[str, ...] = _setting(
        ("169.254.169.253",),
        _List(_Address(), what="IP addresses"),
        "DNS servers nginx uses to re-resolve hostname backends (only with `resolve`, nginx "
        "1.27.3+). Default: the Amazon VPC resolver.",
    )

    # nginx hardening
    client_max_body_size: str = _setting(
        "10m",
        _Size(1024, 1024 * 1024 * 1024),
        "Largest request body accepted (413 above). Bodies are buffered before proxying, which is "
        "also what lets nginx send them again on a retry.",
    )
    client_body_timeout: str = _setting(
        "10s",
        _Duration(1, 300),
        "Longest pause while a client sends its body: slow clients (slowloris) cannot hold "
        "connections open.",
    )
    client_header_timeout: str = _setting(
        "10s", _Duration(1, 300), "Time a client has to send its request headers (slowloris)."
    )
    rate_limit_rps: int = _setting(
        100,
        _Int(0, 100000),
        "Requests per second per client address (limit_req; 429 above; 0 = off). Behind a load "
        "balancer the client address comes from trusted proxies (`lb_subnet_cidrs`, "
        "`trusted_proxy_cidrs`); without them the deploy refuses (`behind_load_balancer`).",
    )
    rate_limit_burst: int = _setting(
        200,
        _Int(0, 100000),
        "Requests a client may send above the rate, served without delay, before getting 429.",
    )
    conn_limit_per_client: int = _setting(
        100,
        _Int(0, 100000),
        "Concurrent connections per client address (limit_conn; 429 above; 0 = off).",
    )
    allowed_methods: tuple[str, ...] = _setting(
        ("GET", "HEAD", "POST"),
        _List(
            _Choice(HTTP_METHODS), at_least_one=True, what="methods from " + ", ".join(HTTP_METHODS)
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
        _List(_PATH, what="path prefixes (each starting with /)"),
        "Path prefixes nginx answers with 404 without asking the backend (scanner targets), "
        'matched case-insensitively on the normalised path and logged with "blocked":1.',
    )
    security_headers: bool = _setting(
        True,
        _Bool(),
        "Add X-Content-Type-Options, X-Frame-Options and Referrer-Policy to every response, errors "
        "included (replacing the backend's own).",
    )
    server_names: tuple[str, ...] = _setting(
        (),
        _List(_SERVER_NAME, what='hostnames (optionally starting with "*.")'),
        "Host names proxied. Empty: any Host. Otherwise a catch-all server answers only /healthz "
        "and closes everything else without a response (444).",
    )
    lb_subnet_cidrs: tuple[str, ...] = _setting(
        (),
        _List(_Cidr(everything_ok=False, ipv4_only=True), what="IPv4 CIDR networks (not /0)"),
        "Networks the load balancer connects from: Terraform's output `lb_subnet_cidrs` "
        "(`tools/terraform.sh output -json lb_subnet_cidrs`), copied into the environment's "
        "group_data file. The default of `trusted_proxy_cidrs`.",
    )
    trusted_proxy_cidrs: tuple[str, ...] | None = _setting(
        None,
        _Optional(
            _List(_Cidr(everything_ok=False), what="CIDR networks (no host bits set), not /0"),
            none="`lb_subnet_cidrs`",
        ),
        "Peers trusted to say who the client is. Only from these is the client address taken from "
        "X-Forwarded-For (real_ip), so per-client limits and logs see real clients; from anyone "
        "else that header is dropped, since clients can forge it. None: `lb_subnet_cidrs`.",
    )
    behind_load_balancer: bool | None = _setting(
        None,
        _Optional(_Bool(), none="yes for hosts of the EC2 inventory"),
        "Whether clients reach the proxies through a load balancer (terraform/ puts every proxy "
        "behind one). Then per-client limits need trusted proxies: without them every client "
        "shares the balancer's few addresses and one noisy client gets everyone 429s, so the "
        "deploy refuses. False: clients connect directly.",
    )

    # Host hardening
    admin_cidrs: tuple[str, ...] = _setting(
        (),
        _List(_Cidr(everything_ok=False), what="CIDR networks (no host bits set), not /0"),
        "Networks allowed to reach SSH (IPv4 and IPv6). Required when `firewall_enabled`: "
        "there is no safe default; never 0.0.0.0/0 or ::/0, SSH open to everyone (Terraform's "
        "security group refuses it too).",
    )
    allowed_http_cidrs: tuple[str, ...] = _setting(
        (),
        _List(_Cidr(), what="CIDR networks (no host bits set)"),
        "Networks allowed to reach `listen_port`; 0.0.0.0/0 for everyone (IPv4). An IPv6 network "
        "here makes nginx listen on IPv6 too, so nginx and the firewall agree. Required when "
        "`firewall_enabled`.",
    )
    firewall_enabled: bool = _setting(
        True, _Bool(), "Install the nftables policy: drop everything not allowed above."
    )
    https_enabled: bool = _setting(
        False,
        _Only(
            False,
            "False: TLS terminates at the load balancer, which speaks HTTP to the proxies inside "
            "the VPC; nginx has no certificate and does not listen on 443",
        ),
        "Reserved: TLS from the load balancer to the proxies is not built (no certificate, no "
        "listener on 443), so opening 443 in the firewall would only expose a closed port. "
        "True is refused.",
    )
    sshd_allow_users: tuple[str, ...] = _setting(
        ("admin",),
        _List(_USER, at_least_one=True, what="login names"),
        "The only users sshd lets in (AllowUsers). Must contain the deploy's `ssh_user`, or the "
        "next run locks itself out.",
    )
    sshd_login_grace_time: str = _setting(
        "30s",
        _Duration(1, 600, units=("s", "m", "h")),
        "Time to authenticate before sshd drops the connection (LoginGraceTime): unauthenticated "
        "connections cannot pile up.",
    )
    sshd_max_auth_tries: int = _setting(
        3, _Int(1, 10), "Authentication attempts per connection (MaxAuthTries): slows guessing."
    )
    sshd_ciphers: tuple[str, ...] = _setting(
        SSHD_CIPHERS,
        _List(_SSH_ALGORITHM, at_least_one=True, what="algorithm names"),
        "sshd Ciphers: AEAD and CTR only, all known to OpenSSH 9.2 (Debian 12) and 10 (Debian 13): "
        "sshd refuses to start on a name it does not know. Must keep one that paramiko "
        "(pyinfra's SSH client) speaks: aes*-ctr or aes*-gcm.",
    )
    sshd_kex_algorithms: tuple[str, ...] = _setting(
        SSHD_KEX_ALGORITHMS,
        _List(_SSH_ALGORITHM, at_least_one=True, what="algorithm names"),
        "sshd KexAlgorithms: post-quantum hybrid first, then curve25519; no NIST curves, no "
        "finite-field DH, no SHA-1 (reasons in tasks/hardening_defaults.py). Must keep one that "
        "paramiko speaks: curve25519-sha256@libssh.org.",
    )
    sshd_macs: tuple[str, ...] = _setting(
        SSHD_MACS,
        _List(_SSH_ALGORITHM, at_least_one=True, what="algorithm names"),
        "sshd MACs: encrypt-then-MAC only. Must keep one that paramiko speaks (hmac-sha2-*).",
    )
    sshd_client_alive_interval: int = _setting(
        300,
        _Int(0, 3600),
        "Seconds between probes of an idle SSH client (ClientAliveInterval; 0 = off): dead "
        "sessions are closed.",
    )
    sysctl_overrides: Mapping[str, int | str] = _setting(
        None,
        _SysctlMap(),
        "Kernel parameters merged over the hardening defaults. kernel.* cannot be changed inside "
        "containers: there they are only persisted.",
        factory=lambda: MappingProxyType({}),
    )
    unattended_upgrades_enabled: bool = _setting(
        True, _Bool(), "Install security updates daily (unattended-upgrades)."
    )
    unattended_upgrades_reboot: bool = _setting(
        False,
        _Bool(),
        "Reboot by itself when an update needs it. Off: proxies rebooting on their own, maybe "
        "together, drop traffic; reboot them in a controlled `--serial` run instead.",
    )
    first_security_upgrade: bool = _setting(
        True,
        _Bool(),
        "On the first converge (no /var/lib/proxy-deploy/first-security-upgrade yet), apply the "
        "pending security updates once with unattended-upgrade, before nginx is configured to "
        "serve: a fresh host does not keep its image's vulnerable packages until the nightly run.",
    )
    service_sandbox_enabled: bool = _setting(
        True,
        _Bool(),
        "systemd sandboxes (drop-ins) for nginx and the log shipper: read-only system, few "
        "capabilities and system calls (`systemd-analyze security`: nginx 9.6 -> 2.6, the "
        "shipper 8.9 -> 1.1). A change restarts nginx once, after `nginx -t` inside the sandbox.",
    )
    kernel_module_blacklist: tuple[str, ...] = _setting(
        KERNEL_MODULES_NOT_ON_A_PROXY,
        _List(
            _Pattern(r"[a-z0-9][a-z0-9_-]{0,55}", "a kernel module name"),
            what='kernel module names (e.g. "dccp")',
        ),
        "Kernel modules made unloadable (`install X /bin/false`): rare network protocols and file "
        "systems (a history of kernel exploits, loadable by any user), USB storage, FireWire "
        "(reasons in tasks/hardening_defaults.py). Empty: off. Persisted only in a container.",
    )
    core_dumps_disabled: bool = _setting(
        True,
        _Bool(),
        "No core dumps (limits.d hard limit 0, systemd-coredump Storage=none): a dump of nginx "
        "holds requests, cookies and keys in clear.",
    )
    login_defs_hardened: bool = _setting(
        True,
        _Bool(),
        "/etc/login.defs: UMASK 027 and 640000 SHA-512 rounds; only those lines are replaced.",
    )
    legal_banner: str = _setting(
        LEGAL_BANNER,
        _Pattern(
            r"(?:[ -\[\]-~]{1,200}(?:\n[ -\[\]-~]{1,200}){0,9})?",
            "empty (off), or up to 10 lines of printable ASCII (no backslash), 200 characters each",
        ),
        "Legal notice shown by sshd before login (Banner) and in /etc/issue, /etc/issue.net. "
        "Empty: none (sshd Banner none, the issue files left alone).",
    )
    needrestart_enabled: bool = _setting(
        True,
        _Bool(),
        "Install needrestart in automatic mode: after unattended-upgrades patches a library, the "
        "services still using the old one are restarted (nginx, sshd), not left vulnerable until "
        "a reboot.",
    )
    auditd_enabled: bool = _setting(
        True,
        _Bool(),
        "Install auditd with a small rule set: changes to sshd_config, sudoers, identity files, "
        "nginx and nftables configuration, unit files, and kernel module loading. Inside a "
        "container only persisted (the audit subsystem is the machine's).",
    )
    time_servers: tuple[str, ...] = _setting(
        ("169.254.169.123",),
        _List(_TimeServer(), what="IP addresses or hostnames"),
        "NTP servers for systemd-timesyncd, tried in order (the logs and reports compare "
        "timestamps across proxies). Default: the Amazon Time Sync Service, link-local on every "
        "EC2 instance. Empty: time sync is left alone; a host running chrony or ntp keeps it.",
    )

    # Log shipping
    log_bucket: str = _setting(
        "",
        _Pattern(r"(?:[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?", "an S3 bucket name, or empty (off)"),
        "S3 bucket that receives the rotated JSON access logs, hourly (the bucket from "
        "terraform/, output `access_log_bucket`). Empty: logs stay on the host (logrotate keeps "
        "14 days).",
    )
    log_prefix: str = _setting(
        "proxy-access-logs",
        _Pattern(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*", "an S3 key prefix without leading /"),
        "Key prefix in `log_bucket`; objects are PREFIX/INSTANCE-ID/YYYY/MM/DD/FILE.",
    )
    audit_log_prefix: str = _setting(
        "proxy-audit-logs",
        _Pattern(
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
        _EnvMap(),
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
    def expected_success_rate(self) -> float:
        """Share of requests expected to succeed with `tries` independent attempts."""
        return 1 - self.expected_backend_failure_rate**self.tries

    @property
    def blocked_path_patterns(self) -> tuple[str, ...]:
        """`blocked_paths` as nginx map regexes: anchored prefixes, case-insensitive."""
        return tuple("~*^" + _regex_literal(path) for path in self.blocked_paths)

    @property
    def nginx_user(self) -> str:
        """The user nginx's workers run as: each packaging creates its own."""
        return "www-data" if self.nginx_source == "distribution" else "nginx"

    @property
    def nginx_org_keyring(self) -> str:
        """Where the task puts nginx.org's signing keys (the apt source's signed-by)."""
        return NGINX_ORG_KEYRING

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

    def seconds(self, name: str) -> float:
        """The duration setting `name` in seconds, e.g. seconds("proxy_read_timeout") == 10.0."""
        return parse_duration(getattr(self, name))

    def size_bytes(self, name: str) -> int:
        """The size setting `name` in bytes, e.g. size_bytes("client_max_body_size")."""
        return parse_size(getattr(self, name))


_FIELDS: dict[str, Field[Any]] = {f.name: f for f in fields(Settings)}


# --- pure helpers -------------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds in an nginx time such as "500ms", "10s", "2m" or "1h"."""
    match = _DURATION_RE.fullmatch(text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(text: str) -> int:
    """Bytes in an nginx size such as "512k" or "10m"."""
    match = _SIZE_RE.fullmatch(text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def split_host_port(text: str) -> tuple[str, int]:
    """("host", port) from "host:port", "1.2.3.4:port" or "[v6]:port"; the host comes back
    normalised (IPv6 in brackets). Raises _Invalid."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\[\]]+):([0-9]{1,5})", text)
    if not match:
        raise _Invalid()
    if match.group(1) is not None:
        try:
            host = f"[{ipaddress.IPv6Address(match.group(1))}]"
        except ValueError:
            raise _Invalid() from None
        port = int(match.group(2))
    else:
        host, port = _ipv4_or_hostname(match.group(3)), int(match.group(4))
    if not 1 <= port <= 65535:
        raise _Invalid()
    return host, port


def _ipv4_or_hostname(text: str) -> str:
    """An IPv4 address or a hostname; dotted numbers that are no valid IPv4 address are refused."""
    if re.fullmatch(r"[0-9.]+", text):
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise _Invalid() from None
    if not _HOSTNAME_RE.fullmatch(text):
        raise _Invalid()
    return text.lower()


def _regex_literal(path: str) -> str:
    """`path` as a PCRE literal. `_PATH` lets through only three regex metacharacters: . * +"""
    return re.sub(r"([.*+])", r"\\\1", path)


def is_hostname(host_port: str) -> bool:
    """True when a "host:port" backend names a host rather than an IP address."""
    host = host_port.rsplit(":", 1)[0].strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def tries_for(failure_rate: float, target: float, cap: int) -> int:
    """Smallest k with 1 - failure_rate**k >= target, at most `cap` (1 when nothing fails)."""
    if failure_rate <= 0:
        return 1
    k = 1
    while k < cap and 1 - failure_rate**k < target - _EPSILON:
        k += 1
    return k


def nginx_supports_resolve(version: str) -> bool:
    """True for nginx versions with `server ... resolve` in open source (1.27.3+), e.g. "1.30.0"."""
    numbers = tuple(int(part) for part in re.findall(r"[0-9]+", version)[:3])
    return numbers >= NGINX_RESOLVE_SINCE


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
        if _HOSTNAME_RE.fullmatch(address):
            return address.lower()
        raise SettingsError(
            [
                f"backend address {address!r} from the inventory: must be an IP "
                "address or a hostname, without a port (the port is upstream_port)"
            ]
        ) from None
    return f"[{ip}]" if ip.version == 6 else str(ip)


def upstream_server_lines(
    backend_list: Sequence[str], tries: int, nginx_has_resolve: bool, retry_on: Sequence[str]
) -> list[str]:
    """nginx `server` lines for the `upstream` block.

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
    if not backend_list:
        raise ValueError("no backends")
    repeats = -(-tries // len(backend_list))  # ceil(tries / n)
    passive = len(backend_list) > 1 and not STATUSES_COUNTED_AS_FAILURES.intersection(retry_on)
    health = (
        f"max_fails={PASSIVE_MAX_FAILS} fail_timeout={PASSIVE_FAIL_TIMEOUT}"
        if passive
        else "max_fails=0"
    )
    return [
        _server_line(backend, health, nginx_has_resolve)
        for _ in range(repeats)
        for backend in backend_list
    ]


def _server_line(backend: str, parameters: str, nginx_has_resolve: bool) -> str:
    resolve = " resolve" if nginx_has_resolve and is_hostname(backend) else ""
    return f"server {backend}{resolve} {parameters};"


def nginx_template_vars(
    settings: Settings, backend_list: Sequence[str], nginx_has_resolve: bool
) -> dict[str, Any]:
    """Everything templates/nginx/nginx.conf.j2 and proxy.conf.j2 need, for files.template.

    `backend_list` comes from `backends(settings, the inventory's ec2_backend_addresses)`;
    `nginx_has_resolve` from `nginx_supports_resolve(the host's nginx version)`.
    """
    return {
        "s": settings,
        "upstream_servers": upstream_server_lines(
            backend_list, settings.tries, nginx_has_resolve, settings.retry_on
        ),
        "nginx_has_resolve": nginx_has_resolve,
    }


# --- building Settings --------------------------------------------------------------------------


def from_data(data: Mapping[str, Any]) -> Settings:
    """Validated Settings from host data (pure). Raises SettingsError listing every problem."""
    errors = [_unknown_key(key, data[key]) for key in sorted(data) if _is_unknown(key)]
    values: dict[str, Any] = {}
    invalid: set[str] = set()
    for name, spec in _FIELDS.items():
        if name not in data:
            continue
        check: _Check = spec.metadata["check"]
        try:
            values[name] = check(data[name])
        except _Invalid as problem:
            invalid.add(name)
            errors.append(_message(name, data[name], f"must be {check.allowed}", problem.detail))
    merged = {**_defaults(), **values}
    for inputs, rule in _CROSS_RULES:
        if not invalid.intersection(inputs):
            errors.extend(rule(merged, data))
    if errors:
        raise SettingsError(errors)
    return Settings(**values)


def for_host(host: Host) -> Settings:
    """Validated Settings from everything pyinfra knows about `host` (HostData.dict(): override,
    host, group, `all` and @deploy data merged in pyinfra's precedence order)."""
    try:
        return from_data(host.data.dict())
    except SettingsError as error:
        raise SettingsError(error.errors, host=host.name) from None


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


def _unknown_key(key: str, value: Any) -> str:
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
        check: _Check = spec.metadata["check"]
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
