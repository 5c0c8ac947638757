"""`python -m lab demo` (`make demo`): the main job on the lab, end to end.

Deploys the proxies through the fake EC2 with the real inventory, then sends traffic from
`loadgen` with the backend failing, and prints the success rate direct vs through the proxies,
the attempts per request next to the theory (1 - p^k), whether the outsider is kept out, and
the reliability report computed from the proxies' access logs.
"""

from __future__ import annotations

import os
import subprocess
import sys

from lab import core
from lab.config import BACKEND_PORT

FAIL_RATE = 0.2
REQUESTS = 2000


def deploy() -> None:
    print("==> pyinfra inventories/aws.py deploy.py (through the fake EC2, over SSH)", flush=True)
    env = dict(os.environ, **core.env_vars())
    env.pop("CI", None)
    subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "pyinfra"),
            "-y",
            "inventories/aws.py",
            "deploy.py",
        ],
        cwd=core.REPO,
        env=env,
        check=True,
    )


def traffic_table(proxies: list) -> None:
    from tasks.settings import Settings

    tries = Settings().tries  # the lab's group_data keeps the default tries
    print(f"\n==> traffic from loadgen, backend failing {FAIL_RATE:.0%} (500, 502, dropped)")
    print(f"{'target':<22} {'requests':>8} {'success':>9} {'attempts/request':>17}")
    rows = [("direct to app-1", f"http://10.77.0.10:{BACKEND_PORT}/pets/1")]
    rows += [(f"through {n.name}", f"http://{n.address}/pets/1") for n in proxies]
    for label, url in rows:
        core.backend_control("/reset", {"fail_rate": FAIL_RATE})
        result = core.traffic("loadgen", url, requests=REQUESTS)
        attempts = core.backend_control()["attempts"] / max(result["requests"], 1)
        print(
            f"{label:<22} {result['requests']:>8} {result['success_rate']:>9.2%} {attempts:>17.3f}"
        )
    p = FAIL_RATE
    print(
        f"theory with k={tries} tries: success 1 - p^k = {1 - p**tries:.3%}, "
        f"attempts (1 - p^k)/(1 - p) = {(1 - p**tries) / (1 - p):.3f}"
    )


def outsider_table(proxies: list) -> None:
    print("\n==> who gets in (after hardening)")
    for source in ("loadgen", "outsider"):
        for port in (80, 22):
            reached = [n.name for n in proxies if core.can_connect(source, n.address, port)]
            verdict = f"reaches {', '.join(reached)}" if reached else "kept out"
            print(f"{source:<9} port {port:<3}: {verdict}")


def main() -> int:
    lab_state = core.state.load()
    proxies = [n for n in core.members_of(lab_state) if n.role == "reverse-proxy"]
    if not proxies:
        print("the lab is down: run `make demo` (or python -m lab up) first", file=sys.stderr)
        return 2
    deploy()
    traffic_table(proxies)
    outsider_table(proxies)
    core.backend_control("/reset", {"fail_rate": FAIL_RATE})
    report()
    return 0


def report() -> None:
    """The reliability report from the proxies' own logs (python -m report --from-hosts)."""
    print(
        "\n==> python -m report --from-hosts (the proxies' JSON access logs, over SSH)", flush=True
    )
    env = dict(os.environ, **core.env_vars())
    subprocess.run(
        [sys.executable, "-m", "report", "--from-hosts"], cwd=core.REPO, env=env, check=False
    )
