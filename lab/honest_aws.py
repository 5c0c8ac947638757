"""The lab's fake AWS server: moto's own WSGI application (what `moto_server` serves), with one
thin layer in front that makes ELBv2 DescribeTargetHealth honest.

moto answers DescribeTargetHealth from the EC2 instance state alone (a running instance is
`healthy`), so a proxy whose firewall drops the load balancer would still look healthy. Here the
answer's TargetHealth of each target is replaced by what the lab's load balancer (lab/lb.py)
really saw when it health-checked that target's /healthz, read from its state file (lb.json,
`instances` maps instance id -> address, `healthy` maps address -> bool):

- healthy (two checks passed)  -> State healthy
- unhealthy (two checks failed) -> State unhealthy, Reason Target.FailedHealthChecks
- not checked yet               -> State initial, Reason Elb.InitialHealthChecking
- lb.json missing or stale      -> State unavailable, Reason Elb.InternalError
Targets moto does not report `healthy` (deregistered, stopped) keep moto's answer. Every other
request goes to moto untouched.

Run by lab/fakeaws.py as `python -m lab.honest_aws -H ADDRESS -p PORT --lb-state PATH`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

STALE_AFTER = 10.0  # seconds; lab/lb.py rewrites lb.json every second
NS = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"

# (State, Reason, Description) as AWS words them.
HEALTHY = ("healthy", None, None)
UNHEALTHY = ("unhealthy", "Target.FailedHealthChecks", "Health checks failed")
INITIAL = ("initial", "Elb.InitialHealthChecking", "Initial health checks in progress")
UNKNOWN = (
    "unavailable",
    "Elb.InternalError",
    "The lab load balancer's health state is missing or stale (is lab/lb.py running?)",
)

Health = tuple[str, str | None, str | None]
WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


def lb_health(state: dict[str, Any] | None, instance_id: str, now: float) -> Health:
    """What the lab load balancer saw of one target (an instance id)."""
    if not state or now - float(state.get("time", 0)) > STALE_AFTER:
        return UNKNOWN
    address = (state.get("instances") or {}).get(instance_id)
    seen = (state.get("healthy") or {}).get(address) if address else None
    if seen is None:
        return INITIAL
    return HEALTHY if seen else UNHEALTHY


def _set(parent: ET.Element, tag: str, text: str | None) -> None:
    old = parent.find(f"{{{NS}}}{tag}")
    if old is not None:
        parent.remove(old)
    if text is not None:
        ET.SubElement(parent, f"{{{NS}}}{tag}").text = text


def rewrite(xml: bytes, health_of: Callable[[str], Health]) -> bytes:
    """moto's DescribeTargetHealth response with each `healthy` target's health replaced."""
    ET.register_namespace("", NS)
    root = ET.fromstring(xml)
    for member in root.iter(f"{{{NS}}}member"):
        target_id = member.findtext(f"{{{NS}}}Target/{{{NS}}}Id")
        health = member.find(f"{{{NS}}}TargetHealth")
        if target_id is None or health is None:
            continue
        if health.findtext(f"{{{NS}}}State") != "healthy":
            continue  # deregistered, draining, stopped: moto knows better than the balancer
        state, reason, description = health_of(target_id)
        _set(health, "State", state)
        _set(health, "Reason", reason)
        _set(health, "Description", description)
    return ET.tostring(root, xml_declaration=True, encoding="utf-8")


class HonestTargetHealth:
    """WSGI middleware: DescribeTargetHealth answered by moto, then corrected from lb.json."""

    def __init__(self, app: WsgiApp, lb_state: Path) -> None:
        self.app = app
        self.lb_state = lb_state

    def _read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.lb_state.read_text())
        except (OSError, ValueError):
            return None

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)  # moto reads the request again
        action = parse_qs(body.decode("latin-1")).get("Action", [""])[0]
        if action != "DescribeTargetHealth":
            return self.app(environ, start_response)
        answer: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            answer.update(status=status, headers=headers)

        xml = b"".join(self.app(environ, keep))
        if answer["status"].startswith("200"):
            state, now = self._read_state(), time.time()
            xml = rewrite(xml, lambda target: lb_health(state, target, now))
        headers = [(k, v) for k, v in answer["headers"] if k.lower() != "content-length"]
        start_response(answer["status"], [*headers, ("Content-Length", str(len(xml)))])
        return [xml]


def main(argv: list[str] | None = None) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", required=True)
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--lb-state", type=Path, required=True, help="lab/lb.py's lb.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto_server: URLs moto hands out
    app = HonestTargetHealth(DomainDispatcherApplication(create_backend_app), args.lb_state)
    # As moto_server runs its application (moto/server.py), minus the reloader and TLS.
    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
