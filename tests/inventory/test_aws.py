"""inventories/aws.py: the pyinfra inventory file, read as pyinfra reads it and through
pyinfra's CLI (a real moto_server on loopback)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from pyinfra.api import Inventory
from pyinfra.api.exceptions import NoGroupError

from inventory.fakes import AMI, REGION, REPO_ROOT, Fleet, private_ip


def execute_inventory_file() -> dict[str, Any]:
    """The groups `inventories/aws.py` defines, found as pyinfra 3.10 finds them.

    pyinfra execs the file with only __file__ set, then keeps list/tuple globals not starting
    with `_`. (Not pyinfra_cli's own loader in process: importing pyinfra_cli monkey-patches the
    whole test process with gevent.)
    """
    path = REPO_ROOT / "inventories" / "aws.py"
    namespace: dict[str, Any] = {"__file__": str(path)}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
    return {
        key: value
        for key, value in namespace.items()
        if not key.startswith("_") and isinstance(value, list | tuple)
    }


@pytest.mark.parametrize("as_hosts", [False, True])
def test_inventory_file_gives_pyinfra_proxies_with_backend_addresses(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, as_hosts: bool
) -> None:
    fleet.launch("proxy-1")
    (app_1,) = fleet.launch("app-1", role="app")
    monkeypatch.setenv("EC2_INVENTORY_BACKENDS_AS_HOSTS", str(as_hosts).lower())
    groups = execute_inventory_file()
    keyed = {"env_lab", "az_eu_west_1a", "region_eu_west_1"}
    assert set(groups) == {"proxies", *keyed, *(["backends"] if as_hosts else [])}
    # As pyinfra_cli builds it: `all` made of every group's hosts, each group (hosts, data).
    all_hosts = list(
        dict.fromkeys(entry[0] for entry in groups["proxies"] + groups.get("backends", []))
    )
    inventory = Inventory((all_hosts, {}), **{name: (hosts, {}) for name, hosts in groups.items()})
    expected = ["app-1", "proxy-1"] if as_hosts else ["proxy-1"]
    assert sorted(h.name for h in inventory) == expected
    assert sorted(h.name for h in inventory.get_group("env_lab")) == expected
    assert inventory.get_host("proxy-1").data.ec2_backend_addresses == [private_ip(fleet, app_1)]
    if as_hosts:
        assert [h.name for h in inventory.get_group("backends")] == ["app-1"]
    else:
        with pytest.raises(NoGroupError):
            inventory.get_group("backends")


@pytest.fixture(scope="module")
def moto_server_url() -> Iterator[str]:
    """A real moto_server on loopback, for pyinfra's CLI running in a subprocess."""
    from bench.inventory_build import running_moto_server

    with running_moto_server(Path(sys.executable).with_name("moto_server")) as url:
        client = boto3.client(
            "ec2",
            region_name=REGION,
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for name, role in [
            ("proxy-1", "reverse-proxy"),
            ("proxy-2", "reverse-proxy"),
            ("app-1", "app"),
        ]:
            tags = {"Name": name, "Role": role, "Environment": "lab", "SshAddress": "127.0.0.1"}
            client.run_instances(
                ImageId=AMI,
                MinCount=1,
                MaxCount=1,
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                    }
                ],
            )
        yield url


def run_pyinfra(url: str, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """pyinfra's CLI on the inventory file, from `cwd`, against the moto_server."""
    environment = {
        **os.environ,
        "AWS_ENDPOINT_URL": url,
        "ENVIRONMENT": "lab",
        # Only loopback: pyinfra connects to 127.0.0.1 on a closed port, which fails at once.
        "EC2_INVENTORY_HOSTNAME_PREFERENCE": "tag:SshAddress",
        **env,
    }
    command = [
        str(Path(sys.executable).with_name("pyinfra")),
        str(REPO_ROOT / "inventories/aws.py"),
    ]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def hosts_pyinfra_tries(url: str, cwd: Path, *limits: str, **env: str) -> list[str]:
    """Hosts pyinfra tries to reach with these `--limit`s; each fails at once (127.0.0.1:1)."""
    limit_options = [option for limit in limits for option in ("--limit", limit)]
    result = run_pyinfra(
        url,
        cwd,
        *limit_options,
        *("--port", "1", "--dry", "-y"),
        *("--data", f"ssh_known_hosts_file={cwd / 'known_hosts'}"),
        *("exec", "--", "true"),
        **env,
    )
    tried = re.findall(r"^\s*\[([^\]]+)\]\s+Could not connect", result.stderr, re.MULTILINE)
    return sorted(tried)


@pytest.mark.slow
def test_pyinfra_connects_to_the_proxies_only_by_default(
    moto_server_url: str, tmp_path: Path
) -> None:
    # Run from another directory: pyinfra execs the file without the repository on sys.path.
    assert hosts_pyinfra_tries(moto_server_url, tmp_path) == ["proxy-1", "proxy-2"]


@pytest.mark.slow
def test_pyinfra_limit_selects_host_by_name_and_group(moto_server_url: str, tmp_path: Path) -> None:
    # One run, two --limit values (pyinfra ORs them): a host name and a group name.
    tried = hosts_pyinfra_tries(
        moto_server_url, tmp_path, "proxy-2", "backends", EC2_INVENTORY_BACKENDS_AS_HOSTS="true"
    )
    assert tried == ["app-1", "proxy-2"]


@pytest.mark.slow
def test_pyinfra_shows_one_error_line_without_traceback_when_inventory_fails(
    moto_server_url: str, tmp_path: Path
) -> None:
    result = run_pyinfra(moto_server_url, tmp_path, "debug-inventory", ENVIRONMENT="nowhere")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("EC2 inventory")]
    assert errors == [
        "EC2 inventory: error: no running EC2 instances match the proxy filters "
        "(tag:Role=reverse-proxy Environment=nowhere) in eu-west-1; check ENVIRONMENT, "
        "EC2_INVENTORY_TAGS, EC2_INVENTORY_REGIONS, or set EC2_INVENTORY_ALLOW_EMPTY=true"
    ]
    assert "Traceback" not in result.stderr + result.stdout
