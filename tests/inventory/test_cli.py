"""inventories/cli.py: the listing (`python -m inventories.aws`), its JSON contract, its errors
and the settings table option."""

from __future__ import annotations

import json

import pytest

from inventories.cli import format_listing, main
from inventories.loader import load_inventory
from inventories.settings import settings_table_markdown
from inventory.fakes import REGION, Fleet, private_ip, settings_with
from tools.rollout import parse_inventory_json


def test_listing_prints_hosts_then_backends_that_are_not_targets(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    (proxy_1,) = fleet.launch("proxy-1")
    (app_1,) = fleet.launch("app-1", role="app")
    assert main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "ADDRESS", "USER", "INSTANCE", "GROUPS"]
    assert lines[1].split() == [
        "proxy-1",
        private_ip(fleet, proxy_1),
        "admin",
        proxy_1,
        *("proxies", "env_lab", "az_eu_west_1a", "region_eu_west_1"),
    ]
    assert lines[2:5] == [
        "",
        "backends (not deploy targets; the proxies' ec2_backend_addresses):",
        lines[4],
    ]
    assert lines[4].split() == ["NAME", "ADDRESS", "REGION", "INSTANCE"]
    assert lines[5].split() == ["app-1", private_ip(fleet, app_1), REGION, app_1]
    assert lines[-1] == "1 hosts (proxies: 1) and 1 backends (not hosts) in eu-west-1 from AWS"


def test_listing_counts_backends_as_hosts_when_set(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.launch("proxy-1")
    fleet.launch("app-1", role="app")
    monkeypatch.setenv("EC2_INVENTORY_BACKENDS_AS_HOSTS", "true")
    assert main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == ["app-1", "proxy-1"]
    assert lines[1].endswith(" backends env_lab az_eu_west_1a region_eu_west_1")
    assert lines[-1] == "2 hosts (proxies: 1, backends: 1) in eu-west-1 from AWS"


@pytest.mark.parametrize("as_hosts", [False, True])
def test_listing_json_follows_contract_sorted_by_name(
    fleet: Fleet,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    as_hosts: bool,
) -> None:
    fleet.launch("proxy-2")
    fleet.launch("proxy-1")
    (app_1,) = fleet.launch("app-1", role="app")
    monkeypatch.setenv("EC2_INVENTORY_BACKENDS_AS_HOSTS", str(as_hosts).lower())
    assert main(["--json"]) == 0
    output = capsys.readouterr().out
    listing = json.loads(output)
    proxies = ["proxy-1", "proxy-2"]
    assert [entry["name"] for entry in listing] == (["app-1", *proxies] if as_hosts else proxies)
    for entry in listing:
        assert set(entry) == {"name", "ssh_hostname", "groups", "data"}
        assert entry["ssh_hostname"] == entry["data"]["ssh_hostname"]
        is_proxy = entry["name"] in proxies
        assert entry["groups"][0] == ("proxies" if is_proxy else "backends")
        if is_proxy:
            assert entry["data"]["ec2_backend_addresses"] == [private_ip(fleet, app_1)]
    # tools/rollout.py reads this listing and deploys group `proxies` only, in this order.
    assert [h.name for h in parse_inventory_json(output)] == proxies


def test_listing_error_exits_2_without_traceback(
    empty_account: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert capsys.readouterr().err.startswith("EC2 inventory: error: no running EC2 instances")


def test_listing_mentions_bastion_when_set(fleet: Fleet) -> None:
    fleet.launch("proxy-1")
    settings = settings_with(EC2_INVENTORY_BASTION="jump@10.0.0.5")
    inventory = load_inventory(settings)
    assert format_listing(inventory, settings).endswith("via bastion jump@10.0.0.5:22")


def test_settings_table_option_prints_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--settings-table"]) == 0
    assert capsys.readouterr().out == settings_table_markdown()
