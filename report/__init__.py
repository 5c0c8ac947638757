"""Reliability report from the proxies' JSON access logs (`python -m report`, docs/report.md).

Owns: reading the logs (local files, S3, the proxies over SSH), what each request means for
reliability, the figures and how they are shown (text, JSON, PNG).
Leaves alone: what is logged and how (templates/nginx/nginx.conf.j2, `log_format proxy_json`),
which hosts exist (inventories/), the deploy's settings (tasks/settings.py, read for two defaults).

Modules: `parse` (one line -> LogEntry), `analyze` (classify, normalise routes, aggregate),
`render` (text, JSON), `plot` (PNG), `sources` (files, S3, SSH), `__main__` (command line).
"""

from .analyze import Aggregator, Outcome, Report, classify, normalise_route
from .parse import LogEntry, MalformedLine, parse_line

__all__ = [
    "Aggregator",
    "LogEntry",
    "MalformedLine",
    "Outcome",
    "Report",
    "classify",
    "normalise_route",
    "parse_line",
]
