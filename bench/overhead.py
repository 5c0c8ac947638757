"""Proxy overhead, measured where it happens: wrk from loadgen, direct to a fast backend vs
through proxy-1, in the same run, with every process pinned to a CPU; and the proxy's own added
time per request from proxy-1's access log (request_time - upstream_response_time).

    .venv/bin/python -m bench.overhead [--seconds 10] [--max-requests 1000000] [--connections 16]
                                       [--layout proxy-own-cpu|loadgen-own-cpu|separate]

What runs (and is put back afterwards, in `finally`):
- The backend is not the lab's Python backend (the bottleneck) but nginx `return 200 "ok"`
  (bench/static_backend.py) started in app-1's namespace on 10.77.0.10:8081, stopped by its PID.
- proxy-1 is not redeployed: its upstream stays the lab backend 10.77.0.10:8080. For the run, an
  nftables table of the bench's own in app-1's namespace redirects new connections to :8080 from
  loadgen and proxy-1 (only) to :8081; proxy-1's open keepalive connections to :8080 are closed
  (`ss -K`) so its next requests reconnect through the redirect. The direct run uses the same
  address and redirect, so both paths cross the same NAT. The table is deleted at the end: the
  lab backend then gets proxy-1's traffic again (fail rate untouched: it never saw the bench).
- CPU pinning (taskset / sched_setaffinity): wrk, proxy-1's nginx (master and workers, found
  from /run/nginx.pid inside the container and mapped to the machine's PIDs) and the backend; the
  same layout for the direct and the proxied runs; nginx's previous affinities are restored.
- Each wrk run is bounded by time (--seconds) and by request count (a Lua hook stops each thread
  after its share of --max-requests). Requests carry X-Forwarded-For from a pool of client
  addresses (loadgen is a trusted balancer in the lab: per-client rate limits apply per address,
  as behind a real balancer), and a token in the query string that picks this run's log lines.

Needs the lab (`python -m lab up`), a deployed proxy-1, and nginx on the machine (`make deps`).
Prints a table and writes bench/results/overhead.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import Column, result_path, table, write_json
from bench.static_backend import BODY, StaticBackend
from lab import config, core, state

APP = next(n for n in config.nodes(0) if n.role == "app")
LOADGEN = next(n for n in config.nodes(0) if n.role == "loadgen")
PROXY = "proxy-1"
PROXY_ADDRESS = next(n.address for n in config.nodes(1) if n.name == PROXY)
FAST_PORT = 8081
ACCESS_LOG = "/var/log/nginx/proxy_access.log"
NFT_TABLE = "overhead_bench"
GOAL_ADDED_P99_MS = 1.0
GOAL_RPS_RATIO = 0.9
# Which CPUs each part gets, by layout. With 2 CPUs three separate CPUs are impossible.
LAYOUTS = {
    # The proxy alone on a CPU, as on its own host in production; the load generator and the
    # backend share the other CPU in both runs, so both runs lose the same to that sharing.
    "proxy-own-cpu": {"loadgen": {0}, "backend": {0}, "proxy": {1}},
    # The load generator alone; proxy and backend share a CPU (the proxied run pays for both).
    "loadgen-own-cpu": {"loadgen": {0}, "backend": {1}, "proxy": {1}},
    # Three CPUs or more: each part alone.
    "separate": {"loadgen": {0}, "backend": {2}, "proxy": {1}},
}
CLIENTS = 256  # X-Forwarded-For addresses, cycled (10.200.x.y: not the lab's own)
# Each thread cycles through pre-built requests (one per client address) and stops itself after
# `limit` responses: the run is bounded in requests, not only time.
WRK_SCRIPT = """
local limit = {limit}
local done = 0
local requests = {{}}
local next_one = 0
init = function(args)
  for i = 0, {clients} - 1 do
    local xff = "10.200." .. math.floor(i / 250) .. "." .. (i % 250 + 1)
    requests[i] = wrk.format("GET", "{path}", {{["X-Forwarded-For"] = xff}})
  end
end
request = function()
  next_one = (next_one + 1) % {clients}
  return requests[next_one]
end
response = function(status, headers, body)
  done = done + 1
  if done >= limit then wrk.thread:stop() end
end
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
COLUMNS = (
    Column("target", 8, align="<"),
    Column("requests", 9),
    Column("p50 ms", 8, ".2f"),
    Column("p99 ms", 8, ".2f"),
    Column("req/s", 8, ".0f"),
    Column("non-2xx", 7),
)


# --- parsers (unit-tested in tests/test_bench.py) ---------------------------------------------


def parse_wrk(text: str) -> dict:
    """Requests, p50/p99 latency (ms), requests per second, non-2xx/3xx responses and socket
    errors from wrk's --latency output."""
    percentiles = {
        f"p{int(float(p))}": float(value) * UNITS[unit]
        for p, value, unit in re.findall(
            r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE
        )
    }
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return {
        **percentiles,
        "rps": rps,
        "requests": requests,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def parse_seconds_list(value: str | None) -> list[float | None]:
    """nginx's $upstream_* time: one value per attempt, "0.001, 0.002" (", " between servers
    tried, " : " across internal redirects); "-" for an attempt without a time; "" when the
    request never reached an upstream (empty list). Seconds with millisecond resolution."""
    if value is None or not str(value).strip():
        return []
    parts = re.split(r"\s*[,:]\s*", str(value).strip())
    return [None if part in ("-", "") else float(part) for part in parts]


def parse_log_line(line: str) -> dict:
    """One JSON line of proxy-1's access log (log_format proxy_json) -> the fields the bench
    uses: status, uri, body_bytes_sent, request_time (s), upstream times (s, one per attempt)."""
    entry = json.loads(line)
    return {
        "status": int(entry["status"]),
        "uri": entry.get("uri", ""),
        "body_bytes_sent": int(entry.get("body_bytes_sent", 0)),
        "request_time": float(entry["request_time"]),
        "upstream_times": parse_seconds_list(entry.get("upstream_response_time")),
    }


def added_times(entries: list[dict]) -> tuple[list[float], dict]:
    """The proxy's own time per request in ms, request_time - upstream_response_time, for the
    requests answered by one upstream attempt with a time. Retried requests (two attempts or
    more) are skipped, not summed: their request_time also holds the wait between attempts,
    which is retry cost, not the cost of the hop. Also returns the counts of what was skipped."""
    added, skipped = [], {"retried": 0, "no_upstream": 0}
    for entry in entries:
        times = entry["upstream_times"]
        if not times or times[0] is None:
            skipped["no_upstream"] += 1
        elif len(times) > 1:
            skipped["retried"] += 1
        else:
            # Both are whole milliseconds: round away float noise (0.003 - 0.002 = 0.00099..).
            added.append(round((entry["request_time"] - times[0]) * 1000.0, 3))
    return added, skipped


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of the values <= it."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
    return ordered[int(rank) - 1]


def added_stats(added: list[float]) -> dict:
    """p50, p99, max and mean of the added times (ms), the share of requests at 0 ms and below
    0 ms, and how many requests had each value. Both times are read from nginx's millisecond
    clock at different moments, so one request's difference is off by up to 1 ms either way
    (-1 ms happens): the percentiles are whole milliseconds, the mean over many requests is the
    finer estimate."""
    if not added:
        return {"requests": 0}
    counts: dict[str, int] = {}
    for value in sorted(added):
        counts[f"{value:g}"] = counts.get(f"{value:g}", 0) + 1
    return {
        "requests": len(added),
        "p50_ms": percentile(added, 50),
        "p99_ms": percentile(added, 99),
        "max_ms": max(added),
        "mean_ms": round(sum(added) / len(added), 4),
        "share_zero": round(sum(1 for a in added if a == 0) / len(added), 4),
        "share_negative": round(sum(1 for a in added if a < 0) / len(added), 4),
        "requests_by_ms": counts,
    }


# --- the lab: processes, CPUs, the log ---------------------------------------------------------


def wrk(
    url: str, seconds: int, connections: int, max_requests: int, cpus: set[int], token: str
) -> dict:
    threads = len(cpus)
    script_text = WRK_SCRIPT.format(
        limit=max(1, max_requests // threads),
        clients=CLIENTS,
        path=f"{urlsplit(url).path}?overhead={token}",
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(script_text)
    cpu_list = ",".join(map(str, sorted(cpus)))
    try:
        out = subprocess.run(
            [
                *("taskset", "-c", cpu_list, "ip", "netns", "exec", LOADGEN.netns, "wrk"),
                *(f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"),
                *("-s", script.name, url),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        Path(script.name).unlink()
    return parse_wrk(out)


def proxy_nginx_pids() -> list[int]:
    """Machine-side PIDs of proxy-1's nginx master and workers: /run/nginx.pid inside the
    container is a PID of the container's PID namespace; the machine's /proc lists each process
    with its PID in every namespace (NSpid), and the container's leader gives that namespace."""
    inner = core.run_in(PROXY, ["cat", "/run/nginx.pid"]).stdout.strip()
    if not inner.isdigit():
        raise SystemExit(f"no nginx running on {PROXY}: deploy it first (see README)")
    leader = state.load().get("leaders", {}).get(PROXY)
    namespace = os.readlink(f"/proc/{leader}/ns/pid")
    master = None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns/pid") != namespace:
                continue
            nspid = _status(entry)["NSpid"].split()
        except (OSError, KeyError):
            continue
        if nspid[-1] == inner:
            master = int(entry.name)
            break
    if master is None:
        raise SystemExit(f"{PROXY}'s nginx master (PID {inner} inside) not found from outside")
    workers = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _ppid(entry) == master
    ]
    return [master, *sorted(workers)]


def _status(proc: Path) -> dict[str, str]:
    lines = (proc / "status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _ppid(proc: Path) -> int | None:
    try:
        return int(_status(proc)["PPid"])
    except (OSError, KeyError, ValueError):
        return None


def pin(pids: list[int], cpus: set[int]) -> dict[int, set[int]]:
    """Pin every thread of PIDS to CPUS; the previous affinity of each thread, to restore."""
    before = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            tid = int(task.name)
            before[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)
    return before


def restore_affinity(before: dict[int, set[int]]) -> None:
    for tid, cpus in before.items():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpus)


def redirect_to_fast_backend() -> None:
    """In app-1's namespace: new connections to the lab backend's port from loadgen and proxy-1
    go to the fast backend; proxy-1's open keepalive connections are closed (it reconnects)."""
    rules = f"""
table ip {NFT_TABLE} {{
    chain prerouting {{
        type nat hook prerouting priority dstnat;
        ip saddr {{ {LOADGEN.address}, {PROXY_ADDRESS} }} ip daddr {APP.address} \
tcp dport {config.BACKEND_PORT} redirect to :{FAST_PORT}
    }}
}}
"""
    subprocess.run(
        ["ip", "netns", "exec", APP.netns, "nft", "-f", "-"], input=rules, text=True, check=True
    )
    subprocess.run(
        [
            *("ip", "netns", "exec", APP.netns, "ss", "-K", "-tn", "state", "established"),
            *(f"( sport = :{config.BACKEND_PORT} )", "dst", PROXY_ADDRESS),
        ],
        capture_output=True,
        check=True,
    )


def fast_backend_connections() -> list[str]:
    """TCP connections still on the fast backend's port in app-1's namespace (any state)."""
    out = subprocess.run(
        ["ip", "netns", "exec", APP.netns, "ss", "-Htan", f"( sport = :{FAST_PORT} )"],
        capture_output=True,
        text=True,
    ).stdout
    return [line for line in out.splitlines() if line.strip() and "LISTEN" not in line]


def remove_redirect() -> None:
    """Delete the bench's table, once no connection to the fast backend is left. Order matters:
    the redirect must outlive those connections. Its table is the namespace's only NAT, and
    without it the kernel stops translating established connections too: the backend's closing
    FIN would leave from :8081, proxy-1 would never see it, and its cached keepalive connections
    would stay open to nothing (measured: the next request failed 5 tries with 502)."""
    deadline = time.monotonic() + 10
    while fast_backend_connections() and time.monotonic() < deadline:
        time.sleep(0.1)
    # Whatever is left (a FIN not yet acknowledged): reset, still through the redirect.
    subprocess.run(
        ["ip", "netns", "exec", APP.netns, "ss", "-K", "-tan", f"( sport = :{FAST_PORT} )"],
        capture_output=True,
    )
    subprocess.run(
        ["ip", "netns", "exec", APP.netns, "nft", "delete", "table", "ip", NFT_TABLE],
        capture_output=True,
    )


def proxy_reaches_lab_backend(requests: int = 3) -> bool:
    """After the run: requests through proxy-1 are answered by the lab backend again (its JSON,
    not the fast backend's "ok", nor a 502 from a connection the bench left behind)."""
    for _ in range(requests):
        proc = subprocess.run(
            [
                *("ip", "netns", "exec", LOADGEN.netns, "curl", "-sS", "-f", "-m", "10"),
                f"http://{PROXY_ADDRESS}/pets/1",
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not proc.stdout.lstrip().startswith("{"):
            return False
    return True


def stale_proxy_connections() -> int:
    """proxy-1's open connections to the lab backend's address:port that have no socket at the
    other end in app-1's namespace (a close proxy-1 never saw): each would cost a request a try."""
    backend = f"{APP.address}:{config.BACKEND_PORT}"
    proxy_side = core.run_in(PROXY, ["ss", "-Htn", "state", "established"]).stdout
    ports = {
        line.split()[-2].rsplit(":", 1)[1]
        for line in proxy_side.splitlines()
        if line.split() and line.split()[-1] == backend
    }
    app_side = subprocess.run(
        ["ip", "netns", "exec", APP.netns, "ss", "-Htan", "dst", PROXY_ADDRESS],
        capture_output=True,
        text=True,
    ).stdout
    peers = {line.split()[-1].rsplit(":", 1)[1] for line in app_side.splitlines() if line.split()}
    return len(ports - peers)


def log_size() -> int:
    return int(core.run_in(PROXY, ["stat", "-c", "%s", ACCESS_LOG]).stdout.strip())


def log_entries_since(offset: int, token: str) -> list[dict]:
    """This run's lines of proxy-1's access log: written after OFFSET, with TOKEN in the URI."""
    size = log_size()
    if size < offset:
        raise SystemExit(f"{ACCESS_LOG} shrank during the run (rotated?): run the bench again")
    data = core.run_in(
        PROXY, ["tail", "-c", f"+{offset + 1}", ACCESS_LOG], text=False, check=True
    ).stdout
    entries = []
    for line in data.decode(errors="replace").splitlines():
        if token in line:
            entries.append(parse_log_line(line))
    return entries


def run_bench(args: argparse.Namespace, layout: dict[str, set[int]]) -> dict:
    token = secrets.token_hex(6)
    targets = {
        "direct": f"http://{APP.address}:{config.BACKEND_PORT}/pets/1",
        PROXY: f"http://{PROXY_ADDRESS}/pets/1",
    }
    nginx_pids = proxy_nginx_pids()
    results, entries = {}, []
    backend = StaticBackend(APP.netns, APP.address, FAST_PORT, layout["backend"])
    affinity_before: dict[int, set[int]] = {}
    try:
        backend.start()
        affinity_before = pin(nginx_pids, layout["proxy"])
        redirect_to_fast_backend()
        for name, url in targets.items():
            offset = log_size()
            results[name] = wrk(
                url, args.seconds, args.connections, args.max_requests, layout["loadgen"], token
            )
            if name == PROXY:
                entries = log_entries_since(offset, token)
    finally:
        backend.stop()  # first: its connections close through the redirect (remove_redirect)
        remove_redirect()
        restore_affinity(affinity_before)
    return {
        "token": token,
        "stale_connections_after": stale_proxy_connections(),
        "lab_backend_after": proxy_reaches_lab_backend(),
        "results": results,
        "entries": entries,
        "nginx_pids": nginx_pids,
        "backend_pid": backend.pid,
    }


def summarize(run: dict, args: argparse.Namespace, layout_name: str) -> dict:
    results, entries = run["results"], run["entries"]
    direct, proxied = results["direct"], results[PROXY]
    ratios = {key: proxied[key] / direct[key] for key in ("p50", "p99", "rps")}
    # What the client sees the proxy add: the extra hop (network, two more sockets, queueing)
    # included, which nginx's own clock does not hold.
    wrk_added = {key: round(proxied[key] - direct[key], 3) for key in ("p50", "p99")}
    added, skipped = added_times([e for e in entries if e["status"] == 200])
    proxied_ok = [e for e in entries if e["status"] == 200 and e["upstream_times"]]
    by_backend = {
        "fast_backend": sum(1 for e in proxied_ok if e["body_bytes_sent"] == len(BODY)),
        "other": sum(1 for e in proxied_ok if e["body_bytes_sent"] != len(BODY)),
    }
    log = {
        **added_stats(added),
        "log_lines": len(entries),
        "non_200": sum(1 for e in entries if e["status"] != 200),
        "skipped": skipped,
        "answered_by": by_backend,
        "resolution_ms": 1,
    }
    layout = LAYOUTS[layout_name]
    conditions = {
        "nproc": os.cpu_count(),
        "layout": layout_name,
        "cpus": {part: sorted(cpus) for part, cpus in layout.items()},
        "proxy_nginx_pids": run["nginx_pids"],
        "proxy_nginx_workers": len(run["nginx_pids"]) - 1,
        "backend": f"nginx return 200 on {APP.address}:{FAST_PORT}, 1 worker",
        "seconds": args.seconds,
        "max_requests": args.max_requests,
        "connections": args.connections,
        "wrk_threads": len(layout["loadgen"]),
        "client_addresses": CLIENTS,
        "log_token": run["token"],
        "proxy_reaches_lab_backend_after": run["lab_backend_after"],
        "proxy_stale_backend_connections_after": run["stale_connections_after"],
    }
    clean = all(r["non_2xx"] == 0 and r["socket_errors"] == 0 for r in results.values())
    # wrk divides by the whole --seconds even when the Lua hook stopped its threads earlier: a run
    # that reached --max-requests has no true req/s, and its ratio says nothing.
    capped = [name for name, r in results.items() if r["requests"] >= args.max_requests]
    goals = {
        "added_p99_ms_max": GOAL_ADDED_P99_MS,
        "rps_ratio_min": GOAL_RPS_RATIO,
        "added_p99_met": bool(added) and log["p99_ms"] <= GOAL_ADDED_P99_MS,
        "rps_ratio_met": ratios["rps"] >= GOAL_RPS_RATIO and not capped,
        "clean_run": clean and by_backend["other"] == 0,
        "capped_by_max_requests": capped,
    }
    return {
        "conditions": conditions,
        "results": results,
        "ratios": ratios,
        "wrk_added_ms": wrk_added,
        "access_log": log,
        "goals": goals,
    }


def print_table(summary: dict) -> None:
    results, ratios = summary["results"], summary["ratios"]
    log, goals, cond = summary["access_log"], summary["goals"], summary["conditions"]
    added = summary["wrk_added_ms"]
    rows = [
        [name, r["requests"], r["p50"], r["p99"], r["rps"], r["non_2xx"] + r["socket_errors"]]
        for name, r in results.items()
    ]
    # Two summary rows under the targets: the ratio's req/s has decimals, and no error column.
    rows += [
        ["ratio", "", ratios["p50"], ratios["p99"], f"{ratios['rps']:.2f}"],
        ["added", "", added["p50"], added["p99"]],
    ]
    lines = table(COLUMNS, rows)
    lines[-2] += "   (through proxy-1 / direct)"
    lines[-1] += "   (through proxy-1 - direct, as wrk sees it)"
    print("\n".join(lines))
    print()
    if log.get("requests"):
        print(
            f"proxy-1's own time per request (access log, request_time - upstream_response_time,"
            f" {log['requests']} requests): p50 {log['p50_ms']:g} ms, p99 {log['p99_ms']:g} ms,"
            f" max {log['max_ms']:g} ms, mean {log['mean_ms']:g} ms;"
            f" {log['share_zero']:.1%} at 0 ms, {log['share_negative']:.1%} below 0"
        )
        print(f"  requests by added ms: {log['requests_by_ms']}")
    else:
        print("proxy-1's own time per request: no log lines of this run")
    print(
        f"  (nginx's times have 1 ms resolution; retried requests skipped: "
        f"{log['skipped']['retried']}, without upstream: {log['skipped']['no_upstream']}, "
        f"non-200: {log['non_200']}, answered by another backend: {log['answered_by']['other']})"
    )
    print(
        "goals: proxy p99 added (access log, 1 ms resolution)"
        f" <= {goals['added_p99_ms_max']:g} ms: "
        f"{'met' if goals['added_p99_met'] else 'NOT met'}; "
        f"throughput >= {goals['rps_ratio_min']:g}x direct: "
        f"{'met' if goals['rps_ratio_met'] else 'NOT met'} ({ratios['rps']:.2f}x)"
        + ("" if goals["clean_run"] else "; run NOT clean (errors or another backend answered)")
    )
    if goals["capped_by_max_requests"]:
        print(
            f"  req/s not measured for {', '.join(goals['capped_by_max_requests'])}: the run"
            " reached --max-requests before --seconds (wrk divides by --seconds);"
            " raise --max-requests"
        )
    cpus = cond["cpus"]
    print(
        f"[nproc {cond['nproc']}; layout {cond['layout']}: wrk ({cond['wrk_threads']} thread(s),"
        f" {cond['connections']} connections) on CPU {cpus['loadgen']}, proxy-1's nginx"
        f" ({cond['proxy_nginx_workers']} workers) on CPU {cpus['proxy']},"
        f" backend ({cond['backend']}) on CPU {cpus['backend']};"
        f" same layout for both runs; {cond['seconds']} s or {cond['max_requests']} requests"
        " per run]"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--max-requests", type=int, default=1000000)
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default=None)
    parser.add_argument("--out", default=str(result_path("overhead")))
    args = parser.parse_args()
    nproc = os.cpu_count() or 1
    layout_name = args.layout or ("separate" if nproc >= 3 else "proxy-own-cpu")
    layout = LAYOUTS[layout_name]
    if max(max(cpus) for cpus in layout.values()) >= nproc:
        raise SystemExit(f"layout {layout_name} needs more CPUs than this machine's {nproc}")
    summary = summarize(run_bench(args, layout), args, layout_name)
    print_table(summary)
    write_json(args.out, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
