"""From EC2 instances to pyinfra hosts: names, SSH addresses, groups and host data.

Pure functions, no AWS calls. Owns: unique readable host names (the Name tag, suffixed with the
end of the instance id when names repeat, as in Auto Scaling groups), `ssh_hostname` by
preference, `ssh_user`, the groups (`proxies`, keyed groups, and `backends` only with
EC2_INVENTORY_BACKENDS_AS_HOSTS), the `ec2_*` host data, each proxy's `ec2_backend_addresses`
(the private IPv4 addresses of the backends of its region), and the ssh_config text that routes
connections through a bastion.
Leaves alone: querying AWS (`ec2`), caching (`cache`), printing (`cli`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ec2 import BACKEND_ROLE, PROXY_ROLE, Ec2Instance
from .errors import InventoryError
from .known_hosts import bastion_options
from .settings import BACKEND_GROUP, PROXY_GROUP, Ec2Filter, InventorySettings, KeyedGroup

ROLE_GROUPS = {PROXY_ROLE: PROXY_GROUP, BACKEND_ROLE: BACKEND_GROUP}
# Names pyinfra itself gives groups: `all`, and the inventory file's stem (`aws`).
PYINFRA_GROUPS = frozenset({"all", "aws"})

# A host name starting with "@" would select a pyinfra connector (@local, @docker...), and
# shell-unfriendly characters make `--limit` awkward: keep names to this alphabet.
_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_NOT_GROUP_CHARS = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class InventoryHost:
    """One pyinfra host: its name, the groups it is in and its host data."""

    name: str
    groups: tuple[str, ...]
    data: Mapping[str, Any]

    @property
    def ssh_hostname(self) -> str:
        """The address pyinfra connects to."""
        return str(self.data["ssh_hostname"])

    def to_json(self) -> dict[str, Any]:
        """The `--json` listing entry (docs/CONTRACTS.md)."""
        return {
            "name": self.name,
            "ssh_hostname": self.ssh_hostname,
            "groups": list(self.groups),
            "data": dict(self.data),
        }


@dataclass(frozen=True)
class SshConfigFile:
    """An ssh_config file the hosts need on disk (bastion routing)."""

    path: Path
    text: str


@dataclass(frozen=True)
class Backend:
    """A backend instance as the proxies see it; a pyinfra host only with BACKENDS_AS_HOSTS."""

    name: str  # named like a host, so it keeps its name if it becomes one
    instance_id: str
    region: str
    private_ip: str | None  # what nginx on a proxy connects to, inside the VPC
    vpc_id: str | None


@dataclass(frozen=True)
class Ec2Inventory:
    """The hosts to target, sorted by name, plus anything a person should be told.

    `backends` lists every backend found, sorted by name, whether or not they are hosts.
    """

    hosts: tuple[InventoryHost, ...]
    warnings: tuple[str, ...] = ()
    ssh_config: SshConfigFile | None = None
    backends: tuple[Backend, ...] = ()
    backends_as_hosts: bool = False

    def pyinfra_groups(self) -> dict[str, list[Any]]:
        """Groups as a pyinfra inventory file defines them: name -> [(host, data) or host].

        Host data goes with the host's role group only; pyinfra merges data across groups, so
        repeating it in the keyed groups would only cost time. `backends` is a group only when
        the backends are hosts: otherwise `--limit backends` would silently select nothing.
        """
        groups: dict[str, list[Any]] = {PROXY_GROUP: []}
        if self.backends_as_hosts:
            groups[BACKEND_GROUP] = []
        for host in self.hosts:
            for group in host.groups:
                entry = (host.name, dict(host.data)) if group in ROLE_GROUPS.values() else host.name
                groups.setdefault(group, []).append(entry)
        return groups


def build_inventory(instances: Sequence[Ec2Instance], settings: InventorySettings) -> Ec2Inventory:
    """Name, address and group every target; give each proxy the addresses of its backends.

    The hosts are the proxies, plus the backends with EC2_INVENTORY_BACKENDS_AS_HOSTS. Raises
    `InventoryError` on what can't be used.
    """
    instances = _unique_by_id(instances)
    _reject_role_overlap(instances)
    warnings = list(_check_counts(instances, settings))
    # Named together, so a host's name does not depend on EC2_INVENTORY_BACKENDS_AS_HOSTS.
    names = assign_names(instances, settings)
    backends = sorted(
        (
            Backend(
                name=names[instance.instance_id],
                instance_id=instance.instance_id,
                region=instance.region,
                private_ip=instance.private_ip,
                vpc_id=instance.vpc_id,
            )
            for instance in instances
            if instance.role == BACKEND_ROLE
        ),
        key=lambda backend: backend.name,
    )
    proxies = [instance for instance in instances if instance.role == PROXY_ROLE]
    warnings += _backend_warnings(proxies, backends, settings)
    addresses = backend_addresses_by_region(backends)
    targets = instances if settings.backends_as_hosts else proxies
    hosts = [_make_host(instance, names[instance.instance_id], settings) for instance in targets]
    hosts = [
        # A list of its own per host: pyinfra hands host data to deploy code as is.
        _with_data(host, ec2_backend_addresses=list(addresses.get(host.data["ec2_region"], ())))
        if host.data["ec2_role"] == PROXY_ROLE
        else host
        for host in hosts
    ]
    ssh_config = None
    if settings.bastion is not None:
        ssh_config = bastion_ssh_config(hosts, settings)
        hosts = [_with_data(host, ssh_config_file=str(ssh_config.path)) for host in hosts]
    hosts.sort(key=lambda host: host.name)
    _reject_name_group_clashes(hosts)
    return Ec2Inventory(
        hosts=tuple(hosts),
        warnings=tuple(warnings),
        ssh_config=ssh_config,
        backends=tuple(backends),
        backends_as_hosts=settings.backends_as_hosts,
    )


def backend_addresses_by_region(backends: Iterable[Backend]) -> dict[str, tuple[str, ...]]:
    """Region -> private IPv4 addresses of its backends, in backend-name order, each once.

    A proxy gets the backends of its own region only: a private address is reachable inside its
    VPC (or a peered one), never from another region's VPC without routing set up for it.
    Backends without a private address are left out (`_backend_warnings` says so).
    """
    by_region: dict[str, dict[str, None]] = defaultdict(dict)
    for backend in sorted(backends, key=lambda backend: backend.name):
        if backend.private_ip:
            by_region[backend.region].setdefault(backend.private_ip)
    return {region: tuple(addresses) for region, addresses in by_region.items()}


def assign_names(instances: Sequence[Ec2Instance], settings: InventorySettings) -> dict[str, str]:
    """Map instance id -> unique host name (see EC2_INVENTORY_DUPLICATE_NAMES)."""
    base = {i.instance_id: base_name(i, settings.hostname_tag) for i in instances}
    counts = Counter(base.values())
    if settings.duplicate_names == "error":
        for name, count in counts.items():
            if count > 1:
                ids = sorted(i for i, n in base.items() if n == name)
                raise InventoryError(
                    f"{count} instances are named {name!r} ({', '.join(ids[:5])}); "
                    "set EC2_INVENTORY_DUPLICATE_NAMES=suffix or fix their "
                    f"{settings.hostname_tag} tags"
                )
    to_suffix = {
        instance_id
        for instance_id, name in base.items()
        # An instance named by its id is unique already.
        if name != instance_id and (settings.duplicate_names == "always" or counts[name] > 1)
    }
    names = dict(base)
    names.update(_suffixed_names(base, to_suffix, settings.name_suffix_length))
    _reject_duplicate_names(names)
    return names


def base_name(instance: Ec2Instance, hostname_tag: str) -> str:
    """The host name before de-duplication: the tag, cleaned, or else the instance id."""
    cleaned = _NOT_NAME_CHARS.sub("-", instance.tags.get(hostname_tag, "")).strip("-.")
    return cleaned or instance.instance_id


def pick_address(instance: Ec2Instance, preference: Sequence[str]) -> str | None:
    """The first available address among the preferred kinds."""
    for kind in preference:
        if kind.startswith("tag:"):
            value = instance.tags.get(kind.removeprefix("tag:"), "").strip() or None
        else:
            value = {
                "private-ip": instance.private_ip,
                "public-ip": instance.public_ip,
                "private-dns": instance.private_dns,
                "public-dns": instance.public_dns,
            }[kind]
        if value:
            return value
    return None


def keyed_group_names(instance: Ec2Instance, keyed_groups: Iterable[KeyedGroup]) -> list[str]:
    """`<prefix>_<value>` for each keyed group the instance has a value for."""
    names = []
    for group in keyed_groups:
        value = _group_source_value(instance, group.source)
        if value:
            names.append(f"{group.prefix}_{_NOT_GROUP_CHARS.sub('_', value)}")
    return names


def host_data(instance: Ec2Instance, ssh_hostname: str, ssh_user: str) -> dict[str, Any]:
    """SSH settings and the `ec2_*` facts tasks and group_data may use (docs/CONTRACTS.md)."""
    return {
        "ssh_hostname": ssh_hostname,
        "ssh_user": ssh_user,
        "ec2_instance_id": instance.instance_id,
        "ec2_role": instance.role,
        "ec2_region": instance.region,
        "ec2_availability_zone": instance.availability_zone,
        "ec2_private_ip": instance.private_ip,
        "ec2_public_ip": instance.public_ip,
        "ec2_private_dns": instance.private_dns,
        "ec2_public_dns": instance.public_dns,
        "ec2_instance_type": instance.instance_type,
        "ec2_launch_time": instance.launch_time,
        "ec2_state": instance.state,
        "ec2_vpc_id": instance.vpc_id,
        "ec2_subnet_id": instance.subnet_id,
        "ec2_image_id": instance.image_id,
        "ec2_tags": dict(instance.tags),
    }


def bastion_ssh_config(
    hosts: Sequence[InventoryHost], settings: InventorySettings
) -> SshConfigFile:
    """An ssh_config that sends every host through the bastion with ProxyJump.

    pyinfra 3.10 has no ProxyJump host-data key; its SSH connector honours ProxyJump only from
    an ssh_config file (`ssh_config_file`), hopping with paramiko. The bastion's own block comes
    first and does not match the targets, so the hop never jumps through itself; the user's
    ~/.ssh/config is included last so its other settings still apply.
    """
    bastion = settings.bastion
    assert bastion is not None
    addresses = sorted({host.ssh_hostname for host in hosts})
    if bastion.host in addresses:
        raise InventoryError(
            f"EC2_INVENTORY_BASTION host {bastion.host!r} is also a target address; "
            "the bastion cannot jump through itself"
        )
    lines = [
        "# Written by the EC2 inventory for EC2_INVENTORY_BASTION; safe to delete.",
        f"Host {bastion.host}",
        f"    User {bastion.user}",
        f"    Port {bastion.port}",
        # The hop's key is checked like the targets' (pyinfra applies its own host data to the
        # targets only): strictly, against DEPLOY_SSH_KNOWN_HOSTS (inventories/known_hosts.py).
        *bastion_options(os.environ),
    ]
    if settings.bastion_key:
        lines.append(f"    IdentityFile {settings.bastion_key}")
    if addresses:
        lines += [f"Host {' '.join(addresses)}", f"    ProxyJump {bastion.jump_spec}"]
    lines += ["Host *", "Include ~/.ssh/config", ""]
    text = "\n".join(lines)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return SshConfigFile(path=settings.cache_dir / f"ssh_config-{digest}", text=text)


def _make_host(instance: Ec2Instance, name: str, settings: InventorySettings) -> InventoryHost:
    """One host from one instance."""
    address = pick_address(instance, settings.hostname_preference)
    if address is None:
        raise InventoryError(
            f"instance {instance.instance_id} ({name}, {instance.region}) has no address among "
            f"EC2_INVENTORY_HOSTNAME_PREFERENCE={','.join(settings.hostname_preference)}"
        )
    user_from_tag = instance.tags.get(settings.ssh_user_tag, "") if settings.ssh_user_tag else ""
    groups = [ROLE_GROUPS[instance.role], *keyed_group_names(instance, settings.keyed_groups)]
    return InventoryHost(
        name=name,
        groups=tuple(dict.fromkeys(groups)),
        data=host_data(instance, address, user_from_tag.strip() or settings.ssh_user),
    )


def _with_data(host: InventoryHost, **extra: Any) -> InventoryHost:
    """The same host with more host data."""
    return InventoryHost(name=host.name, groups=host.groups, data={**host.data, **extra})


def _suffixed_names(base: Mapping[str, str], to_suffix: set[str], length: int) -> dict[str, str]:
    """`<name>-<last characters of the id>`, lengthened where two would still collide."""
    names: dict[str, str] = {}
    pending = set(to_suffix)
    while pending:
        trial = {i: f"{base[i]}-{i.removeprefix('i-')[-length:]}" for i in pending}
        counts = Counter(trial.values())
        done = {i for i, name in trial.items() if counts[name] == 1}
        names.update({i: trial[i] for i in done})
        pending -= done
        if length >= max((len(i.removeprefix("i-")) for i in pending), default=0):
            # Whole ids are unique, so this only happens for identical ids (impossible).
            names.update({i: trial[i] for i in pending})
            break
        length += 1
    return names


def _reject_duplicate_names(names: Mapping[str, str]) -> None:
    """Fail if two instances still share a name (a suffixed name equal to a literal Name)."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for instance_id, name in names.items():
        by_name[name].append(instance_id)
    for name, ids in by_name.items():
        if len(ids) > 1:
            raise InventoryError(
                f"host name {name!r} is used by {', '.join(sorted(ids))} even after "
                "de-duplication; rename one of them (its Name tag)"
            )


def _reject_name_group_clashes(hosts: Sequence[InventoryHost]) -> None:
    """`--limit X` picks group X before host X: a host may not be named like a group."""
    groups = {group for host in hosts for group in host.groups}
    groups |= PYINFRA_GROUPS | set(ROLE_GROUPS.values())
    for host in hosts:
        if host.name in groups:
            raise InventoryError(
                f"host name {host.name!r} ({host.data['ec2_instance_id']}) is also a group "
                "name, so `--limit` could not select it; rename the instance"
            )


def _reject_role_overlap(instances: Sequence[Ec2Instance]) -> None:
    """An instance found as proxy and as backend would get nginx on an app server."""
    roles: dict[str, set[str]] = defaultdict(set)
    for instance in instances:
        roles[instance.instance_id].add(instance.role)
    for instance_id, found_as in roles.items():
        if len(found_as) > 1:
            raise InventoryError(
                f"instance {instance_id} matches both EC2_INVENTORY_TAGS (proxies) and "
                "EC2_INVENTORY_BACKEND_TAGS (backends); make the tag filters exclusive"
            )


def _check_counts(instances: Sequence[Ec2Instance], settings: InventorySettings) -> list[str]:
    """Zero proxies is an error unless allowed (then a warning)."""
    if any(instance.role == PROXY_ROLE for instance in instances):
        return []
    message = _nothing_matches("proxy", settings.proxy_tags, settings)
    if not settings.allow_empty:
        raise InventoryError(
            f"{message}; check ENVIRONMENT, EC2_INVENTORY_TAGS, EC2_INVENTORY_REGIONS, "
            "or set EC2_INVENTORY_ALLOW_EMPTY=true"
        )
    return [message]


def _backend_warnings(
    proxies: Sequence[Ec2Instance], backends: Sequence[Backend], settings: InventorySettings
) -> list[str]:
    """What leaves proxies with fewer backend addresses than a person may expect.

    None of it is an error: the deploy can take its backends from `upstream_servers` instead,
    and stops with a clear message when it has neither.
    """
    if settings.backend_tags is None:
        return []  # no backends query: the deploy's upstream_servers says where to go
    if not backends:
        empty = "; group `backends` is empty" if settings.backends_as_hosts else ""
        return [
            f"{_nothing_matches('backend', settings.backend_tags, settings)}: every proxy gets "
            f"an empty ec2_backend_addresses (the deploy then needs upstream_servers){empty}"
        ]
    warnings = [
        f"backend {backend.name} ({backend.instance_id}, {backend.region}) has no private IPv4 "
        "address; it is left out of the proxies' ec2_backend_addresses"
        for backend in backends
        if not backend.private_ip
    ]
    for region in settings.regions:
        regional = [proxy for proxy in proxies if proxy.region == region]
        reachable = [b for b in backends if b.region == region and b.private_ip]
        if regional and not reachable:
            warnings.append(
                f"no backend with a private IPv4 address in {region}: its {len(regional)} "
                "proxies get an empty ec2_backend_addresses (a proxy gets the backends of its "
                "own region only)"
            )
        vpcs = sorted({i.vpc_id for i in [*regional, *reachable] if i.vpc_id})
        if regional and reachable and len(vpcs) > 1:
            warnings.append(
                f"the proxies and backends in {region} are in {len(vpcs)} VPCs "
                f"({', '.join(vpcs)}): each proxy gets every backend of the region, reachable "
                "only through peering; narrow with EC2_INVENTORY_FILTERS=vpc-id=<id>"
            )
    return warnings


def _nothing_matches(role: str, tags: Sequence[Ec2Filter], settings: InventorySettings) -> str:
    """`no running EC2 instances match the <role> filters (...) in <regions>`."""
    shown = ";".join(f"{f.name}={','.join(f.values)}" for f in tags)
    environment = f" Environment={settings.environment}" if settings.environment else ""
    return (
        f"no {'/'.join(settings.states)} EC2 instances match the {role} filters "
        f"({shown or 'no tags'}{environment}) in {', '.join(settings.regions)}"
    )


def _unique_by_id(instances: Sequence[Ec2Instance]) -> list[Ec2Instance]:
    """Drop repeats of the same (instance, role), e.g. an instance moving between pages."""
    seen: dict[tuple[str, str], Ec2Instance] = {}
    for instance in instances:
        seen.setdefault((instance.instance_id, instance.role), instance)
    return list(seen.values())


def _group_source_value(instance: Ec2Instance, source: str) -> str | None:
    """The instance's value for a keyed-group source."""
    if source.startswith("tag:"):
        return instance.tags.get(source.removeprefix("tag:")) or None
    return {
        "availability-zone": instance.availability_zone,
        "region": instance.region,
        "instance-type": instance.instance_type,
        "vpc-id": instance.vpc_id,
        "subnet-id": instance.subnet_id,
    }[source] or None
