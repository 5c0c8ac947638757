"""Unit tests of tools/rollout/settings.py: where each setting comes from, which wins, and the
errors that name the key and its value."""

from __future__ import annotations

import pytest
from rollout_fakes import settings

from tools.rollout.errors import EXIT_USAGE, RolloutError
from tools.rollout.settings import BatchItem, Check

# --- Settings ---------------------------------------------------------------------------------


def test_settings_defaults_when_nothing_given():
    s = settings()
    assert s.inventory == "inventories/aws.py"
    assert s.canary is None
    assert s.batches == (BatchItem(1), BatchItem(1))
    assert s.max_fail_percent == 0
    assert s.health_port == 80
    assert s.health_checks == (Check("/healthz", 200), Check("/readyz", 200))


def test_settings_environment_used_and_command_line_wins():
    env = {
        "ROLLOUT_BATCH_SIZE": "3",
        "CANARY_HOST": "proxy-a-2",
        "HEALTH_CHECKS": "/healthz=200",
        "ROLLOUT_MAX_FAIL_PERCENT": "10",
    }
    s = settings(["--batch-size", "4", "--max-fail-percent", "25"], env)
    assert s.batches == (BatchItem(1), BatchItem(4))
    assert s.max_fail_percent == 25
    assert s.canary == "proxy-a-2"
    assert s.health_checks == (Check("/healthz", 200),)


def test_settings_batches_from_the_environment():
    s = settings([], {"ROLLOUT_BATCHES": "1,25%,100%"})
    assert s.batches == (BatchItem(1), BatchItem(25, True), BatchItem(100, True))


def test_settings_command_line_batch_size_beats_environment_batches():
    s = settings(["--batch-size", "2"], {"ROLLOUT_BATCHES": "50%"})
    assert s.batches == (BatchItem(1), BatchItem(2))


def test_settings_empty_environment_variable_counts_as_unset():
    env = {
        "CANARY_HOST": "",
        "ROLLOUT_BATCH_SIZE": " ",
        "ROLLOUT_BATCHES": "",
        "ROLLOUT_MAX_FAIL_PERCENT": "",
    }
    assert settings([], env) == settings()


def test_settings_health_check_option_is_repeatable():
    s = settings(["--health-check", "/healthz=200", "--health-check", "/readyz=204"])
    assert s.health_checks == (Check("/healthz", 200), Check("/readyz", 204))


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--batches", "1,50%", "--batch-size", "2"], {}, "--batches='1,50%' and --batch-size='2'"),
        ([], {"ROLLOUT_BATCHES": "50%", "ROLLOUT_BATCH_SIZE": "2"}, "ROLLOUT_BATCHES='50%' and"),
    ],
)
def test_settings_batches_and_batch_size_together_are_refused_naming_both(argv, env, message):
    with pytest.raises(RolloutError) as e:
        settings(argv, env)
    assert message in str(e.value)
    assert "not both" in str(e.value)
    assert e.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"ROLLOUT_BATCH_SIZE": "0"}, "ROLLOUT_BATCH_SIZE='0'"),
        ({"ROLLOUT_BATCH_SIZE": "two"}, "ROLLOUT_BATCH_SIZE='two'"),
        ({"ROLLOUT_MAX_FAIL_PERCENT": "101"}, "ROLLOUT_MAX_FAIL_PERCENT='101'"),
        ({"ROLLOUT_MAX_FAIL_PERCENT": "-1"}, "ROLLOUT_MAX_FAIL_PERCENT='-1'"),
        ({"ROLLOUT_MAX_FAIL_PERCENT": "10%"}, "ROLLOUT_MAX_FAIL_PERCENT='10%'"),
        ({"HEALTH_PORT": "70000"}, "HEALTH_PORT='70000'"),
        ({"HEALTH_CHECKS": "healthz=200"}, "HEALTH_CHECKS='healthz=200'"),
        ({"HEALTH_CHECKS": "/healthz=999"}, "HEALTH_CHECKS='/healthz=999'"),
        ({"HEALTH_TIMEOUT": "-1"}, "HEALTH_TIMEOUT='-1'"),
    ],
)
def test_settings_bad_value_names_the_key_and_value(env, key):
    with pytest.raises(RolloutError) as e:
        settings([], env)
    assert key in str(e.value)
    assert e.value.exit_code == EXIT_USAGE
