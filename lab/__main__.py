"""`python -m lab SUBCOMMAND`: up, down, status, env, exec, backend, traffic, demo."""

from __future__ import annotations

import argparse
import json
import sys

from lab import config, core, fakeaws, lb
from lab.sh import LabError


def _suites(pairs: list[str]) -> dict[int, str]:
    suites = dict(config.DEFAULT_SUITES)
    for pair in pairs:
        name, _, suite = pair.partition("=")
        if (
            not name.startswith("proxy-")
            or not name[6:].isdigit()
            or suite not in ("trixie", "bookworm")
        ):
            raise LabError(f"--suite {pair!r}: expected proxy-N=trixie or proxy-N=bookworm")
        suites[int(name[6:])] = suite
    return suites


def cmd_up(args: argparse.Namespace) -> int:
    core.up(args.proxies, _suites(args.suite))
    return cmd_status(args)


def cmd_down(args: argparse.Namespace) -> int:
    core.down()
    print("lab removed")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    lab_state = core.state.load()
    if not lab_state.get("proxies"):
        print("the lab is down")
        return 0
    rows = core.status()
    for row in rows:
        extra = ""
        if "ssh" in row:
            extra = f"running={row['running']} ssh={'yes' if row['ssh'] else 'no'}"
        print(f"{row['name']:<10} {row['address']:<12} {row['role']:<14} {row['suite']:<9} {extra}")
    if not core.state.pid_alive(lab_state["pids"].get("moto")):
        # Its address is the lab bridge's: without the lab, a request there would leave the
        # machine by the default route.
        print("\nfake EC2: not running")
        return 0
    try:
        print(f"\nfake EC2 at {fakeaws.endpoint()}:")
        for inst in fakeaws.instances():
            print(
                f"  {inst['id']}  {inst['name']:<10} {inst['private_ip']:<12} "
                f"Role={inst['role']} {inst['state']}"
            )
    except Exception as exc:  # status must work on a half-up lab
        print(f"  (not answering: {exc})")
    try:
        if not core.state.pid_alive(lab_state["pids"].get("lb")):
            raise OSError("not running")
        applied = lb.read_state()
        weights = " ".join(f"{g}={w}" for g, w in sorted(applied["weights"].items()))
        print(f"\nload balancer {config.LB_NAME} at {config.LB_ADDRESS}: weights {weights}")
    except (OSError, ValueError, KeyError):
        print("\nload balancer: not running")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    if not core.state.pid_alive(core.state.load()["pids"].get("moto")):
        # The endpoint is the lab bridge's address: without the lab it would route elsewhere.
        raise LabError("the lab is down: run `python -m lab up` first")
    print("\n".join(core.env_lines()))
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise LabError("exec needs a command: python -m lab exec NAME -- CMD ...")
    return core.exec_command(args.name, command)


def cmd_backend(args: argparse.Namespace) -> int:
    payload = {}
    if args.fail_rate is not None:
        if not 0.0 <= args.fail_rate <= 1.0:
            raise LabError(f"--fail-rate {args.fail_rate}: must be from 0 to 1")
        payload["fail_rate"] = args.fail_rate
    path = "/reset" if args.reset else "/"
    print(
        json.dumps(
            core.backend_control(path, payload if (payload or args.reset) else None), indent=2
        )
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from lab import demo

    return demo.main()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up", help="boot the lab (idempotent)")
    p.add_argument("--proxies", type=int, default=3)
    p.add_argument(
        "--suite",
        action="append",
        default=[],
        metavar="proxy-N=SUITE",
        help="Debian suite of one proxy (default: proxy-3 bookworm, others trixie)",
    )
    p.set_defaults(func=cmd_up)
    sub.add_parser("down", help="remove everything the lab made").set_defaults(func=cmd_down)
    sub.add_parser("status", help="hosts, addresses, SSH").set_defaults(func=cmd_status)
    sub.add_parser("env", help="export lines for pyinfra/boto3").set_defaults(func=cmd_env)
    p = sub.add_parser("exec", help="run a command inside a lab member")
    p.add_argument("name")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)
    p = sub.add_parser("backend", help="read or change the backend's failure rate and counters")
    p.add_argument("--fail-rate", type=float)
    p.add_argument("--reset", action="store_true", help="zero the counters")
    p.set_defaults(func=cmd_backend)
    sub.add_parser("demo", help="deploy, then show retries and the firewall at work").set_defaults(
        func=cmd_demo
    )
    args = parser.parse_args(argv)
    if args.cmd == "up" and not 1 <= args.proxies <= 50:
        parser.error("--proxies must be from 1 to 50")
    try:
        return args.func(args)
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
