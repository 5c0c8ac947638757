"""The AWS side of the inventory: find the proxy and backend instances with botocore.

Owns: credentials (default chain, named profile, assumed role), one botocore client per region
with the configured retry mode, paginated `describe_instances` per region in a thread pool, and
the translation of every expected AWS failure (no credentials, access denied, unknown profile,
unreachable endpoint, invalid filter) into one `InventoryError` line that names the cause.
Leaves alone: host names, groups and host data (`hosts`), caching (`cache`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from botocore.session import Session as BotocoreSession

from .botocore_setup import new_botocore_session
from .errors import InventoryError
from .settings import Ec2Filter, InventorySettings

PROXY_ROLE = "proxy"
BACKEND_ROLE = "backend"

# Regions are I/O bound; more threads than this only adds throttling.
MAX_REGION_WORKERS = 16
READ_TIMEOUT_SECONDS = 60  # a 1,000-instance page can take a while to serialise
USER_AGENT = "pyinfra-ec2-inventory"

_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "RequestExpired",
        "OptInRequired",
    }
)
_THROTTLED_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})
_UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)


@dataclass(frozen=True)
class Ec2Instance:
    """The facts about one instance that the inventory uses, independent of boto3's shapes."""

    instance_id: str
    role: str  # PROXY_ROLE or BACKEND_ROLE: which query found it
    region: str
    availability_zone: str
    state: str
    instance_type: str
    launch_time: str  # ISO 8601, UTC
    private_ip: str | None
    public_ip: str | None
    private_dns: str | None
    public_dns: str | None
    vpc_id: str | None
    subnet_id: str | None
    image_id: str | None
    tags: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the cache stores instances this way)."""
        return {**dataclasses.asdict(self), "tags": dict(self.tags)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Ec2Instance:
        """The inverse of `to_json`."""
        return cls(**{**data, "tags": dict(data["tags"])})


@dataclass(frozen=True)
class QueryPlan:
    """The describe_instances calls to make in each region."""

    roles: tuple[tuple[str, tuple[Ec2Filter, ...]], ...]  # (role, filters) per role
    exclusions: tuple[tuple[Ec2Filter, ...], ...]  # instances matching any are dropped

    def cache_key_material(self) -> list[Any]:
        """A JSON-ready description of the plan, for the cache key."""
        return [
            [[role, [f.to_api() for f in filters]] for role, filters in self.roles],
            [[f.to_api() for f in filters] for filters in self.exclusions],
        ]


def plan_queries(settings: InventorySettings) -> QueryPlan:
    """Turn the settings into the filters of each query (same plan in every region)."""
    roles = [(PROXY_ROLE, settings.selection_filters(settings.proxy_tags))]
    if settings.backend_tags is not None:
        roles.append((BACKEND_ROLE, settings.selection_filters(settings.backend_tags)))
    states = Ec2Filter("instance-state-name", settings.states)
    # One query per exclude entry, narrowed by state: EC2 has no negative filters.
    exclusions = tuple((states, exclude) for exclude in settings.exclude_filters)
    return QueryPlan(roles=tuple(roles), exclusions=exclusions)


def fetch_instances(settings: InventorySettings, plan: QueryPlan) -> list[Ec2Instance]:
    """Query every region concurrently; instances in region order, then query order.

    Raises `InventoryError` for credentials, permissions, endpoint and filter problems, naming
    the first failing region.
    """
    session = open_session(settings)
    botocore_config = make_botocore_config(settings)
    # Sessions are not thread-safe but clients are: create one client per region here, then
    # hand each to the single worker thread that queries that region.
    clients = {
        region: session.create_client("ec2", region_name=region, config=botocore_config)
        for region in settings.regions
    }
    workers = min(len(clients), MAX_REGION_WORKERS)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ec2-inventory") as pool:
        futures = [
            pool.submit(fetch_region, client, region, plan, settings)
            for region, client in clients.items()
        ]
        results = [future.result() for future in futures]
    return [instance for region_instances in results for instance in region_instances]


def open_session(settings: InventorySettings) -> BotocoreSession:
    """A session with resolved credentials (profile, default chain, assumed role)."""
    session = new_botocore_session(settings.profile)
    try:
        credentials = session.get_credentials()
    except ProfileNotFound as error:
        raise InventoryError(
            f"AWS profile {settings.profile!r} (EC2_INVENTORY_PROFILE or AWS_PROFILE) is not in "
            "~/.aws/config or ~/.aws/credentials"
        ) from error
    except (BotoCoreError, ClientError) as error:
        raise explain_error(error, "credential lookup", settings.regions[0], settings) from error
    if credentials is None:
        raise InventoryError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "EC2_INVENTORY_PROFILE or AWS_PROFILE, or run where an instance or task role is "
            "available"
        )
    if settings.role_arn:
        return assume_role(session, settings)
    return session


def assume_role(session: BotocoreSession, settings: InventorySettings) -> BotocoreSession:
    """A session holding temporary credentials of EC2_INVENTORY_ROLE_ARN."""
    sts = session.create_client(
        "sts", region_name=settings.regions[0], config=make_botocore_config(settings)
    )
    try:
        response = sts.assume_role(
            RoleArn=settings.role_arn, RoleSessionName=settings.role_session_name
        )
    except (ClientError, BotoCoreError) as error:
        raise explain_error(error, "sts:AssumeRole", settings.regions[0], settings) from error
    credentials = response["Credentials"]
    assumed = new_botocore_session()
    assumed.set_credentials(
        credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]
    )
    return assumed


def make_botocore_config(settings: InventorySettings) -> Config:
    """Retries (standard or adaptive), timeouts and a user agent for CloudTrail."""
    return Config(
        retries={"mode": settings.retry_mode, "max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout,
        read_timeout=READ_TIMEOUT_SECONDS,
        user_agent_extra=USER_AGENT,
    )


def fetch_region(
    client: Any, region: str, plan: QueryPlan, settings: InventorySettings
) -> list[Ec2Instance]:
    """All instances of one region: each role's query minus the excluded ones."""
    try:
        excluded = {
            raw["InstanceId"]
            for filters in plan.exclusions
            for raw in describe_instances(client, filters, settings.page_size)
        }
        return [
            instance_from_api(raw, role=role, region=region)
            for role, filters in plan.roles
            for raw in describe_instances(client, filters, settings.page_size)
            if raw["InstanceId"] not in excluded
        ]
    except (ClientError, BotoCoreError) as error:
        raise explain_error(error, "ec2:DescribeInstances", region, settings) from error


def describe_instances(
    client: Any, filters: tuple[Ec2Filter, ...], page_size: int
) -> Iterator[dict[str, Any]]:
    """Every instance matching the filters, reading all pages."""
    paginator = client.get_paginator("describe_instances")
    pages = paginator.paginate(
        Filters=[f.to_api() for f in filters], PaginationConfig={"PageSize": page_size}
    )
    for page in pages:
        for reservation in page.get("Reservations", []):
            yield from reservation.get("Instances", [])


def instance_from_api(raw: Mapping[str, Any], *, role: str, region: str) -> Ec2Instance:
    """Convert one `describe_instances` instance; absent or empty fields become None."""
    launch_time = raw.get("LaunchTime")
    if isinstance(launch_time, datetime):
        launch_text = launch_time.astimezone(UTC).isoformat()
    else:
        launch_text = str(launch_time or "")
    return Ec2Instance(
        instance_id=raw["InstanceId"],
        role=role,
        region=region,
        availability_zone=raw.get("Placement", {}).get("AvailabilityZone", ""),
        state=raw.get("State", {}).get("Name", ""),
        instance_type=raw.get("InstanceType", ""),
        launch_time=launch_text,
        private_ip=raw.get("PrivateIpAddress") or None,
        public_ip=raw.get("PublicIpAddress") or None,
        private_dns=raw.get("PrivateDnsName") or None,
        public_dns=raw.get("PublicDnsName") or None,
        vpc_id=raw.get("VpcId") or None,
        subnet_id=raw.get("SubnetId") or None,
        image_id=raw.get("ImageId") or None,
        tags={tag["Key"]: tag.get("Value", "") for tag in raw.get("Tags", [])},
    )


def explain_error(
    error: Exception, action: str, region: str, settings: InventorySettings
) -> InventoryError:
    """One line saying what failed, where, and what to check."""
    where = f"{action} in {region}"
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", "Unknown"))
        message = str(details.get("Message", "")).strip()
        if code in _DENIED_CODES:
            hint = _denied_hint(code, action, settings)
            return InventoryError(f"access denied for {where} ({code}: {message}){hint}")
        if code in _THROTTLED_CODES:
            return InventoryError(
                f"throttled by AWS for {where} after {settings.max_attempts} attempts ({code}); "
                "raise EC2_INVENTORY_MAX_ATTEMPTS or use EC2_INVENTORY_RETRY_MODE=adaptive"
            )
        if code.startswith("InvalidParameter") or code == "InvalidFilter":
            return InventoryError(
                f"EC2 rejected the query for {where} ({code}: {message}); check "
                "EC2_INVENTORY_FILTERS, EC2_INVENTORY_EXCLUDE and the tag settings"
            )
        return InventoryError(f"AWS error for {where} ({code}: {message})")
    if isinstance(error, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
        return InventoryError(f"AWS credentials unusable for {where}: {error}")
    if isinstance(error, _UNREACHABLE):
        endpoint = settings.endpoint_url or f"the AWS endpoint of {region}"
        return InventoryError(
            f"cannot reach {endpoint} for {where} after {settings.max_attempts} attempts "
            f"({type(error).__name__}); check AWS_ENDPOINT_URL, the network and the region"
        )
    return InventoryError(f"AWS call failed for {where}: {type(error).__name__}: {error}")


def _denied_hint(code: str, action: str, settings: InventorySettings) -> str:
    """What a person should check after an access-denied answer."""
    if action.startswith("sts:"):
        return (
            f"; may these credentials assume {settings.role_arn}? (their sts:AssumeRole "
            "permission and the role's trust policy)"
        )
    if code == "OptInRequired":
        return "; enable the region for the account or remove it from EC2_INVENTORY_REGIONS"
    if code in {"ExpiredToken", "RequestExpired"}:
        return "; refresh the credentials (or check this machine's clock)"
    if code in {"AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch"}:
        return "; check the credentials, and that the region is enabled for the account"
    return "; the credentials need ec2:DescribeInstances"
