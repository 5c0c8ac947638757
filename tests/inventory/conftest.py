"""Fixtures of the inventory tests: a clean environment (autouse), an empty fake AWS account."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from inventory.fakes import REGION, Fleet


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only the variables a test sets; fake credentials; no instance metadata service."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "EC2_INVENTORY_")) or name in {"ENVIRONMENT", "CI"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # Never reach 169.254.169.254 for credentials, nor read the user's ~/.aws.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("EC2_INVENTORY_CACHE_DIR", str(tmp_path / "cache"))
    # moto's ~1,300 default AMIs make every launch scan them; the inventory never reads AMIs.
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    """An empty in-process fake AWS account."""
    with mock_aws():
        yield Fleet()


@pytest.fixture
def empty_account() -> Iterator[None]:
    """A fake account with no instances at all."""
    with mock_aws():
        yield
