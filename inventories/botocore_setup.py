"""How the inventory sets botocore up: what it loads once, and how it parses timestamps.

Owns: the botocore data loader shared by every session of the process (service models and
endpoint data are parsed once, not once per session), the session factory that uses it, the
regions botocore knows (read from its endpoint data alone), and the timestamp parser given to
botocore's response parsers.
Leaves alone: credentials, clients and queries (`ec2`), validating settings (`settings`).

Measured on the 2-core project machine, 1,000 instances (docs/inventory.md, Performance):
botocore parses each timestamp of a DescribeInstances answer with dateutil, 33 us each, and an
instance has three (launch, volume and network interface attachment); the standard library's
ISO 8601 parser takes 0.2 us: 0.13 s less CPU for the whole process. Listing the regions through
`Session.get_available_regions` made a second session load and parse the whole EC2 model and the
endpoint data again: 0.17 s more CPU.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from botocore.loaders import Loader, create_loader
from botocore.regions import EndpointResolver
from botocore.session import Session as BotocoreSession
from botocore.utils import parse_timestamp as botocore_parse_timestamp

EC2_ENDPOINT_PREFIX = "ec2"  # EC2's endpoint prefix is its service name


@functools.cache
def shared_data_loader() -> Loader:
    """botocore's data files (service models, endpoints), parsed once per process.

    Every new botocore session would otherwise re-read and parse the EC2 model (about 0.07 s of
    CPU). The loader keeps what it loaded; clearing this cache gives the next session a fresh
    one, as a new process has.
    """
    return create_loader()


def new_botocore_session(profile: str | None = None) -> BotocoreSession:
    """A botocore session (boto3's default credential chain) sharing the parsed data files,
    whose clients parse timestamps with `parse_timestamp`."""
    session = BotocoreSession(profile=profile)
    session.register_component("data_loader", shared_data_loader())
    # botocore's documented hook for this (the AWS CLI uses it to keep timestamps as text).
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )
    return session


def parse_timestamp(value: Any) -> datetime:
    """A timestamp of an AWS response as an aware datetime, like botocore's own parser returns.

    AWS's XML timestamps are ISO 8601 with a zone (`2025-01-01T10:30:00.000Z`), which the
    standard library parses over a hundred times faster than dateutil, botocore's parser.
    Anything else (epoch seconds, a zoneless or unusual text) goes to botocore's parser.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    return botocore_parse_timestamp(value)


@functools.cache
def known_regions() -> frozenset[str]:
    """Every EC2 region in botocore's endpoint data, across all partitions.

    What `Session.get_available_regions("ec2", partition)` answers, without loading the EC2
    model to look up its endpoint prefix. The endpoint data is the shared loader's, so the
    client created afterwards does not parse it again.
    """
    resolver = EndpointResolver(shared_data_loader().load_data("endpoints"))
    return frozenset(
        region
        for partition in resolver.get_available_partitions()
        for region in resolver.get_available_endpoints(EC2_ENDPOINT_PREFIX, partition)
    )
