"""Settings of the EC2 inventory: environment variables, their defaults, validation and docs.

`SETTINGS` is the single place where each variable's default and meaning are written down; the
parser reads defaults from it and `settings_table_markdown()` renders the README table from it,
so the documentation cannot drift from the code. Every bad value fails with an `InventoryError`
naming the variable, the value and what is allowed, before anything talks to AWS.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .botocore_setup import known_regions
from .errors import InventoryError

PREFIX = "EC2_INVENTORY_"

# Groups the inventory always defines; keyed-group prefixes may not shadow them.
PROXY_GROUP = "proxies"
BACKEND_GROUP = "backends"
FIXED_GROUPS = frozenset({PROXY_GROUP, BACKEND_GROUP, "all"})
ENVIRONMENT_FILTER = "tag:Environment"  # what ENVIRONMENT=<value> filters on

EC2_STATES = ("pending", "running", "shutting-down", "terminated", "stopping", "stopped")
RETRY_MODES = ("standard", "adaptive")
DUPLICATE_NAME_MODES = ("suffix", "always", "error")
ADDRESS_KINDS = ("private-ip", "public-ip", "private-dns", "public-dns")
PLACEMENT_SOURCES = ("availability-zone", "region", "instance-type", "vpc-id", "subnet-id")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})

# EC2 accepts 5..1000 for describe_instances MaxResults.
MIN_PAGE_SIZE, MAX_PAGE_SIZE = 5, 1000
# Instance ids are "i-" plus 8 (old) or 17 hex characters.
MAX_SUFFIX_LENGTH = 17

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_GROUP_PREFIX = re.compile(r"^[a-z][a-z0-9_]*$")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, documented default and meaning."""

    env: str
    default: str
    meaning: str
    default_doc: str = ""  # shown instead of `default` when the default is computed

    @property
    def shown_default(self) -> str:
        """The default as the README shows it."""
        if self.default_doc:
            return self.default_doc
        return f"`{self.default}`" if self.default else "(unset)"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "EC2_INVENTORY_REGIONS",
        "",
        "Comma-separated regions to query, concurrently. Required one way or another.",
        default_doc="`$AWS_REGION`, else `$AWS_DEFAULT_REGION`",
    ),
    Setting(
        "EC2_INVENTORY_TAGS",
        "Role=reverse-proxy",
        "Tag filters selecting the proxies (group `proxies`): `Key=Value[,Value...]` entries "
        "separated by `;`; all entries must match, values within one entry are alternatives, "
        "`*` is a wildcard. May not be empty.",
    ),
    Setting(
        "EC2_INVENTORY_BACKEND_TAGS",
        "Role=app",
        "Tag filters selecting the backends, same syntax: every proxy gets the private IPv4 "
        "addresses of the backends of its own region as host data `ec2_backend_addresses`. "
        "Empty: no backends query.",
    ),
    Setting(
        "EC2_INVENTORY_BACKENDS_AS_HOSTS",
        "false",
        "`true`: the backends are also pyinfra hosts (group `backends`), so pyinfra connects to "
        "them; for deploys that target the app servers. Default: proxies only.",
    ),
    Setting(
        "ENVIRONMENT",
        "",
        "When set, adds the tag filter `Environment=<value>` to both the proxies and the backends.",
    ),
    Setting(
        "EC2_INVENTORY_STATES",
        "running",
        f"Comma-separated instance states to include ({', '.join(EC2_STATES)}).",
    ),
    Setting(
        "EC2_INVENTORY_FILTERS",
        "",
        "Extra EC2 `describe_instances` filters for both roles: `name=value[,value...]` entries "
        "separated by `;`, e.g. `vpc-id=vpc-0abc;instance-type=t3.*`.",
    ),
    Setting(
        "EC2_INVENTORY_EXCLUDE",
        "",
        "EC2 filters, same syntax; an instance matching any one entry is left out, "
        "e.g. `tag:Maintenance=true`.",
    ),
    Setting(
        "EC2_INVENTORY_PROFILE",
        "",
        "Named AWS profile. Unset: boto3's default credential chain (environment, "
        "`AWS_PROFILE`, SSO, instance or task role).",
        default_doc="`$AWS_PROFILE`",
    ),
    Setting(
        "EC2_INVENTORY_ROLE_ARN",
        "",
        "IAM role to assume (STS `AssumeRole`) with those credentials before querying EC2.",
    ),
    Setting(
        "EC2_INVENTORY_ROLE_SESSION_NAME",
        "pyinfra-ec2-inventory",
        "Session name of the assumed role, as CloudTrail shows it.",
    ),
    Setting(
        "AWS_ENDPOINT_URL",
        "",
        "Read by boto3 itself: send EC2 and STS calls to this endpoint "
        "(the lab's fake AWS). Shown by the listing and part of the cache key.",
    ),
    Setting(
        "EC2_INVENTORY_RETRY_MODE",
        "standard",
        f"botocore retry mode for throttling and transient errors ({', '.join(RETRY_MODES)}).",
    ),
    Setting(
        "EC2_INVENTORY_MAX_ATTEMPTS",
        "5",
        "Attempts per AWS call, first one included (botocore `max_attempts`).",
    ),
    Setting(
        "EC2_INVENTORY_CONNECT_TIMEOUT",
        "5",
        "Seconds to wait for a TCP connection to the AWS endpoint, per attempt.",
    ),
    Setting(
        "EC2_INVENTORY_PAGE_SIZE",
        "1000",
        f"`MaxResults` per `describe_instances` page ({MIN_PAGE_SIZE}-{MAX_PAGE_SIZE}); "
        "every page is read.",
    ),
    Setting(
        "EC2_INVENTORY_HOSTNAME_TAG",
        "Name",
        "Tag whose value is the host name; instances without it are named by instance id.",
    ),
    Setting(
        "EC2_INVENTORY_DUPLICATE_NAMES",
        "suffix",
        "When instances share a name (Auto Scaling groups): `suffix` appends `-<end of "
        "instance id>` to each of them, `always` appends it to every host, `error` stops.",
    ),
    Setting(
        "EC2_INVENTORY_NAME_SUFFIX_LENGTH",
        "8",
        f"Characters of the instance id used as that suffix (1-{MAX_SUFFIX_LENGTH}); "
        "lengthened automatically if two suffixes would still collide.",
    ),
    Setting(
        "EC2_INVENTORY_HOSTNAME_PREFERENCE",
        "private-ip",
        "Comma-separated order of addresses for `ssh_hostname`, first available wins: "
        f"{', '.join(ADDRESS_KINDS)}, `tag:<Key>`. An instance with none of them is an error.",
    ),
    Setting(
        "EC2_INVENTORY_SSH_USER",
        "admin",
        "`ssh_user` for hosts without the user tag (`admin` on Debian images).",
    ),
    Setting(
        "EC2_INVENTORY_SSH_USER_TAG",
        "SshUser",
        "Tag whose value, when present on an instance, is its `ssh_user`. Empty: never read.",
    ),
    Setting(
        "EC2_INVENTORY_BASTION",
        "",
        "`[user@]host[:port]` of an SSH bastion; hosts get a generated `ssh_config_file` with "
        "`ProxyJump` (user defaults to `EC2_INVENTORY_SSH_USER`, port to 22).",
    ),
    Setting(
        "EC2_INVENTORY_BASTION_KEY",
        "",
        "Private key file for the bastion hop (pyinfra's `ssh_key` only applies to the target). "
        "Unset: SSH agent and default keys.",
    ),
    Setting(
        "EC2_INVENTORY_KEYED_GROUPS",
        "env=tag:Environment,az=availability-zone,region=region",
        "Comma-separated `prefix=source` groups named `<prefix>_<value>` (characters other than "
        "letters, digits and `_` become `_`); sources: `tag:<Key>`, "
        f"{', '.join(PLACEMENT_SOURCES)}.",
    ),
    Setting(
        "EC2_INVENTORY_ALLOW_EMPTY",
        "false",
        "`true`: zero matching proxies is a warning, not an error.",
    ),
    Setting(
        "EC2_INVENTORY_CACHE_TTL",
        "0",
        "Seconds to reuse the last query result for the same settings; 0 turns the cache off. "
        "Ignored (off) when `CI=true`.",
    ),
    Setting(
        "CI",
        "",
        "When `true` (GitLab CI and most CI systems set it), the cache is off whatever the TTL.",
    ),
    Setting(
        "EC2_INVENTORY_CACHE_DIR",
        "",
        "Where the cache and the generated bastion `ssh_config` files are written (mode 0700).",
        default_doc="`$XDG_CACHE_HOME/pyinfra-ec2-inventory` (`~/.cache/...`)",
    ),
)

_BY_NAME: dict[str, Setting] = {setting.env: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Ec2Filter:
    """One EC2 API filter: instances match when the field equals any of the values."""

    name: str
    values: tuple[str, ...]

    def to_api(self) -> dict[str, object]:
        """The filter as boto3's `Filters=[...]` expects it."""
        return {"Name": self.name, "Values": list(self.values)}


@dataclass(frozen=True)
class Bastion:
    """The SSH jump host every connection goes through."""

    user: str
    host: str
    port: int

    @property
    def jump_spec(self) -> str:
        """`user@host:port`, the form ssh_config's ProxyJump takes."""
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class KeyedGroup:
    """Hosts grouped by one attribute: group `<prefix>_<value>`."""

    prefix: str
    source: str  # "tag:<Key>" or one of PLACEMENT_SOURCES


@dataclass(frozen=True)
class InventorySettings:
    """Every inventory setting, validated and typed. Build it with `from_environ`."""

    regions: tuple[str, ...]
    proxy_tags: tuple[Ec2Filter, ...]
    backend_tags: tuple[Ec2Filter, ...] | None
    backends_as_hosts: bool
    environment: str | None
    states: tuple[str, ...]
    extra_filters: tuple[Ec2Filter, ...]
    exclude_filters: tuple[Ec2Filter, ...]
    profile: str | None
    role_arn: str | None
    role_session_name: str
    endpoint_url: str | None
    retry_mode: str
    max_attempts: int
    connect_timeout: float
    page_size: int
    hostname_tag: str
    duplicate_names: str
    name_suffix_length: int
    hostname_preference: tuple[str, ...]
    ssh_user: str
    ssh_user_tag: str | None
    bastion: Bastion | None
    bastion_key: str | None
    keyed_groups: tuple[KeyedGroup, ...]
    allow_empty: bool
    cache_ttl: int
    cache_dir: Path

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> InventorySettings:
        """Read and validate every setting; raise `InventoryError` on the first bad one."""
        env = os.environ if environ is None else environ
        reject_unknown_variables(env)
        ssh_user = _require_word(env, "EC2_INVENTORY_SSH_USER")
        environment = env.get("ENVIRONMENT", "").strip() or None
        proxy_tags = _tag_filters(env, "EC2_INVENTORY_TAGS", environment)
        if not proxy_tags:
            raise InventoryError(
                "EC2_INVENTORY_TAGS is empty: every instance would become a proxy; "
                "give at least one tag filter, e.g. Role=reverse-proxy"
            )
        backend_tags = _tag_filters(env, "EC2_INVENTORY_BACKEND_TAGS", environment)
        backends_as_hosts = _boolean(env, "EC2_INVENTORY_BACKENDS_AS_HOSTS")
        if backends_as_hosts and not backend_tags:
            raise InventoryError(
                "EC2_INVENTORY_BACKENDS_AS_HOSTS=true but EC2_INVENTORY_BACKEND_TAGS is empty, "
                "so there are no backends to make hosts; give backend tags (e.g. Role=app) or "
                "set EC2_INVENTORY_BACKENDS_AS_HOSTS=false"
            )
        return cls(
            regions=parse_regions(env),
            proxy_tags=proxy_tags,
            backend_tags=backend_tags or None,
            backends_as_hosts=backends_as_hosts,
            environment=environment,
            states=_choices(env, "EC2_INVENTORY_STATES", EC2_STATES, minimum=1),
            extra_filters=_ec2_filters(env, "EC2_INVENTORY_FILTERS"),
            exclude_filters=_ec2_filters(env, "EC2_INVENTORY_EXCLUDE"),
            profile=(_raw(env, "EC2_INVENTORY_PROFILE") or env.get("AWS_PROFILE", "")) or None,
            role_arn=_role_arn(env),
            role_session_name=_session_name(env),
            endpoint_url=_endpoint_url(env),
            retry_mode=_one_of(env, "EC2_INVENTORY_RETRY_MODE", RETRY_MODES),
            max_attempts=_integer(env, "EC2_INVENTORY_MAX_ATTEMPTS", 1, 20),
            connect_timeout=_number(env, "EC2_INVENTORY_CONNECT_TIMEOUT", 0.1, 300.0),
            page_size=_integer(env, "EC2_INVENTORY_PAGE_SIZE", MIN_PAGE_SIZE, MAX_PAGE_SIZE),
            hostname_tag=_require_word(env, "EC2_INVENTORY_HOSTNAME_TAG"),
            duplicate_names=_one_of(env, "EC2_INVENTORY_DUPLICATE_NAMES", DUPLICATE_NAME_MODES),
            name_suffix_length=_integer(
                env, "EC2_INVENTORY_NAME_SUFFIX_LENGTH", 1, MAX_SUFFIX_LENGTH
            ),
            hostname_preference=_hostname_preference(env),
            ssh_user=ssh_user,
            ssh_user_tag=_raw(env, "EC2_INVENTORY_SSH_USER_TAG") or None,
            bastion=_bastion(env, default_user=ssh_user),
            bastion_key=_raw(env, "EC2_INVENTORY_BASTION_KEY") or None,
            keyed_groups=_keyed_groups(env),
            allow_empty=_boolean(env, "EC2_INVENTORY_ALLOW_EMPTY"),
            cache_ttl=_cache_ttl(env),
            cache_dir=_cache_dir(env),
        )

    def selection_filters(self, role_tags: tuple[Ec2Filter, ...]) -> tuple[Ec2Filter, ...]:
        """All filters of one role's query: its tags, the environment, states, extra filters."""
        environment = (Ec2Filter(ENVIRONMENT_FILTER, (self.environment,)),)
        return (
            role_tags
            + (environment if self.environment else ())
            + (Ec2Filter("instance-state-name", self.states),)
            + self.extra_filters
        )


def reject_unknown_variables(env: Mapping[str, str]) -> None:
    """Fail on EC2_INVENTORY_* variables that no setting reads (usually a typo)."""
    for name in sorted(env):
        if name.startswith(PREFIX) and name not in _BY_NAME:
            known = [setting.env for setting in SETTINGS if setting.env.startswith(PREFIX)]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise InventoryError(f"{name} is not an inventory setting{hint}")


def parse_regions(env: Mapping[str, str]) -> tuple[str, ...]:
    """EC2_INVENTORY_REGIONS, else AWS_REGION / AWS_DEFAULT_REGION, checked against botocore."""
    name = "EC2_INVENTORY_REGIONS"
    raw = _raw(env, name)
    if not raw:
        raw = env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip()
        name = "AWS_REGION/AWS_DEFAULT_REGION"
    if not raw:
        raise InventoryError(
            "no region to query: set EC2_INVENTORY_REGIONS (comma-separated) or AWS_DEFAULT_REGION"
        )
    regions = _split(raw, ",")
    if not regions:
        raise InventoryError(f"{name}={raw!r} names no region")
    known = known_regions()
    for region in regions:
        if region not in known:
            close = difflib.get_close_matches(region, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise InventoryError(
                f"{name}: {region!r} is not an AWS region{hint}; botocore knows "
                f"{len(known)} regions, e.g. eu-west-1, us-east-1 (update botocore for new ones)"
            )
    if len(set(regions)) != len(regions):
        raise InventoryError(f"{name}={raw!r} lists a region twice")
    return tuple(regions)


def parse_filter_entries(name: str, raw: str, *, tag_keys: bool) -> tuple[Ec2Filter, ...]:
    """Parse `key=value[,value];key=value` into filters (tags get the `tag:` prefix)."""
    filters: list[Ec2Filter] = []
    for entry in _split(raw, ";"):
        key, sep, values_text = entry.partition("=")
        key = key.strip()
        values = tuple(_split(values_text, ","))
        if not sep or not key or not values:
            raise InventoryError(
                f"{name}: entry {entry!r} is not `key=value[,value...]` "
                "(entries are separated by `;`)"
            )
        filter_name = f"tag:{key}" if tag_keys else key
        if any(existing.name == filter_name for existing in filters):
            raise InventoryError(f"{name}: {key!r} is given twice in {raw!r}; list its values once")
        filters.append(Ec2Filter(filter_name, values))
    return tuple(filters)


def settings_table_markdown() -> str:
    """The README table of every setting, generated from `SETTINGS`."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for setting in SETTINGS:
        lines.append(f"| `{setting.env}` | {setting.shown_default} | {setting.meaning} |")
    return "\n".join(lines) + "\n"


def _raw(env: Mapping[str, str], name: str) -> str:
    """The variable's value, or the default written in SETTINGS (stripped)."""
    return env.get(name, _BY_NAME[name].default).strip()


def _split(raw: str, separator: str) -> list[str]:
    """Split and strip, dropping empty items (so trailing separators are harmless)."""
    return [item.strip() for item in raw.split(separator) if item.strip()]


def _require_word(env: Mapping[str, str], name: str) -> str:
    """A non-empty single word (no whitespace)."""
    value = _raw(env, name)
    if not value or any(char.isspace() for char in value):
        raise InventoryError(f"{name}={value!r}: expected one non-empty word without spaces")
    return value


def _one_of(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    """One value from a fixed list."""
    value = _raw(env, name).lower()
    if value not in allowed:
        raise InventoryError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
    return value


def _choices(
    env: Mapping[str, str], name: str, allowed: tuple[str, ...], *, minimum: int
) -> tuple[str, ...]:
    """A comma-separated subset of a fixed list."""
    raw = _raw(env, name)
    values = tuple(value.lower() for value in _split(raw, ","))
    bad = [value for value in values if value not in allowed]
    if bad or len(values) < minimum:
        shown = bad[0] if bad else raw
        raise InventoryError(
            f"{name}={raw!r}: {shown!r} is not allowed; use a comma-separated list of "
            f"{', '.join(allowed)}"
        )
    return values


def _integer(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    """A whole number within [low, high]."""
    raw = _raw(env, name)
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise InventoryError(f"{name}={raw!r}: expected a whole number from {low} to {high}")
    return value


def _number(env: Mapping[str, str], name: str, low: float, high: float) -> float:
    """A number of seconds within [low, high]."""
    raw = _raw(env, name)
    try:
        value = float(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise InventoryError(f"{name}={raw!r}: expected a number of seconds from {low} to {high}")
    return value


def _boolean(env: Mapping[str, str], name: str) -> bool:
    """true/false in the usual spellings."""
    raw = _raw(env, name)
    if raw.lower() in TRUE_WORDS:
        return True
    if raw.lower() in FALSE_WORDS:
        return False
    raise InventoryError(f"{name}={raw!r}: expected true or false")


def _tag_filters(
    env: Mapping[str, str], name: str, environment: str | None
) -> tuple[Ec2Filter, ...]:
    """Tag filters, e.g. `Role=reverse-proxy;Team=edge,platform`."""
    filters = parse_filter_entries(name, _raw(env, name), tag_keys=True)
    if environment and any(f.name == ENVIRONMENT_FILTER for f in filters):
        # Two filters on one tag would silently AND or contradict each other.
        raise InventoryError(
            f"{name} filters on Environment and ENVIRONMENT={environment!r} is set too; "
            "use only one of them"
        )
    return filters


def _ec2_filters(env: Mapping[str, str], name: str) -> tuple[Ec2Filter, ...]:
    """Raw EC2 filters, e.g. `vpc-id=vpc-0abc;tag:Team=edge`."""
    return parse_filter_entries(name, _raw(env, name), tag_keys=False)


def _role_arn(env: Mapping[str, str]) -> str | None:
    """An IAM role ARN, or None."""
    raw = _raw(env, "EC2_INVENTORY_ROLE_ARN")
    if raw and not _ROLE_ARN.match(raw):
        raise InventoryError(
            f"EC2_INVENTORY_ROLE_ARN={raw!r}: expected arn:aws:iam::<12-digit account>:role/<name>"
        )
    return raw or None


def _session_name(env: Mapping[str, str]) -> str:
    """An STS role session name (2-64 characters of [A-Za-z0-9_+=,.@-])."""
    raw = _raw(env, "EC2_INVENTORY_ROLE_SESSION_NAME")
    if not _SESSION_NAME.match(raw):
        raise InventoryError(
            f"EC2_INVENTORY_ROLE_SESSION_NAME={raw!r}: expected 2-64 characters of "
            "letters, digits and _+=,.@-"
        )
    return raw


def _endpoint_url(env: Mapping[str, str]) -> str | None:
    """AWS_ENDPOINT_URL, checked here so a typo is not a botocore traceback later."""
    raw = env.get("AWS_ENDPOINT_URL", "").strip()
    if not raw:
        return None
    parsed = urlparse(raw)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InventoryError(
            f"AWS_ENDPOINT_URL={raw!r}: expected an http:// or https:// URL, "
            "e.g. http://127.0.0.1:5077"
        )
    return raw


def _hostname_preference(env: Mapping[str, str]) -> tuple[str, ...]:
    """Address kinds in order of preference."""
    name = "EC2_INVENTORY_HOSTNAME_PREFERENCE"
    raw = _raw(env, name)
    kinds = tuple(_split(raw, ","))
    for kind in kinds:
        is_tag = kind.startswith("tag:") and len(kind) > len("tag:")
        if kind not in ADDRESS_KINDS and not is_tag:
            raise InventoryError(
                f"{name}={raw!r}: {kind!r} is not allowed; use a comma-separated list of "
                f"{', '.join(ADDRESS_KINDS)}, tag:<Key>"
            )
    if not kinds:
        raise InventoryError(f"{name} is empty; list at least one of {', '.join(ADDRESS_KINDS)}")
    return kinds


def _bastion(env: Mapping[str, str], *, default_user: str) -> Bastion | None:
    """`[user@]host[:port]`, or None when unset."""
    name = "EC2_INVENTORY_BASTION"
    raw = _raw(env, name)
    if not raw:
        return None
    user, _, hostport = raw.rpartition("@")
    host, _, port_text = hostport.partition(":")
    port = int(port_text) if port_text.isdigit() else 0
    valid_port = (not port_text) or 1 <= port <= 65535
    if not _HOSTNAME.match(host) or not valid_port or any(c.isspace() for c in user):
        raise InventoryError(
            f"{name}={raw!r}: expected [user@]host[:port], e.g. admin@bastion.example.com:22 "
            "(one hop, host name or IPv4 address)"
        )
    return Bastion(user=user or default_user, host=host, port=port or 22)


def _keyed_groups(env: Mapping[str, str]) -> tuple[KeyedGroup, ...]:
    """`prefix=source` pairs."""
    name = "EC2_INVENTORY_KEYED_GROUPS"
    raw = _raw(env, name)
    groups: list[KeyedGroup] = []
    for entry in _split(raw, ","):
        prefix, _, source = (part.strip() for part in entry.partition("="))
        is_tag = source.startswith("tag:") and len(source) > len("tag:")
        if not _GROUP_PREFIX.match(prefix) or not (is_tag or source in PLACEMENT_SOURCES):
            raise InventoryError(
                f"{name}: entry {entry!r} is not `prefix=source` with a lowercase prefix and a "
                f"source among tag:<Key>, {', '.join(PLACEMENT_SOURCES)}"
            )
        if prefix in FIXED_GROUPS or any(group.prefix == prefix for group in groups):
            raise InventoryError(
                f"{name}: entry {entry!r}: prefix {prefix!r} is used twice or is a fixed group"
            )
        groups.append(KeyedGroup(prefix=prefix, source=source))
    return tuple(groups)


def _cache_ttl(env: Mapping[str, str]) -> int:
    """Cache lifetime in seconds; forced to 0 in CI, where every run must see AWS as it is."""
    ttl = _integer(env, "EC2_INVENTORY_CACHE_TTL", 0, 7 * 24 * 3600)
    return 0 if env.get("CI", "").strip().lower() in TRUE_WORDS else ttl


def _cache_dir(env: Mapping[str, str]) -> Path:
    """The cache directory (not created here)."""
    raw = _raw(env, "EC2_INVENTORY_CACHE_DIR")
    if raw:
        return Path(raw).expanduser()
    base = env.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "pyinfra-ec2-inventory"
