"""The lab's load balancer: the data path of an Application Load Balancer, driven by the real
control path (the weighted listener rule in the fake AWS's ELBv2).

Run in its own namespace (`lb`, 10.77.0.40) by `python -m lab up`; the loadgen sends to
http://10.77.0.40/. Like an ALB:
- it reads the listener rule every POLL seconds (DescribeRules, DescribeTargetHealth, and the
  instances' private addresses from EC2) and routes by the weights it read: each request picks a
  target group at random by weight, then the next target of that group (round robin);
- it checks every registered target's /healthz every second and leaves out a target after two
  failures (back after two successes); a group whose every target is down gets traffic anyway
  (an ALB fails open);
- requests from one client connection may go to different groups (no stickiness); connections
  to the proxies are kept alive and reused; X-Forwarded-For/-Proto/-Port are added; a proxy that
  drops the connection or times out is answered 502/504 to the client (no retry, as an ALB).

Its state, every second, in STATE_DIR/lb.json: the weights it applies and since when, the
targets and their health (by address, and each instance id's address), and requests and 5xx
per group since start (tests, `lab status` and the fake AWS's DescribeTargetHealth read it:
lab/honest_aws.py). Standard library and boto3 only; HTTP/1.1 with Content-Length or chunked
bodies.

Lab only: it trusts its one client and buffers each response whole.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POLL = 1.0  # seconds between two reads of the rule
HEALTH_INTERVAL = 1.0
TIMEOUT = 30.0  # seconds a proxy may take to answer (an ALB's idle timeout is 60)
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


@dataclass
class Group:
    name: str
    weight: int
    targets: list[str]  # private addresses
    rr: itertools.count = field(default_factory=itertools.count)


@dataclass
class Table:
    """What the balancer applies now."""

    groups: list[Group] = field(default_factory=list)
    rule_arn: str = ""
    applied_at: float = 0.0
    healthy: dict[str, bool] = field(default_factory=dict)
    instances: dict[str, str] = field(default_factory=dict)  # instance id -> private address
    fails: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    oks: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    counts: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))

    def choose(self) -> tuple[str, str] | None:
        live = [g for g in self.groups if g.weight > 0 and g.targets]
        if not live:
            return None
        group = random.choices(live, weights=[g.weight for g in live])[0]
        up = [t for t in group.targets if self.healthy.get(t, True)] or group.targets
        return group.name, up[next(group.rr) % len(up)]

    def count(self, group: str, status: int) -> None:
        c = self.counts[group]
        c["requests"] = c.get("requests", 0) + 1
        if status >= 500:
            c["5xx"] = c.get("5xx", 0) + 1


# --- control path: the fake AWS ---------------------------------------------------------------


def read_rule(clients: dict[str, Any], name: str, ip_cache: dict[str, str]) -> tuple[str, list]:
    """(rule ARN, [(group, weight, [addresses])]) of the load balancer's weighted rule."""
    elb, ec2 = clients["elbv2"], clients["ec2"]
    lb = elb.describe_load_balancers(Names=[name])["LoadBalancers"][0]
    for listener in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]:
        for rule in elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]:
            if rule.get("IsDefault"):
                continue
            forward = next(
                (a["ForwardConfig"] for a in rule["Actions"] if a.get("ForwardConfig")), None
            )
            if not forward:
                continue
            arns = [tg["TargetGroupArn"] for tg in forward["TargetGroups"]]
            tags = {
                d["ResourceArn"]: {t["Key"]: t["Value"] for t in d.get("Tags", [])}
                for d in elb.describe_tags(ResourceArns=arns)["TagDescriptions"]
            }
            groups = []
            for tg in forward["TargetGroups"]:
                arn = tg["TargetGroupArn"]
                ids = [
                    d["Target"]["Id"]
                    for d in elb.describe_target_health(TargetGroupArn=arn)[
                        "TargetHealthDescriptions"
                    ]
                ]
                unknown = [i for i in ids if i not in ip_cache]
                if unknown:
                    for res in ec2.describe_instances(InstanceIds=unknown)["Reservations"]:
                        for inst in res["Instances"]:
                            ip_cache[inst["InstanceId"]] = inst["PrivateIpAddress"]
                group = tags.get(arn, {}).get("ProxyGroup") or arn.split("/")[-2]
                groups.append((group, int(tg.get("Weight", 1)), [ip_cache[i] for i in ids]))
            return rule["RuleArn"], groups
    raise RuntimeError(f"load balancer {name}: no weighted forward rule")


async def poll_rule(table: Table, args: argparse.Namespace) -> None:
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=args.region
    )
    clients = {s: session.client(s, endpoint_url=args.aws) for s in ("elbv2", "ec2")}
    ip_cache: dict[str, str] = {}
    while True:
        try:
            arn, groups = await asyncio.to_thread(read_rule, clients, args.load_balancer, ip_cache)
            seen = [(g.name, g.weight, g.targets) for g in table.groups]
            if seen != groups:
                old = {g.name: g for g in table.groups}
                table.groups = [
                    Group(n, w, t, old[n].rr if n in old else itertools.count())
                    for n, w, t in groups
                ]
                table.rule_arn, table.applied_at = arn, time.time()
                print(f"lb: applied {[(n, w) for n, w, _ in groups]}", flush=True)
            table.instances = dict(ip_cache)
        except Exception as e:  # moto restarting, a rule being replaced: keep the last table
            print(f"lb: cannot read the rule ({type(e).__name__}: {e})", flush=True)
        await asyncio.sleep(POLL)


async def health_checks(table: Table, port: int) -> None:
    async def check(address: str) -> None:
        ok = False
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 1.0)
            writer.write(
                f"GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode()
            )
            line = await asyncio.wait_for(reader.readline(), 1.0)
            ok = line.split()[1:2] == [b"200"]
            writer.close()
        except (OSError, TimeoutError, IndexError):
            pass
        if ok:
            table.fails[address], table.oks[address] = 0, table.oks[address] + 1
            if table.oks[address] >= 2:
                table.healthy[address] = True
        else:
            table.oks[address], table.fails[address] = 0, table.fails[address] + 1
            if table.fails[address] >= 2:
                table.healthy[address] = False

    while True:
        targets = {t for g in table.groups for t in g.targets}
        await asyncio.gather(*(check(t) for t in targets))
        await asyncio.sleep(HEALTH_INTERVAL)


async def write_state(table: Table, path: Path) -> None:
    while True:
        state = {
            "time": time.time(),
            "rule_arn": table.rule_arn,
            "applied_at": table.applied_at,
            "weights": {g.name: g.weight for g in table.groups},
            "targets": {g.name: g.targets for g in table.groups},
            "healthy": dict(table.healthy),
            "instances": dict(table.instances),  # the fake AWS's DescribeTargetHealth reads both
            "counts": table.counts,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(path)
        await asyncio.sleep(1.0)


# --- data path: HTTP/1.1 -----------------------------------------------------------------------


class BadRequest(Exception):
    pass


async def read_head(reader: asyncio.StreamReader) -> tuple[str, list[tuple[str, str]]] | None:
    """The start line and the headers of a message; None at a clean end of the connection."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise BadRequest("truncated head") from None
    except asyncio.LimitOverrunError:
        raise BadRequest("head too large") from None
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadRequest(f"bad header line {line!r}")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def header(headers: list[tuple[str, str]], name: str) -> str:
    return next((v for k, v in headers if k.lower() == name), "")


async def read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes | None:
    """The body by Content-Length or chunked; None: delimited by the end of the connection."""
    if "chunked" in header(headers, "transfer-encoding").lower():
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = header(headers, "content-length")
    if length:
        return await reader.readexactly(int(length))
    return None


class Pool:
    """Idle keepalive connections to each proxy."""

    def __init__(self) -> None:
        self.idle: dict[str, list] = defaultdict(list)

    async def get(self, address: str, port: int) -> tuple[Any, Any, bool]:
        while self.idle[address]:
            reader, writer = self.idle[address].pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer, True
            writer.close()
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 5.0)
        return reader, writer, False

    def put(self, address: str, conn: tuple[Any, Any]) -> None:
        self.idle[address].append(conn)


async def forward(
    pool: Pool, address: str, port: int, request: bytes, method: str
) -> tuple[str, list[tuple[str, str]], bytes]:
    """Send REQUEST to the proxy at ADDRESS; its status line, headers and body. A pooled
    connection the proxy closed meanwhile is replaced once (nothing was answered on it)."""
    for attempt in (1, 2):
        reader, writer, reused = await pool.get(address, port)
        try:
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(read_head(reader), TIMEOUT)
            if head is None:
                raise ConnectionResetError("closed before answering")
        except (OSError, BadRequest, ConnectionError):
            writer.close()
            if reused and attempt == 1:
                continue
            raise
        status_line, headers = head
        status = int(status_line.split()[1])
        closing = "close" in header(headers, "connection").lower()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            found = await asyncio.wait_for(read_body(reader, headers), TIMEOUT)
            if found is None:  # delimited by the end of the connection
                found, closing = await asyncio.wait_for(reader.read(), TIMEOUT), True
            body = found
        if closing:
            writer.close()
        else:
            pool.put(address, (reader, writer))
        return status_line, headers, body
    raise ConnectionResetError("unreachable")


def respond(status: int, reason: str, body: bytes, close: bool) -> bytes:
    return (
        f"HTTP/1.1 {status} {reason}\r\nServer: lab-lb\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {'close' if close else 'keep-alive'}\r\n\r\n"
    ).encode() + body


async def serve_client(
    table: Table, pool: Pool, port: int, reader: asyncio.StreamReader, writer: Any
) -> None:
    peer = writer.get_extra_info("peername")[0]
    try:
        while True:
            try:
                head = await read_head(reader)
                if head is None:
                    return
                request_line, headers = head
                method, target, version = request_line.split(" ", 2)
                if "chunked" in header(headers, "transfer-encoding").lower():
                    raise BadRequest("chunked request bodies are not supported here")
                body = await read_body(reader, headers) or b""
            except (BadRequest, ValueError) as e:
                writer.write(respond(400, "Bad Request", f"{e}\n".encode(), True))
                await writer.drain()
                return
            close = "close" in header(headers, "connection").lower() or version == "HTTP/1.0"
            choice = table.choose()
            if choice is None:
                writer.write(respond(503, "Service Unavailable", b"no target\n", close))
                await writer.drain()
                continue
            group, address = choice
            forwarded = header(headers, "x-forwarded-for")
            out = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]
            out = [(k, v) for k, v in out if not k.lower().startswith("x-forwarded-")]
            out += [
                ("X-Forwarded-For", f"{forwarded}, {peer}" if forwarded else peer),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Port", "80"),
                ("Content-Length", str(len(body))),
                ("Connection", "keep-alive"),
            ]
            request = (
                f"{method} {target} HTTP/1.1\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in out)
                + "\r\n"
            ).encode("latin-1") + body
            try:
                status_line, rheaders, rbody = await forward(pool, address, port, request, method)
                status = int(status_line.split()[1])
                keep = [(k, v) for k, v in rheaders if k.lower() not in HOP_BY_HOP]
                keep += [
                    ("Content-Length", str(len(rbody))),
                    ("Connection", "close" if close else "keep-alive"),
                ]
                reply = (
                    f"HTTP/1.1 {status_line.split(' ', 1)[1]}\r\n"
                    + "".join(f"{k}: {v}\r\n" for k, v in keep)
                    + "\r\n"
                ).encode("latin-1") + rbody
            except TimeoutError:
                status, reply = 504, respond(504, "Gateway Timeout", b"target timed out\n", close)
            except (OSError, ConnectionError, BadRequest, ValueError, asyncio.IncompleteReadError):
                status, reply = 502, respond(502, "Bad Gateway", b"target failed\n", close)
            table.count(group, status)
            writer.write(reply)
            await writer.drain()
            if close:
                return
    except (ConnectionError, OSError):
        return
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def main_async(args: argparse.Namespace) -> None:
    table = Table()
    pool = Pool()
    tasks = [
        asyncio.create_task(poll_rule(table, args)),
        asyncio.create_task(health_checks(table, args.target_port)),
        asyncio.create_task(write_state(table, Path(args.state))),
    ]
    server = await asyncio.start_server(
        lambda r, w: serve_client(table, pool, args.target_port, r, w),
        args.address,
        args.port,
        limit=1 << 16,
        backlog=1024,
    )
    print(f"lb: listening on {args.address}:{args.port}", flush=True)
    async with server:
        await asyncio.gather(server.serve_forever(), *tasks)


# --- started by `python -m lab up` ---------------------------------------------------------------


def state_path() -> Path:
    from lab import config

    return config.STATE_DIR / "lb.json"


def start(lab_state: dict) -> None:
    """Start the load balancer in its namespace (unless it runs), record its PID, wait until it
    listens and applies the rule."""
    import subprocess

    from lab import config, fakeaws, state
    from lab.sh import LabError

    if state.pid_alive(lab_state["pids"].get("lb")):
        return
    path = state_path()
    path.unlink(missing_ok=True)
    log = open(config.STATE_DIR / "lb.log", "wb")  # noqa: SIM115 (the child keeps it)
    # fmt: off
    proc = subprocess.Popen(
        [
            "ip", "netns", "exec", config.NS_PREFIX + "lb", sys.executable, "-m", "lab.lb",
            "--address", config.LB_ADDRESS, "--port", str(config.LB_PORT),
            "--aws", fakeaws.endpoint(), "--region", config.AWS_REGION,
            "--load-balancer", config.LB_NAME, "--state", str(path),
        ],
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    # fmt: on
    state.record_pid(lab_state, "lb", proc.pid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("weights"):
                return
        time.sleep(0.2)
    raise LabError(f"the lab load balancer did not start; see {config.STATE_DIR / 'lb.log'}")


def read_state() -> dict:
    """What the running load balancer wrote last (lb.json)."""
    return json.loads(state_path().read_text())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--target-port", type=int, default=80)
    p.add_argument("--aws", required=True, help="the fake AWS endpoint")
    p.add_argument("--region", required=True)
    p.add_argument("--load-balancer", required=True, help="its name in the fake ELBv2")
    p.add_argument("--state", required=True, help="where to write lb.json")
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
