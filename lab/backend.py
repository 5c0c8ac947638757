"""The flaky backend: the veterinary hospital's server, failing at random.

Each request fails with probability `fail_rate`, in a way chosen at random from `fail_modes`:
an HTTP 500, an HTTP 502, or a dropped connection (closed without an answer). The same URL works
on a second try. A POST to /appointments creates the appointment before it may fail, as a real
server that crashes after its commit would: that is why retrying a POST is dangerous.

Run inside the app-1 namespace: `python -m lab.backend --address 10.77.0.10`. Its counters and
failure rate are read and set on a control port bound to the namespace's loopback only.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lab import config

ROUTES = [
    ("GET", re.compile(r"^/pets/(\d+)$"), "/pets/{id}"),
    ("GET", re.compile(r"^/appointments$"), "/appointments"),
    ("POST", re.compile(r"^/appointments$"), "/appointments"),
    # PUT and DELETE change state too: whether nginx retries them is tested (test_trust_lab.py).
    ("PUT", re.compile(r"^/appointments/(\d+)$"), "/appointments/{id}"),
    ("DELETE", re.compile(r"^/appointments/(\d+)$"), "/appointments/{id}"),
    # Answers with the request headers it received: what the proxy passes on (test_trust_lab.py).
    ("GET", re.compile(r"^/headers$"), "/headers"),
    ("GET", re.compile(r"^/health$"), "/health"),
]
FAIL_MODES = ("500", "502", "drop")


class Backend:
    """Shared state of the backend: failure settings and counters, behind one lock."""

    def __init__(self, fail_rate: float, fail_modes: tuple[str, ...], seed: int | None) -> None:
        self.lock = threading.Lock()
        self.fail_rate = fail_rate
        self.fail_modes = fail_modes
        self.random = random.Random(seed)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.attempts = 0
            self.outcomes: Counter[str] = Counter()
            self.routes: Counter[str] = Counter()
            self.appointments_created = 0
            self.request_ids: Counter[str] = Counter()

    def draw(self) -> str:
        """The outcome of one attempt: "ok" or a failure mode."""
        with self.lock:
            if self.random.random() < self.fail_rate:
                return self.random.choice(self.fail_modes)
            return "ok"

    def count(self, route: str, outcome: str, request_id: str | None) -> None:
        with self.lock:
            self.attempts += 1
            self.routes[route] += 1
            self.outcomes[outcome] += 1
            if request_id and len(self.request_ids) < 200_000:
                self.request_ids[request_id] += 1

    def stats(self) -> dict:
        with self.lock:
            per_request = Counter(self.request_ids.values())
            return {
                "attempts": self.attempts,
                "outcomes": dict(self.outcomes),
                "routes": dict(self.routes),
                "appointments_created": self.appointments_created,
                "fail_rate": self.fail_rate,
                "fail_modes": list(self.fail_modes),
                "attempts_per_request_id": {str(k): v for k, v in sorted(per_request.items())},
            }


def make_app_handler(backend: Backend) -> type[BaseHTTPRequestHandler]:
    class AppHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keepalive, as nginx's upstream keepalive expects
        timeout = config.BACKEND_IDLE_TIMEOUT  # idle keepalive connections are closed after this
        server_version = "vet-backend/1.0"
        # Headers and body go out in two writes: with Nagle's algorithm and the client's delayed
        # ACK each keepalive response would wait ~40 ms (measured: 363 req/s, p50 44 ms).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            pass  # counters, not logs: the load tests send thousands of requests

        def do_GET(self) -> None:
            self._serve("GET")

        def do_HEAD(self) -> None:
            self._serve("HEAD")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            route, match = _route(method, self.path.split("?")[0])
            if route is None:
                self._reply(404, {"error": "not found"})
                return
            outcome = backend.draw()
            backend.count(f"{method} {route}", outcome, self.headers.get("X-Request-ID"))
            if method == "POST":  # the side effect happens before the failure
                with backend.lock:
                    backend.appointments_created += 1
            if outcome == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if outcome != "ok":
                self._reply(int(outcome), {"error": f"backend failure {outcome}"})
                return
            if route == "/headers":
                self._reply(200, {"headers": [[k, v] for k, v in self.headers.items()]})
                return
            self._reply(*_answer(method, route, match, body))

        def _reply(self, status: int, payload: object) -> None:
            data = (json.dumps(payload) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    return AppHandler


def _route(method: str, path: str) -> tuple[str | None, re.Match | None]:
    for route_method, pattern, name in ROUTES:
        match = pattern.match(path)
        if match and (route_method == method or (method == "HEAD" and route_method == "GET")):
            return name, match
    return None, None


def _answer(method: str, route: str, match: re.Match | None, body: bytes) -> tuple[int, object]:
    if route == "/pets/{id}":
        return 200, {"id": int(match.group(1)), "name": "Rex", "species": "dog"}
    if route == "/appointments/{id}":
        return 200, {"id": int(match.group(1)), "method": method}
    if route == "/appointments" and method == "POST":
        return 201, {"created": True, "request": body.decode(errors="replace")[:200]}
    if route == "/appointments":
        return 200, [{"pet": 1, "at": "2026-12-01T09:00:00Z"}]
    return 200, {"status": "ok"}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the load tests open many connections at once


def make_control_handler(backend: Backend) -> type[BaseHTTPRequestHandler]:
    class ControlHandler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._reply(backend.stats())

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            if self.path == "/reset":
                backend.reset()
            if "fail_rate" in request:
                backend.fail_rate = float(request["fail_rate"])
            if "fail_modes" in request:
                backend.fail_modes = tuple(request["fail_modes"])
            self._reply(backend.stats())

        def _reply(self, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return ControlHandler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=config.BACKEND_PORT)
    parser.add_argument("--fail-rate", type=float, default=0.2)
    parser.add_argument("--fail-modes", default=",".join(FAIL_MODES))
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    backend = Backend(args.fail_rate, tuple(args.fail_modes.split(",")), args.seed)
    control = Server(("127.0.0.1", config.BACKEND_CONTROL_PORT), make_control_handler(backend))
    threading.Thread(target=control.serve_forever, daemon=True).start()
    Server((args.address, args.port), make_app_handler(backend)).serve_forever()


if __name__ == "__main__":
    main()
