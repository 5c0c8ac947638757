"""`python -m report`: the reliability report of the proxies' JSON access logs.

    python -m report [--limit proxy-1] [--log-path PATH]
    python -m report --file proxy_access.log [--file proxy_access.log.2.gz ...]
    python -m report --s3 s3://bucket/prefix [--s3 ...]
    ... [--json] [--png success.png] [--top 10] [--bucket 5m] [--target 0.999]

With no --file or --s3, the proxies of the EC2 inventory are read over SSH (as `make report`
does; --from-hosts says so explicitly, and adds them to --file or --s3). Sources add up (don't
give the same log twice). Text by default, or one JSON object (--json);
--png draws the success rate over time. docs/report.md says what every figure means.

Defaults come from tasks/settings.py: --log-path is `access_log`, --target is
`target_success_rate` (the deploy's own defaults; a host whose group_data overrides them needs
the options).

Exit codes:
    0  the report covers every source
    2  bad usage or setting (the message names it), e.g. an unreadable DEPLOY_SSH_KEY
    4  a source could not be read: the report covers the others and lists it under NOT READ
       (no report at all when nothing could be read)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any

from .analyze import Aggregator
from .render import to_json, to_text
from .sources import (
    S3Location,
    SourceError,
    SshAuth,
    UsageError,
    file_lines,
    list_s3_keys,
    load_proxy_targets,
    parse_s3_url,
    s3_client,
    s3_endpoint,
    s3_object_lines,
    ssh_auth_from_env,
    ssh_log_lines,
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SOURCE = 4

# Added to an inventory error when nobody asked for the inventory: say how to read other logs.
NO_INVENTORY_HINT = (
    " (without --file or --s3 the report reads the proxies of the EC2 inventory: give "
    "--file PATH or --s3 s3://BUCKET/PREFIX to read logs from elsewhere)"
)

_BUCKET = re.compile(r"^(\d+)\s*([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def deploy_default(name: str) -> Any:
    """The default of a deploy setting, from its one place (tasks/settings.py)."""
    from tasks.settings import Settings

    return next(f.default for f in fields(Settings) if f.name == name)


def parse_bucket(value: str) -> int:
    """ "5m" -> 300, "1h" -> 3600, "120" -> 120; a whole number of minutes (the timeline is
    counted per minute)."""
    match = _BUCKET.match(value.strip().lower())
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else 0
    if seconds < 60 or seconds % 60:
        raise UsageError(
            f"--bucket {value!r}: expected a whole number of minutes, e.g. 1m, 5m, 1h, 1d or 300"
        )
    return seconds


def parse_target(value: str) -> float:
    try:
        target = float(value)
    except ValueError:
        target = -1.0
    if not 0 < target <= 1:
        raise UsageError(f"--target {value!r}: expected a rate above 0 and at most 1, e.g. 0.999")
    return target


@dataclass(frozen=True)
class Plan:
    """Every option, checked; built by `plan_from` before anything is read."""

    files: tuple[str, ...]
    s3: tuple[S3Location, ...]
    ssh_auth: SshAuth | None  # set when the proxies are read
    hosts_by_default: bool  # the proxies are read because no --file or --s3 was given
    log_path: str
    limit: tuple[str, ...]
    top: int
    bucket: int | None
    target: float | None
    as_json: bool
    png: Path | None


def plan_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Plan:
    # The common case is the default: the fleet's logs, where they are (as `make report`).
    by_default = not (args.file or args.s3 or args.from_hosts)
    from_hosts = args.from_hosts or by_default
    if (args.limit or args.log_path) and not from_hosts:
        raise UsageError(
            "--limit and --log-path go with --from-hosts (the default without --file or --s3)"
        )
    if args.top < 1:
        raise UsageError(f"--top {args.top}: expected 1 or more")
    if args.file and args.file.count("-") > 1:
        raise UsageError("--file -: standard input can be read once only")
    if args.png and not Path(args.png).parent.is_dir():
        raise UsageError(f"--png {args.png!r}: directory {str(Path(args.png).parent)!r} missing")
    return Plan(
        files=tuple(args.file or ()),
        s3=tuple(parse_s3_url(url) for url in args.s3 or ()),
        ssh_auth=ssh_auth_from_env(environ) if from_hosts else None,
        hosts_by_default=by_default,
        log_path=args.log_path or (deploy_default("access_log") if from_hosts else ""),
        limit=tuple(args.limit or ()),
        top=args.top,
        bucket=parse_bucket(args.bucket) if args.bucket else None,
        target=parse_target(args.target)
        if args.target
        else float(deploy_default("target_success_rate")),
        as_json=args.json,
        png=Path(args.png) if args.png else None,
    )


def _read_source(agg: Aggregator, name: str, lines: Any) -> None:
    agg.start_source(name)
    try:
        agg.read_lines(lines)
    except SourceError as e:
        agg.source_failed(str(e))


def collect(
    plan: Plan,
    environ: Mapping[str, str],
    agg: Aggregator,
    *,
    stdin: IO[bytes] | None = None,
    warn: Any = print,
) -> None:
    """Read every source into `agg`; a failing source is recorded, the others still read."""
    for path in plan.files:
        _read_source(agg, "standard input" if path == "-" else path, file_lines(path, stdin))
    if plan.s3:
        endpoint = s3_endpoint(environ)
        client = s3_client(environ)
        for location in plan.s3:
            try:
                keys = list_s3_keys(client, location, endpoint)
            except SourceError as e:
                agg.start_source(location.url)
                agg.source_failed(str(e))
                continue
            for key in keys:
                lines = s3_object_lines(client, location.bucket, key, endpoint)
                _read_source(agg, f"s3://{location.bucket}/{key}", lines)
    if plan.ssh_auth is not None:
        try:
            targets, warnings = load_proxy_targets(environ, plan.limit)
        except SourceError as e:
            agg.start_source("inventory")
            agg.source_failed(str(e) + (NO_INVENTORY_HINT if plan.hosts_by_default else ""))
            return
        for warning in warnings:
            warn(f"report: inventory warning: {warning}")
        for target in targets:
            _read_source(agg, target.name, ssh_log_lines(target, plan.ssh_auth, plan.log_path))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m report",
        description="Reliability report from the proxies' JSON access logs: success rate "
        "through the proxy and of the backend alone, retries, failing routes, blocked requests.",
        epilog="Exit codes: 0 ok, 2 bad usage, 4 a source could not be read (the report covers "
        "the others). Meaning of every figure: docs/report.md.",
    )
    src = parser.add_argument_group(
        "sources (they add up; without --file or --s3: the proxies of the EC2 inventory)"
    )
    src.add_argument(
        "--file", action="append", metavar="PATH", help="a log file, plain or gzip; - for stdin"
    )
    src.add_argument(
        "--from-hosts",
        action="store_true",
        help="the proxies of the EC2 inventory (EC2_INVENTORY_*) over SSH (DEPLOY_SSH_KEY, "
        "DEPLOY_SSH_KNOWN_HOSTS); the default without --file or --s3",
    )
    src.add_argument(
        "--s3", action="append", metavar="S3_URL", help="every object under s3://BUCKET/PREFIX"
    )
    src.add_argument(
        "--limit", action="append", metavar="HOST", help="with --from-hosts: only this proxy"
    )
    src.add_argument(
        "--log-path",
        metavar="PATH",
        help="with --from-hosts: the log on the proxies (default: the access_log setting)",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="one JSON object instead of text")
    out.add_argument("--png", metavar="FILE", help="also draw the success rate over time")
    out.add_argument(
        "--top", type=int, default=10, metavar="N", help="rows of the top lists (default 10)"
    )
    out.add_argument(
        "--bucket", metavar="SPAN", help="timeline bucket: 1m, 5m, 1h... (default: adaptive)"
    )
    out.add_argument(
        "--target",
        metavar="RATE",
        help="success rate to compare with, e.g. 0.999 (default: the target_success_rate setting)",
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    stdin: IO[bytes] | None = None,
) -> int:
    args = build_parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    try:
        plan = plan_from(args, environ)
    except UsageError as e:
        print(f"report: {e}", file=sys.stderr)
        return EXIT_USAGE
    agg = Aggregator()
    try:
        collect(plan, environ, agg, stdin=stdin, warn=lambda text: print(text, file=sys.stderr))
    except UsageError as e:  # --limit naming a host the inventory does not have
        print(f"report: {e}", file=sys.stderr)
        return EXIT_USAGE
    report = agg.report(top=plan.top, bucket_seconds=plan.bucket)
    for error in report.errors:
        print(f"report: not read: {error}", file=sys.stderr)
    if report.errors and all(s.error and not s.requests for s in report.sources):
        print("report: nothing could be read; no report", file=sys.stderr)
        return EXIT_SOURCE
    if plan.as_json:
        print(json.dumps(to_json(report, plan.target), indent=2))
    else:
        print(to_text(report, plan.target), end="")
    if plan.png:
        from .plot import plot_png

        plot_png(report, plan.png, plan.target)
    return EXIT_SOURCE if report.errors else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
