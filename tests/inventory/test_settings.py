"""inventories/settings.py: the EC2_INVENTORY_* settings, their defaults, refusals and table."""

from __future__ import annotations

import pytest

from inventories.errors import InventoryError
from inventories.settings import SETTINGS, InventorySettings, settings_table_markdown
from inventory.fakes import REGION, REPO_ROOT, settings_with


def test_settings_defaults_when_only_region_is_set() -> None:
    settings = settings_with()
    assert settings.regions == (REGION,)
    assert [(f.name, f.values) for f in settings.proxy_tags] == [("tag:Role", ("reverse-proxy",))]
    assert settings.backend_tags is not None
    assert [(f.name, f.values) for f in settings.backend_tags] == [("tag:Role", ("app",))]
    assert not settings.backends_as_hosts
    assert settings.states == ("running",)
    assert settings.hostname_preference == ("private-ip",)
    assert settings.ssh_user == "admin"
    assert settings.retry_mode == "standard"
    assert settings.cache_ttl == 0
    assert settings.bastion is None
    assert not settings.allow_empty


def test_regions_setting_wins_over_aws_region_variables() -> None:
    settings = settings_with(EC2_INVENTORY_REGIONS="eu-west-1, us-east-1", AWS_REGION="eu-west-3")
    assert settings.regions == ("eu-west-1", "us-east-1")


def test_aws_region_wins_over_aws_default_region_when_both_set() -> None:
    assert settings_with(AWS_REGION="eu-central-1").regions == ("eu-central-1",)


def test_environment_adds_environment_tag_filter_when_set() -> None:
    settings = settings_with(ENVIRONMENT="lab")
    filters = settings.selection_filters(settings.proxy_tags)
    assert ("tag:Environment", ("lab",)) in [(f.name, f.values) for f in filters]


def test_tag_filters_accept_alternatives_and_wildcards() -> None:
    settings = settings_with(EC2_INVENTORY_TAGS="Role=edge-*;Team=a, b")
    assert [(f.name, f.values) for f in settings.proxy_tags] == [
        ("tag:Role", ("edge-*",)),
        ("tag:Team", ("a", "b")),
    ]


def test_bastion_defaults_to_ssh_user_and_port_22_when_not_given() -> None:
    bastion = settings_with(EC2_INVENTORY_BASTION="jump.example.com").bastion
    assert bastion is not None
    assert bastion.jump_spec == "admin@jump.example.com:22"


def test_cache_ttl_is_forced_off_when_ci_is_true() -> None:
    assert settings_with(EC2_INVENTORY_CACHE_TTL="60").cache_ttl == 60
    assert settings_with(EC2_INVENTORY_CACHE_TTL="60", CI="true").cache_ttl == 0


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("EC2_INVENTORY_REGIONS", "eu-west-9", "not an AWS region (did you mean eu-west-3?)"),
        ("EC2_INVENTORY_REGIONS", "eu-west-1,eu-west-1", "lists a region twice"),
        ("EC2_INVENTORY_TAGS", "Role", "is not `key=value"),
        ("EC2_INVENTORY_TAGS", "", "every instance would become a proxy"),
        ("EC2_INVENTORY_TAGS", "Role=a;Role=b", "'Role' is given twice"),
        ("EC2_INVENTORY_BACKEND_TAGS", "=app", "is not `key=value"),
        ("EC2_INVENTORY_STATES", "running,sleeping", "'sleeping' is not allowed"),
        ("EC2_INVENTORY_STATES", "", "is not allowed"),
        ("EC2_INVENTORY_FILTERS", "vpc-id=", "is not `key=value"),
        ("EC2_INVENTORY_EXCLUDE", "tag:Maintenance", "is not `key=value"),
        ("EC2_INVENTORY_ROLE_ARN", "arn:aws:iam::1:user/x", "expected arn:aws:iam::"),
        ("EC2_INVENTORY_ROLE_SESSION_NAME", "x", "expected 2-64 characters"),
        ("EC2_INVENTORY_RETRY_MODE", "legacy", "expected one of standard, adaptive"),
        ("EC2_INVENTORY_MAX_ATTEMPTS", "0", "from 1 to 20"),
        ("EC2_INVENTORY_CONNECT_TIMEOUT", "soon", "number of seconds"),
        ("EC2_INVENTORY_PAGE_SIZE", "2000", "from 5 to 1000"),
        ("EC2_INVENTORY_HOSTNAME_TAG", "", "one non-empty word"),
        ("EC2_INVENTORY_DUPLICATE_NAMES", "rename", "expected one of suffix, always, error"),
        ("EC2_INVENTORY_NAME_SUFFIX_LENGTH", "18", "from 1 to 17"),
        ("EC2_INVENTORY_HOSTNAME_PREFERENCE", "private-ip,ipv6", "'ipv6' is not allowed"),
        ("EC2_INVENTORY_HOSTNAME_PREFERENCE", ",", "is empty"),
        ("EC2_INVENTORY_SSH_USER", "two words", "one non-empty word"),
        ("EC2_INVENTORY_BASTION", "jump host", "expected [user@]host[:port]"),
        ("EC2_INVENTORY_BASTION", "jump:99999", "expected [user@]host[:port]"),
        ("EC2_INVENTORY_KEYED_GROUPS", "Env=tag:Environment", "is not `prefix=source`"),
        ("EC2_INVENTORY_KEYED_GROUPS", "zone=placement", "is not `prefix=source`"),
        ("EC2_INVENTORY_KEYED_GROUPS", "proxies=region", "is a fixed group"),
        ("EC2_INVENTORY_ALLOW_EMPTY", "maybe", "expected true or false"),
        ("EC2_INVENTORY_BACKENDS_AS_HOSTS", "sometimes", "expected true or false"),
        ("EC2_INVENTORY_CACHE_TTL", "-1", "from 0 to"),
        ("AWS_ENDPOINT_URL", "127.0.0.1:5077", "expected an http:// or https:// URL"),
    ],
)
def test_settings_reject_bad_value_naming_variable_and_value(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(InventoryError) as caught:
        settings_with(**{variable: value})
    message = str(caught.value)
    assert variable in message
    assert expected in message
    if value.strip(",;"):
        assert value.split(",")[-1].split(";")[-1].strip() in message


def test_unknown_setting_is_rejected_with_suggestion() -> None:
    with pytest.raises(InventoryError, match="EC2_INVENTORY_REGION is not an inventory setting; "):
        settings_with(EC2_INVENTORY_REGION="eu-west-1")


def test_no_region_is_an_error_when_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(InventoryError, match="no region to query: set EC2_INVENTORY_REGIONS"):
        InventorySettings.from_environ()


def test_backends_as_hosts_without_backend_tags_is_an_error() -> None:
    assert settings_with(EC2_INVENTORY_BACKENDS_AS_HOSTS="yes").backends_as_hosts
    with pytest.raises(
        InventoryError, match="BACKENDS_AS_HOSTS=true but EC2_INVENTORY_BACKEND_TAGS"
    ):
        settings_with(EC2_INVENTORY_BACKENDS_AS_HOSTS="true", EC2_INVENTORY_BACKEND_TAGS="")


def test_environment_conflicts_with_environment_tag_filter_when_both_set() -> None:
    with pytest.raises(InventoryError, match="EC2_INVENTORY_TAGS filters on Environment"):
        settings_with(ENVIRONMENT="lab", EC2_INVENTORY_TAGS="Role=x;Environment=prod")


def test_settings_table_lists_every_variable_once() -> None:
    table = settings_table_markdown()
    for setting in SETTINGS:
        assert table.count(f"| `{setting.env}` |") == 1


def test_docs_table_is_current_when_settings_change() -> None:
    docs = (REPO_ROOT / "docs" / "inventory.md").read_text(encoding="utf-8")
    assert settings_table_markdown() in docs, (
        "docs/inventory.md is stale: paste `python -m inventories.aws --settings-table`"
    )
