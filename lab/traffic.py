"""A bounded traffic generator, run inside a lab namespace (loadgen or outsider).

`python -m lab.traffic --url http://10.77.0.101/pets/1 --requests 2000 --concurrency 8`
prints one JSON object: requests sent, answers by status, connection errors, seconds taken.
The loop is bounded twice: by --requests and by --max-seconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit


def run_load(
    url: str,
    requests: int,
    concurrency: int,
    method: str,
    body: str,
    timeout: float,
    max_seconds: float,
) -> dict:
    """Send REQUESTS requests to URL from CONCURRENCY threads, each on a keepalive connection."""
    parts = urlsplit(url)
    path = parts.path or "/"
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    remaining = [requests]
    deadline = time.monotonic() + max_seconds

    def take() -> bool:
        with lock:
            if remaining[0] <= 0 or time.monotonic() > deadline:
                return False
            remaining[0] -= 1
            return True

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        while take():
            headers = {"X-Request-ID": uuid.uuid4().hex}
            if body:
                headers["Content-Type"] = "application/json"
            try:
                conn.request(method, path, body=body or None, headers=headers)
                response = conn.getresponse()
                response.read()
                outcome = str(response.status)
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                outcome = f"error:{type(exc).__name__}"
                conn.close()
            with lock:
                counts[outcome] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent = sum(counts.values())
    ok = sum(n for status, n in counts.items() if status[:1] in ("2", "3"))
    return {
        "url": url,
        "method": method,
        "requests": sent,
        "ok": ok,
        "success_rate": ok / sent if sent else 0.0,
        "outcomes": dict(sorted(counts.items())),
        "seconds": round(time.monotonic() - started, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", default="")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()
    result = run_load(
        args.url,
        args.requests,
        args.concurrency,
        args.method,
        args.body,
        args.timeout,
        args.max_seconds,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
