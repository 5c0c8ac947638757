"""tools/firewall_tfvars.py --check-lb-subnets: the deploy's lb_subnet_cidrs (the default trusted
proxies) against Terraform's output, after an apply (issue 13, item 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools import firewall_tfvars

REPO = Path(__file__).resolve().parent.parent
OUTPUT = ["10.0.2.0/24", "10.0.1.0/24"]


def files(tmp_path: Path, group_data: str, output: object) -> tuple[Path, Path]:
    outputs, env = tmp_path / "lb.json", tmp_path / "env_production.py"
    outputs.write_text(json.dumps(output))
    env.write_text(group_data)
    return outputs, env


@pytest.mark.parametrize(
    "output",
    [OUTPUT, {"lb_subnet_cidrs": {"value": OUTPUT, "type": ["list", "string"]}, "region": {}}],
    ids=["one output", "every output"],
)
def test_matching_subnets_pass_in_any_order(tmp_path: Path, output: object) -> None:
    outputs, env = files(tmp_path, 'lb_subnet_cidrs = ["10.0.1.0/24", "10.0.2.0/24"]\n', output)
    assert firewall_tfvars.check_lb_subnets(outputs, env) is None
    assert firewall_tfvars.main(["--check-lb-subnets", str(outputs), str(env)]) == 0


@pytest.mark.parametrize(
    ("group_data", "said"),
    [
        ('admin_cidrs = ["10.9.0.0/16"]\n', "does not set it"),
        ('lb_subnet_cidrs = ["10.0.1.0/24"]\n', 'sets lb_subnet_cidrs = ["10.0.1.0/24"]'),
    ],
)
def test_missing_or_stale_subnets_fail_with_the_line_to_write(
    tmp_path: Path, group_data: str, said: str
) -> None:
    outputs, env = files(tmp_path, group_data, OUTPUT)
    problem = firewall_tfvars.check_lb_subnets(outputs, env)
    assert problem is not None and said in problem
    assert problem.endswith('write lb_subnet_cidrs = ["10.0.1.0/24", "10.0.2.0/24"]')
    done = subprocess.run(
        [sys.executable, "tools/firewall_tfvars.py", "--check-lb-subnets", str(outputs), str(env)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and said in done.stderr, done.stderr


@pytest.mark.parametrize("output", [[], {"region": {"value": "eu-west-1"}}, "10.0.1.0/24"])
def test_unusable_terraform_output_is_an_error(tmp_path: Path, output: object) -> None:
    outputs, env = files(tmp_path, "", output)
    assert firewall_tfvars.main(["--check-lb-subnets", str(outputs), str(env)]) == 2


def test_firewall_lists_leave_lb_subnets_out_of_the_tfvars(tmp_path: Path) -> None:
    _, env = files(
        tmp_path, 'lb_subnet_cidrs = ["10.0.1.0/24"]\nadmin_cidrs = ["10.9.0.0/16"]\n', []
    )
    assert firewall_tfvars.read_lists(env) == {"admin_cidrs": ["10.9.0.0/16"]}


@pytest.mark.parametrize(
    ("group_data", "said"),
    [
        (
            'admin_cidrs = ["10.0.0.1/8"]\n',
            "admin_cidrs = ['10.0.0.1/8']: must be a list of CIDR networks (no host bits set)",
        ),
        ("allowd_http_cidrs = []\n", "did you mean allowed_http_cidrs?"),
        (
            'allowed_http_cidrs = ["10.0.1.0/24"]\nlb_subnet_cidrs = ["10.0.2.0/24"]\n'
            "firewall_enabled = True\n",
            "does not admit the load balancer's subnets 10.0.2.0/24",
        ),
    ],
    ids=["host bits", "unknown key", "rule across settings"],
)
def test_settings_the_deploy_refuses_stop_terraform_with_its_message(
    tmp_path: Path, group_data: str, said: str
) -> None:
    env = tmp_path / "env_production.py"
    env.write_text(group_data)
    with pytest.raises(firewall_tfvars.ListError, match="invalid settings in") as caught:
        firewall_tfvars.read_lists(env)
    assert said in str(caught.value)
    assert firewall_tfvars.main([str(env), str(tmp_path / "out.json")]) == 2
    assert not (tmp_path / "out.json").exists()


def test_lists_reach_terraform_as_the_deploy_normalises_them(tmp_path: Path) -> None:
    env = tmp_path / "env_production.py"
    env.write_text('import os\nadmin_cidrs = ["2001:DB8::/32"]\n_private = 1\n')
    assert firewall_tfvars.read_lists(env) == {"admin_cidrs": ["2001:db8::/32"]}


def test_group_data_keeps_what_pyinfra_keeps(tmp_path: Path) -> None:
    env = tmp_path / "env_production.py"
    env.write_text(
        "import os\nfrom json import dumps as _d\n__x = 1\n_sudo = True\nlisten_port = 81\n"
    )
    assert firewall_tfvars.group_data(env) == {"_sudo": True, "listen_port": 81}


def test_missing_group_data_file_is_named_without_a_repr(tmp_path: Path) -> None:
    missing = tmp_path / "env_nowhere.py"
    with pytest.raises(firewall_tfvars.ListError) as caught:
        firewall_tfvars.read_lists(missing)
    assert str(caught.value) == f"cannot read {missing}: No such file or directory"
