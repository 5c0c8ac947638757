"""The health gate: GET each health check of a host from the runner (no redirect followed, no
proxy from the environment), every check passing in the same attempt, up to the settings'
attempts. It decides nothing about the rollout: run.py counts its failures."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass

from tools.rollout.hosts import Host
from tools.rollout.settings import Check, Settings


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    attempts: int
    details: tuple[str, ...]  # one line per check of the last attempt


def url_for(address: str, port: int, path: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}{path}"


def probe(
    address: str, port: int, check: Check, timeout: float, host_header: str | None = None
) -> tuple[bool, str]:
    """One GET; no redirect followed, no proxy from the environment. Returns (ok, what happened)."""
    url = url_for(address, port, check.path)
    headers = {"User-Agent": "rollout-health-gate"}
    if host_header:
        headers["Host"] = host_header
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", check.path, headers=headers)
        status = conn.getresponse().status
    except TimeoutError:
        return False, f"GET {url}: no answer within {timeout:g} s"
    except OSError as e:
        return False, f"GET {url}: {e.strerror or e}"
    except http.client.HTTPException as e:
        return False, f"GET {url}: bad HTTP answer ({type(e).__name__})"
    finally:
        conn.close()
    if status != check.status:
        return False, f"GET {url} answered {status}, expected {check.status}"
    return True, f"GET {url} answered {status}"


ProbeFn = Callable[[str, int, Check, float, str | None], tuple[bool, str]]


def health_gate(
    host: Host,
    settings: Settings,
    *,
    probe_fn: ProbeFn = probe,
    sleep: Callable[[float], None] = time.sleep,
) -> HealthResult:
    """Every check must pass in the same attempt; up to `health_attempts` attempts."""
    details: tuple[str, ...] = ()
    for attempt in range(1, settings.health_attempts + 1):
        results = [
            probe_fn(
                host.address,
                settings.health_port,
                check,
                settings.health_timeout,
                settings.health_host,
            )
            for check in settings.health_checks
        ]
        details = tuple(text for _, text in results)
        if all(ok for ok, _ in results):
            return HealthResult(True, attempt, details)
        if attempt < settings.health_attempts:
            sleep(settings.health_interval)
    failing = tuple(text for ok, text in results if not ok)
    return HealthResult(False, settings.health_attempts, failing)
