"""Unit tests of tools/rollout/hosts.py: the batch plan (counts, percentages, the canary first)
and the hosts read from the inventory's JSON."""

from __future__ import annotations

import json

import pytest
from rollout_fakes import HOSTS, names

from tools.rollout.errors import EXIT_USAGE, RolloutError
from tools.rollout.hosts import (
    Host,
    batch_sizes,
    inventory_module,
    parse_inventory_json,
    pick_canary,
    plan_batches,
)
from tools.rollout.settings import BatchItem, parse_batches

# --- Batches ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("1,25%,100%", ((1, False), (25, True), (100, True))),
        (" 2 , 50% ", ((2, False), (50, True))),
        ("3", ((3, False),)),
    ],
)
def test_parse_batches_counts_and_percentages(value, items):
    assert parse_batches("--batches", value) == tuple(BatchItem(*i) for i in items)


@pytest.mark.parametrize("value", ["0,50%", "0%", "101%", "", "1,,2", "a", "1.5", "-1", "%", "²"])
def test_parse_batches_bad_item_names_setting_and_what_is_allowed(value):
    with pytest.raises(RolloutError) as e:
        parse_batches("--batches", value)
    assert str(e.value) == (
        f"--batches={value!r}: items are counts of 1 or more or percentages from 1% to 100%, "
        "e.g. 1,25%,100%"
    )
    assert e.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    ("spec", "total", "sizes"),
    [
        ("1,2", 7, [1, 2, 2, 2]),  # the last item repeats
        ("1,25%,100%", 8, [1, 2, 5]),
        ("1,30%", 10, [1, 3, 3, 3]),  # the last batch takes what is left
        ("10%", 5, [1, 1, 1, 1, 1]),  # rounded down, at least 1
        ("1,99%", 3, [1, 2]),
        ("5,1", 3, [3]),
    ],
)
def test_batch_sizes_rounding_and_last_item_repeating(spec, total, sizes):
    assert batch_sizes(parse_batches("--batches", spec), total) == sizes


def test_plan_batches_canary_alone_first_then_batches_in_order():
    batches = plan_batches(HOSTS, HOSTS[2], (BatchItem(1), BatchItem(2)))
    assert names(batches) == [
        ["proxy-a-3"],
        ["proxy-a-1", "proxy-a-2"],
        ["proxy-a-4", "proxy-a-5"],
    ]


def test_plan_batches_canary_is_first_host_of_a_larger_first_batch():
    batches = plan_batches(HOSTS, HOSTS[3], parse_batches("x", "60%"))
    assert names(batches) == [["proxy-a-4", "proxy-a-1", "proxy-a-2"], ["proxy-a-3", "proxy-a-5"]]


def test_plan_batches_fleet_leaves_the_canary_out():
    batches = plan_batches(HOSTS, HOSTS[0], (BatchItem(1), BatchItem(3)), with_canary=False)
    assert names(batches) == [["proxy-a-2", "proxy-a-3", "proxy-a-4"], ["proxy-a-5"]]


def test_plan_batches_fleet_keeps_the_rest_of_the_canary_batch():
    items = parse_batches("x", "2,100%")
    batches = plan_batches(HOSTS, HOSTS[0], items, with_canary=False)
    assert names(batches) == [["proxy-a-2"], ["proxy-a-3", "proxy-a-4", "proxy-a-5"]]


def test_plan_batches_single_host_fleet_is_only_the_canary():
    assert names(plan_batches(HOSTS[:1], HOSTS[0], (BatchItem(5),))) == [["proxy-a-1"]]


# --- Hosts ------------------------------------------------------------------------------------


def test_inventory_module_from_path():
    assert inventory_module("inventories/aws.py") == "inventories.aws"


@pytest.mark.parametrize("path", ["/etc/inventory.py", "../x.py", "inventories/aws"])
def test_inventory_module_rejects_non_module_paths(path):
    with pytest.raises(RolloutError):
        inventory_module(path)


def test_parse_inventory_json_keeps_proxies_in_inventory_order():
    text = json.dumps(
        [
            {"name": "app-1", "ssh_hostname": "10.0.0.10", "groups": ["backends"], "data": {}},
            {"name": "proxy-2", "ssh_hostname": "10.0.0.102", "groups": ["proxies"], "data": {}},
            {"name": "proxy-1", "ssh_hostname": "10.0.0.101", "groups": ["proxies"], "data": {}},
        ]
    )
    assert parse_inventory_json(text) == [
        Host("proxy-2", "10.0.0.102"),
        Host("proxy-1", "10.0.0.101"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "no JSON"),
        ('{"name": "x"}', "not a list"),
        ('[{"name": "p", "groups": ["proxies"], "data": {}}]', "p has no ssh_hostname"),
    ],
)
def test_parse_inventory_json_refuses_bad_output(text, message):
    with pytest.raises(RolloutError, match=message):
        parse_inventory_json(text)


def test_pick_canary_defaults_to_first_proxy():
    assert pick_canary(HOSTS, None) == HOSTS[0]
    assert pick_canary(HOSTS, "proxy-a-3") == HOSTS[2]


def test_pick_canary_unknown_host_is_a_usage_error_listing_proxies():
    with pytest.raises(RolloutError) as e:
        pick_canary(HOSTS, "proxy-z-9")
    assert e.value.exit_code == EXIT_USAGE
    assert "proxy-z-9" in str(e.value)
    assert "proxy-a-1" in str(e.value)
