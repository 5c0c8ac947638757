"""Give Terraform the hosts' firewall lists, so the security groups allow what nftables allows.

    python3 tools/firewall_tfvars.py group_data/env_production.py terraform/firewall.tfvars.json

Reads `admin_cidrs` and `allowed_http_cidrs` from an environment's group_data file and writes them
as a Terraform variables file (JSON) with the same names. The file is read with `ast`, nothing in
it runs: tools/terraform.sh calls this in the Terraform image, which has a bare python3 and no
pyinfra. A list the file does not set is left out, so Terraform's other inputs (tfvars, TF_VAR_*)
provide it. Exit 2 when a list is not a literal list of strings, or the file cannot be read.
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


def read_lists(path: Path) -> dict[str, list[str]]:
    """The firewall lists assigned at the top level of `path`, as Terraform variables."""
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
            if not (isinstance(target, ast.Name) and target.id in LISTS):
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
            found[LISTS[target.id]] = list(items)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: firewall_tfvars.py GROUP_DATA_FILE OUTPUT_JSON", file=sys.stderr)
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
