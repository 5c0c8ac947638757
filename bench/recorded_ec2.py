"""A fake EC2 that answers from recorded HTTP responses, as fast as a web server can.

moto renders each DescribeInstances page in Python (about 5 ms per instance on the project
machine), so a benchmark against it measures moto, not the client. This module records, once,
the raw HTTP responses moto gives to the requests a client actually makes, then serves those
bytes again from a tiny local server, matched like AWS matches them:

- `recording_proxy(upstream)`: a loopback HTTP server that forwards every request to `upstream`
  (a moto_server), keeps each (request, response) pair, and adds up the time the upstream took
  to answer. Point the client at it (`AWS_ENDPOINT_URL`) for one run: that run is the recording.
- `serving(recording)`: a loopback HTTP server that answers each request with the recorded
  response of the same Action, the same parameters and the same NextToken. A request for a page
  that was never handed out gets EC2's own answer to an invalid token (400,
  `InvalidParameterValue`); a request that was never recorded at all gets a 400 saying so
  (`UnrecordedRequest`), never a guess.

The parameters matched are every form field of the AWS query protocol (EC2 and STS) except the
NextToken: Action, Version, Filters, MaxResults... so a client asking for other filters or another
page size is not served another query's pages. Signatures and credentials are not checked (the
client signs with whatever it has; no one verifies here).

Servers run in a daemon thread of the calling process on 127.0.0.1 and a free port, HTTP/1.1 with
keep-alive like AWS's endpoints. A recording can be saved as JSON and served from the command line:

    .venv/bin/python -m bench.recorded_ec2 RECORDING.json [--port 5077]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from xml.sax.saxutils import escape

RECORDING_FORMAT = 1
LOOPBACK = "127.0.0.1"
UPSTREAM_TIMEOUT_SECONDS = 600.0  # moto takes 5 s or more for a 1,000-instance page
SHUTDOWN_POLL_SECONDS = 0.05  # how soon a stopped server notices (the default is 0.5 s)


@dataclass(frozen=True)
class RequestKey:
    """What identifies a request: its Action, its other parameters, and its NextToken."""

    action: str
    parameters: str  # every form field but Action and NextToken, sorted, URL-encoded
    next_token: str  # "" for a first page

    @classmethod
    def from_form(cls, form: str) -> RequestKey:
        """The key of an AWS query-protocol request (the POST body or the URL's query)."""
        fields = parse_qsl(form, keep_blank_values=True)
        action = next((value for name, value in fields if name == "Action"), "")
        token = next((value for name, value in fields if name == "NextToken"), "")
        rest = sorted((n, v) for n, v in fields if n not in {"Action", "NextToken"})
        return cls(action=action, parameters=urlencode(rest), next_token=token)

    def query(self) -> tuple[str, str]:
        """The request without its page: (Action, parameters)."""
        return (self.action, self.parameters)


@dataclass(frozen=True)
class RecordedResponse:
    """One HTTP response as the upstream sent it (status, content type, body bytes)."""

    status: int
    content_type: str
    body: bytes


@dataclass
class Recording:
    """Responses by request, in the order they were recorded."""

    responses: dict[RequestKey, RecordedResponse] = field(default_factory=dict)

    def add(self, key: RequestKey, response: RecordedResponse) -> None:
        """Keep the response to a request; a request made again (a client's retry after an
        error) keeps the last answer, the one the client went on with."""
        self.responses[key] = response

    def lookup(self, key: RequestKey) -> RecordedResponse | None:
        """The recorded response, or None."""
        return self.responses.get(key)

    def knows_query(self, key: RequestKey) -> bool:
        """Whether some page of this request (same Action and parameters) was recorded."""
        return any(known.query() == key.query() for known in self.responses)

    def page_counts(self) -> dict[str, int]:
        """Action -> number of recorded responses (pages)."""
        counts: dict[str, int] = {}
        for key in self.responses:
            counts[key.action] = counts.get(key.action, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (bodies in base64: they are bytes)."""
        return {
            "format": RECORDING_FORMAT,
            "responses": [
                {
                    "action": key.action,
                    "parameters": key.parameters,
                    "next_token": key.next_token,
                    "status": response.status,
                    "content_type": response.content_type,
                    "body": base64.b64encode(response.body).decode("ascii"),
                }
                for key, response in self.responses.items()
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recording:
        """The inverse of `to_json`."""
        if data.get("format") != RECORDING_FORMAT:
            raise ValueError(f"not a recording of format {RECORDING_FORMAT}")
        recording = cls()
        for item in data["responses"]:
            key = RequestKey(item["action"], item["parameters"], item["next_token"])
            body = base64.b64decode(item["body"])
            recording.add(key, RecordedResponse(item["status"], item["content_type"], body))
        return recording

    def save(self, path: Path) -> None:
        """Write the recording as JSON."""
        path.write_text(json.dumps(self.to_json()), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Recording:
        """Read a recording written by `save`."""
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


def ec2_error(code: str, message: str) -> RecordedResponse:
    """An error in the EC2 query protocol's XML shape, as AWS sends it (HTTP 400)."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    )
    return RecordedResponse(400, "text/xml;charset=UTF-8", body.encode())


def replay(recording: Recording, key: RequestKey) -> RecordedResponse:
    """The answer the fake gives to a request: the recorded page, or an AWS-like error."""
    response = recording.lookup(key)
    if response is not None:
        return response
    if key.next_token and recording.knows_query(key):
        # EC2's words for a token it did not hand out.
        return ec2_error(
            "InvalidParameterValue",
            f"Value ( {key.next_token} ) for parameter NextToken is invalid. The token is invalid.",
        )
    return ec2_error(
        "UnrecordedRequest",
        f"no recorded response to {key.action or 'a request without Action'} with these "
        "parameters; record it first",
    )


class _Handler(BaseHTTPRequestHandler):
    """Answers AWS query-protocol requests (POST form body, or GET with a query string)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    server: _FakeEc2Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._answer(self.rfile.read(length))

    def do_GET(self) -> None:
        self._answer(urlsplit(self.path).query.encode())

    def _answer(self, body: bytes) -> None:
        key = RequestKey.from_form(body.decode("utf-8"))
        response = self.server.respond(key, self.command, self.path, self.headers, body)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a benchmark's output is its table."""


class _FakeEc2Server(ThreadingHTTPServer):
    """A loopback server that replays a recording, or records what an upstream answers."""

    daemon_threads = True

    def __init__(self, recording: Recording, upstream: str | None, port: int = 0) -> None:
        super().__init__((LOOPBACK, port), _Handler)
        self.recording = recording
        self.upstream = urlsplit(upstream) if upstream else None
        self.upstream_seconds = 0.0
        self.requests = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """Where clients reach it (AWS_ENDPOINT_URL)."""
        return f"http://{LOOPBACK}:{self.server_address[1]}"

    def respond(
        self, key: RequestKey, method: str, path: str, headers: Any, body: bytes
    ) -> RecordedResponse:
        """Replay, or forward and record."""
        with self._lock:
            self.requests += 1
        if self.upstream is None:
            return replay(self.recording, key)
        started = time.perf_counter()
        response = self._forward(method, path, headers, body)
        with self._lock:
            self.upstream_seconds += time.perf_counter() - started
            self.recording.add(key, response)
        return response

    def _forward(self, method: str, path: str, headers: Any, body: bytes) -> RecordedResponse:
        """The upstream's answer to the same request (headers kept: the signature covers Host)."""
        assert self.upstream is not None
        connection = http.client.HTTPConnection(
            self.upstream.hostname or LOOPBACK,
            self.upstream.port or 80,
            timeout=UPSTREAM_TIMEOUT_SECONDS,
        )
        try:
            forwarded = {name: value for name, value in headers.items() if name != "Connection"}
            connection.request(method, path, body=body or None, headers=forwarded)
            answer = connection.getresponse()
            payload = answer.read()
            content_type = answer.getheader("Content-Type", "text/xml")
            return RecordedResponse(answer.status, content_type, payload)
        finally:
            connection.close()


@contextmanager
def _running(server: _FakeEc2Server) -> Iterator[_FakeEc2Server]:
    """Serve in a daemon thread until the block ends."""
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
        name="fake-ec2",
        daemon=True,
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def serving(recording: Recording) -> Iterator[_FakeEc2Server]:
    """A fake EC2 answering from `recording`; `.url` is its endpoint."""
    with _running(_FakeEc2Server(recording, upstream=None)) as server:
        yield server


@contextmanager
def recording_proxy(upstream: str, recording: Recording | None = None) -> Iterator[_FakeEc2Server]:
    """A proxy in front of `upstream` that records into `.recording`; `.upstream_seconds` is the
    time spent waiting for the upstream's answers."""
    with _running(_FakeEc2Server(recording or Recording(), upstream=upstream)) as server:
        yield server


def main(argv: list[str] | None = None) -> int:
    """Serve a saved recording until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recording", type=Path, help="a recording saved by Recording.save")
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    options = parser.parse_args(argv)
    server = _FakeEc2Server(Recording.load(options.recording), upstream=None, port=options.port)
    print(f"AWS_ENDPOINT_URL={server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
