"""inventories/errors.py and the AWS errors explained: one clear line, exit 2."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws
from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin

from inventories.ec2 import explain_error, new_botocore_session
from inventories.loader import pyinfra_groups_or_exit
from inventory.fakes import REGION, settings_with


def closed_loopback_port() -> int:
    """A loopback port with nothing listening (so connections are refused at once)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in the default credential chain (and nothing reachable if it tried)."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_loopback_port()}")


def enforce_iam_after(monkeypatch: pytest.MonkeyPatch, free_actions: int) -> None:
    """Make moto check credentials and IAM policies after `free_actions` unchecked calls.

    What moto's `set_initial_no_auth_action_count` decorator does, for a fixture's lifetime.
    """
    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", free_actions)
    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)


@pytest.fixture
def invalid_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto checking credentials: the environment's keys belong to no IAM user."""
    with mock_aws():
        enforce_iam_after(monkeypatch, 0)
        yield


@pytest.fixture
def assume_role_forbidden(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An IAM user allowed to describe instances but not to assume roles."""
    with mock_aws():
        enforce_iam_after(monkeypatch, 3)
        iam = new_botocore_session().create_client("iam", region_name=REGION)
        iam.create_user(UserName="ci")
        key = iam.create_access_key(UserName="ci")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="ci", PolicyName="ec2", PolicyDocument=json.dumps(policy))
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        yield


@pytest.fixture
def unreachable_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_ENDPOINT_URL pointing at a loopback port nobody listens on."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_loopback_port()}")
    monkeypatch.setenv("EC2_INVENTORY_MAX_ATTEMPTS", "2")


@pytest.mark.parametrize(
    ("situation", "env", "expected"),
    [
        ("no_credentials", {}, "no AWS credentials found: set AWS_ACCESS_KEY_ID"),
        ("empty_account", {"EC2_INVENTORY_PROFILE": "ops"}, "AWS profile 'ops' (EC2_INVENTORY"),
        ("empty_account", {"EC2_INVENTORY_REGIONS": "mars-1"}, "'mars-1' is not an AWS region"),
        (
            "invalid_credentials",
            {},
            "access denied for ec2:DescribeInstances in eu-west-1 (AuthFailure: ",
        ),
        (
            "assume_role_forbidden",
            {"EC2_INVENTORY_ROLE_ARN": "arn:aws:iam::123456789012:role/deploy"},
            "access denied for sts:AssumeRole in eu-west-1 (AccessDenied: ",
        ),
        ("unreachable_endpoint", {}, "cannot reach http://127.0.0.1:"),
        (
            "empty_account",
            {"ENVIRONMENT": "lab"},
            "no running EC2 instances match the proxy filters "
            "(tag:Role=reverse-proxy Environment=lab) in eu-west-1",
        ),
    ],
)
def test_error_is_one_clear_line_and_exit_2_when_aws_is_unusable(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    situation: str,
    env: dict[str, str],
    expected: str,
) -> None:
    request.getfixturevalue(situation)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as caught:
        pyinfra_groups_or_exit()
    assert caught.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("EC2 inventory: error: ")
    assert expected in stderr
    assert stderr.count("\n") == 1
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("UnauthorizedOperation", "the credentials need ec2:DescribeInstances"),
        ("OptInRequired", "enable the region for the account"),
        ("ExpiredToken", "refresh the credentials"),
        ("RequestLimitExceeded", "throttled by AWS for ec2:DescribeInstances in eu-west-1"),
        ("InvalidParameterValue", "check EC2_INVENTORY_FILTERS"),
        ("InternalError", "AWS error for ec2:DescribeInstances in eu-west-1 (InternalError"),
    ],
)
def test_aws_error_codes_are_explained(code: str, expected: str) -> None:
    error = ClientError({"Error": {"Code": code, "Message": "m"}}, "DescribeInstances")
    message = str(explain_error(error, "ec2:DescribeInstances", REGION, settings_with()))
    assert expected in message


def test_connection_error_names_the_endpoint_setting() -> None:
    error = EndpointConnectionError(endpoint_url="https://ec2.eu-west-1.amazonaws.com/")
    message = str(explain_error(error, "ec2:DescribeInstances", REGION, settings_with()))
    assert "cannot reach the AWS endpoint of eu-west-1" in message
    assert "AWS_ENDPOINT_URL" in message
