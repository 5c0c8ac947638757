"""Give Terraform the hosts' firewall lists, so the security groups allow what nftables allows.

    python3 tools/firewall_tfvars.py group_data/env_production.py terraform/firewall.tfvars.json

Reads `admin_cidrs` and `allowed_http_cidrs` from an environment's group_data file and writes them
as a Terraform variables file (JSON) with the same names. The file is loaded as pyinfra loads
group data (run, then its top-level names, less those its imports bind) and its settings are
checked by the deploy's own rules (tasks/settings.py), so Terraform gets exactly the networks
nftables gets, and a setting the deploy would refuse stops Terraform with the deploy's message.
tools/terraform.sh calls this in the Terraform image, which has a bare python3 and no pyinfra:
tasks/settings.py imports without it. A list the file does not set is left out, so Terraform's
other inputs (tfvars, TF_VAR_*) provide it. Exit 2 when the file cannot be run or its settings
are refused.

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
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script (tools/terraform.sh): the deploy's modules
    sys.path.insert(0, str(REPO))

from tasks.settings import SettingsError, group_data_values  # noqa: E402

# group_data name -> Terraform variable name (the same on purpose)
LISTS = {"admin_cidrs": "admin_cidrs", "allowed_http_cidrs": "allowed_http_cidrs"}


class ListError(Exception):
    pass


def read_lists(path: Path, names: Sequence[str] = tuple(LISTS)) -> dict[str, list[str]]:
    """The lists NAMES (default: the firewall lists) that the group_data file `path` sets, as the
    deploy's checks convert them, under their Terraform variable names."""
    try:
        values = group_data_values(group_data(path, names))
    except SettingsError as error:
        raise ListError(f"invalid settings in {path}:\n{error}") from None
    return {LISTS.get(name, name): list(values[name]) for name in names if name in values}


def group_data(path: Path, names: Sequence[str] = tuple(LISTS)) -> dict[str, Any]:
    """The data pyinfra takes from the group_data file `path`: the names it defines at top level
    when run, less `__*` and the names its import statements bind (pyinfra_cli's
    _get_group_data). NAMES: what is being read, for the error message."""
    try:
        source = path.read_text()
    except OSError as e:
        raise ListError(f"cannot read {path}: {e.strerror}") from None
    try:
        imported = _imported_names(ast.parse(source, filename=str(path)))
        found: dict[str, Any] = {"__file__": str(path)}
        exec(compile(source, str(path), "exec"), found)
    except Exception as e:  # anything the file raises: it cannot give its settings
        raise ListError(f"cannot run {path} to read {', '.join(names)}: {e!r}") from None
    return {k: v for k, v in found.items() if not k.startswith("__") and k not in imported}


def _imported_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names if alias.name != "*")
    return names


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
