"""The checks the settings are declared with: each converts a value or refuses it, saying why.

Owns: the check classes (`Check` and its kinds: integers, durations, sizes, CIDR networks, lists,
...), the parsers of nginx durations and sizes and of "host:port", and the hostname pattern. Each
check is called with a raw value from host data and returns it converted (lists become tuples,
addresses normalised) or raises `Invalid`; its `allowed` completes the sentence "must be ...",
which the error messages and the generated settings table both use.

Leaves alone: which setting uses which check, defaults and rules across settings
(tasks/settings.py).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from tasks.hardening_defaults import SYSCTL_PINNED, sysctl_pinned_violation

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
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


class Invalid(ValueError):
    """Raised by a check; `detail` optionally says which part of the value is wrong."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


# --- checks: each converts a value or raises Invalid, and says what is allowed -----------------


class Check:
    """Base of the checks: `allowed` completes the sentence "must be ..."."""

    allowed = "valid"

    def __call__(self, value: Any) -> Any:
        raise NotImplementedError


class Bool(Check):
    allowed = "True or False"

    def __call__(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise Invalid()
        return value


class Int(Check):
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
            raise Invalid()
        return value


class Rate(Check):
    """A probability: a float (or int) in [0, 1), or (0, 1) when zero is not ok."""

    def __init__(self, *, zero_ok: bool) -> None:
        self.zero_ok = zero_ok
        low = "at least 0" if zero_ok else "greater than 0"
        self.allowed = f"a number {low} and less than 1"

    def __call__(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid()
        if not (0 <= value < 1) or (value == 0 and not self.zero_ok):
            raise Invalid()
        return float(value)


class Choice(Check):
    def __init__(self, choices: Sequence[str]) -> None:
        self.choices = tuple(choices)
        self.allowed = "one of " + ", ".join(f'"{c}"' for c in choices)

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise Invalid()
        return value


class Pattern(Check):
    def __init__(self, pattern: str, allowed: str) -> None:
        self.regex = re.compile(pattern)
        self.allowed = allowed

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or not self.regex.fullmatch(value):
            raise Invalid()
        return value


class Duration(Check):
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
            raise Invalid()
        if not self.lo <= parse_duration(value) <= self.hi:
            raise Invalid()
        return value


class Size(Check):
    """An nginx size ("512k", "10m") between lo and hi bytes; kept as text."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.allowed = (
            'a size: an integer with an optional k or m suffix, e.g. "512k", "10m"; '
            f"from {_show_bytes(lo)} to {_show_bytes(hi)}"
        )

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or not _SIZE_RE.fullmatch(value):
            raise Invalid()
        if not self.lo <= parse_size(value) <= self.hi:
            raise Invalid()
        return value


class HostPort(Check):
    allowed = '"host:port" (a hostname, an IPv4 address or an [IPv6] address; port 1-65535)'

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid()
        host, port = split_host_port(value)
        return f"{host}:{port}"


class Address(Check):
    allowed = 'an IP address, e.g. "169.254.169.253"'

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):  # ip_address(1) would be 0.0.0.1
            raise Invalid()
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise Invalid() from None


class TimeServer(Check):
    allowed = "an IP address or a hostname"

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid()
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
        if re.fullmatch(r"[0-9.]+", value) or not HOSTNAME_RE.fullmatch(value):
            raise Invalid()  # 169.254.169.1234 is a typo, not a hostname
        return value.lower()


class Cidr(Check):
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
            raise Invalid()
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError:
            raise Invalid() from None
        if network.prefixlen == 0 and not self.everything_ok:
            raise Invalid()
        if network.version != 4 and self.ipv4_only:
            raise Invalid()
        return str(network)


class ListOf(Check):
    """A list (or tuple) of items that each pass `item`; returned as a tuple."""

    def __init__(self, item: Check, *, at_least_one: bool = False, what: str = "") -> None:
        self.item, self.at_least_one = item, at_least_one
        self.allowed = f"a list of {what or item.allowed}" + (
            ", at least one" if at_least_one else ""
        )

    def __call__(self, value: Any) -> tuple[Any, ...]:
        # A bare string is a sequence too: "GET" would silently become ["G", "E", "T"].
        if not isinstance(value, list | tuple):
            raise Invalid()
        if self.at_least_one and not value:
            raise Invalid("it is empty")
        items = []
        for item in value:
            try:
                converted = self.item(item)
            except Invalid:
                raise Invalid(f"{item!r} is not allowed") from None
            if converted in items:
                raise Invalid(f"{item!r} is listed twice")
            items.append(converted)
        return tuple(items)


class NoneOr(Check):
    """None (meaning NONE, e.g. "computed"), or a value that passes `check`."""

    def __init__(self, check: Check, *, none: str) -> None:
        self.check = check
        self.allowed = f"None ({none}) or {check.allowed}"

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.check(value)


class SysctlMap(Check):
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
            raise Invalid()
        for key, item in value.items():
            if not isinstance(key, str) or not self._KEY_RE.fullmatch(key):
                raise Invalid(f"key {key!r} is not allowed")
            if isinstance(item, bool) or not isinstance(item, int | str):
                raise Invalid(f"value {item!r} of {key} is not allowed")
            if isinstance(item, str) and not self._TEXT_RE.fullmatch(item):
                raise Invalid(f"value {item!r} of {key} is not allowed")
            pinned = sysctl_pinned_violation(key, item)
            if pinned:
                raise Invalid(pinned)
        return MappingProxyType(dict(value))


class EnvMap(Check):
    allowed = 'a dict of environment variable names (e.g. "AWS_ENDPOINT_URL") to one-line strings'
    _KEY_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
    _TEXT_RE = re.compile(r"[^\n\r\"\\]*")

    def __call__(self, value: Any) -> Mapping[str, str]:
        if not isinstance(value, Mapping):
            raise Invalid()
        for key, item in value.items():
            if not isinstance(key, str) or not self._KEY_RE.fullmatch(key):
                raise Invalid(f"key {key!r} is not allowed")
            if not isinstance(item, str) or not self._TEXT_RE.fullmatch(item):
                raise Invalid(f"value of {key} is not allowed")
        return MappingProxyType(dict(value))


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
    normalised (IPv6 in brackets). Raises Invalid."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\[\]]+):([0-9]{1,5})", text)
    if not match:
        raise Invalid()
    if match.group(1) is not None:
        try:
            host = f"[{ipaddress.IPv6Address(match.group(1))}]"
        except ValueError:
            raise Invalid() from None
        port = int(match.group(2))
    else:
        host, port = _ipv4_or_hostname(match.group(3)), int(match.group(4))
    if not 1 <= port <= 65535:
        raise Invalid()
    return host, port


def _ipv4_or_hostname(text: str) -> str:
    """An IPv4 address or a hostname; dotted numbers that are no valid IPv4 address are refused."""
    if re.fullmatch(r"[0-9.]+", text):
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise Invalid() from None
    if not HOSTNAME_RE.fullmatch(text):
        raise Invalid()
    return text.lower()


def is_hostname(host_port: str) -> bool:
    """True when a "host:port" backend names a host rather than an IP address."""
    host = host_port.rsplit(":", 1)[0].strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False
