"""Give Terraform the hosts' firewall lists, so the security groups allow what nftables allows.

    python3 tools/firewall_tfvars.py group_data/env_production.py terraform/firewall.tfvars.json

Reads `admin_cidrs` and `allowed_http_cidrs` from an environment's group_data file and writes them
as a Terraform variables file (JSON) with the same names. The file is read with `ast`, nothing in
it runs: tools/terraform.sh calls this in the Terraform image, which has a bare python3 and no
pyinfra. A list the file does not set is left out, so Terraform's other inputs (tfvars, TF_VAR_*)
provide it. Exit 2 when a list is not a literal list of strings, or the file cannot be read.

The other direction, after an apply: the deploy's `lb_subnet_cidrs` (the default trusted proxies)
must be the networks Terraform's load balancer connects from.

    tools/terraform.sh output -json lb_subnet_cidrs > lb.json
    python3 tools/firewall_tfvars.py --check-lb-subnets lb.json group_data/env_production.py

Exit 1 when they differ (the message gives the line to write), 2 when a file cannot be read.
`terraform output -json` (every output) is accepted too.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Sequence
from pathlib import Path

# group_data name -> Terraform variable name (the same on purpose)
LISTS = {"admin_cidrs": "admin_cidrs", "allowed_http_cidrs": "allowed_http_cidrs"}


class ListError(Exception):
    pass


def read_lists(path: Path, names: Sequence[str] = tuple(LISTS)) -> dict[str, list[str]]:
    """The lists NAMES (default: the firewall lists) assigned at the top level of `path`, under
    their Terraform variable names."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (OSError, SyntaxError) as e:
        raise ListError(f"cannot read {path}: {e}") from None
    found: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if not (isinstance(target, ast.Name) and target.id in names):
                continue
            try:
                items = ast.literal_eval(value)
            except ValueError:
                raise ListError(
                    f"{path}: {target.id} must be a literal list of CIDR strings "
                    "(Terraform reads it without running the file)"
                ) from None
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise ListError(f"{path}: {target.id} = {items!r} is not a list of strings")
            found[LISTS.get(target.id, target.id)] = list(items)
    return found


def terraform_lb_subnets(path: Path) -> list[str]:
    """The `lb_subnet_cidrs` output from `terraform output -json [lb_subnet_cidrs]`."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ListError(f"cannot read {path}: {e}") from None
    if isinstance(data, dict):  # every output: {"name": {"value": ..., "type": ...}}
        data = (data.get("lb_subnet_cidrs") or {}).get("value")
    if not isinstance(data, list) or not data or not all(isinstance(i, str) for i in data):
        raise ListError(f"{path}: no lb_subnet_cidrs output (a non-empty list of CIDR strings)")
    return sorted(data)


def check_lb_subnets(outputs: Path, group_data: Path) -> str | None:
    """None when group_data's lb_subnet_cidrs are Terraform's; else what is wrong and the fix."""
    wanted = terraform_lb_subnets(outputs)
    found = read_lists(group_data, names=("lb_subnet_cidrs",)).get("lb_subnet_cidrs")
    if found is not None and sorted(found) == wanted:
        return None
    now = "sets lb_subnet_cidrs = " + json.dumps(found) if found is not None else "does not set it"
    return (
        f"{group_data} {now}, but the load balancer connects from {json.dumps(wanted)} (Terraform "
        "output lb_subnet_cidrs): nginx would not take the client address from its "
        "X-Forwarded-For, and per-client limits would key on the balancer; write "
        f"lb_subnet_cidrs = {json.dumps(wanted)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--check-lb-subnets"] and len(args) == 3:
        try:
            problem = check_lb_subnets(Path(args[1]), Path(args[2]))
        except ListError as e:
            print(f"firewall_tfvars: {e}", file=sys.stderr)
            return 2
        if problem:
            print(f"firewall_tfvars: {problem}", file=sys.stderr)
            return 1
        print(f"lb_subnet_cidrs in {args[2]} match Terraform's", file=sys.stderr)
        return 0
    if len(args) != 2:
        print(
            "usage: firewall_tfvars.py GROUP_DATA_FILE OUTPUT_JSON\n"
            "       firewall_tfvars.py --check-lb-subnets TERRAFORM_OUTPUT_JSON GROUP_DATA_FILE",
            file=sys.stderr,
        )
        return 2
    source, target = Path(args[0]), Path(args[1])
    try:
        lists = read_lists(source)
    except ListError as e:
        print(f"firewall_tfvars: {e}", file=sys.stderr)
        return 2
    target.write_text(json.dumps(lists, indent=2) + "\n")
    names = ", ".join(sorted(lists)) or "none"
    print(f"firewall lists from {source}: {names}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
