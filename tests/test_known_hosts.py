"""Host keys are not trusted on first use (issue 13 item 1): the policy group_data/all.py and the
bastion's ssh_config apply, and `python -m inventories.known_hosts`, which builds known_hosts
lines from the keys cloud-init printed on each instance's console (EC2 GetConsoleOutput).

moto's GetConsoleOutput answers a fixed kernel log; the tests put a realistic cloud-init console
(Debian 13 on EC2: kernel lines, cloud-init's fingerprint table, then the keys) in its place, so
the real botocore call and its base64 decoding are exercised."""

from __future__ import annotations

import base64
import hashlib
import os
import runpy
from pathlib import Path

import moto.ec2.responses.general as moto_console
import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from moto import mock_aws
from paramiko.hostkeys import HostKeyEntry
from pyinfra.api.exceptions import PyinfraError

from inventories import known_hosts as kh
from inventories.ec2 import new_botocore_session

REPO = Path(__file__).resolve().parent.parent
REGION = "eu-west-1"


def _public(key) -> tuple[str, str]:
    """(type, base64 blob) of a cryptography private key's public half, OpenSSH format."""
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    key_type, blob = line.decode().split()[:2]
    return key_type, blob


def _fingerprint(blob: str) -> str:
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


ED25519 = _public(ed25519.Ed25519PrivateKey.generate())
ECDSA = _public(ec.generate_private_key(ec.SECP256R1()))


def console(keys=(ED25519, ECDSA), fingerprints=(ED25519, ECDSA), host="ip-10-77-0-11") -> str:
    """What a Debian cloud image's serial console shows after its first boot."""
    names = {"ssh-ed25519": "ED25519", "ecdsa-sha2-nistp256": "ECDSA"}
    sizes = {"ssh-ed25519": 256, "ecdsa-sha2-nistp256": 256}
    table = "\n".join(
        f"ec2: {sizes[t]} {_fingerprint(b)} root@{host} ({names[t]})" for t, b in fingerprints
    )
    key_lines = "\n".join(f"{t} {b} root@{host}" for t, b in keys)
    return f"""[    0.000000] Linux version 6.12.48+deb13-cloud-amd64 (debian-kernel@lists)
[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz-6.12.48+deb13-cloud-amd64 root=PARTUUID=4d1c
[    3.912345] cloud-init[412]: Cloud-init v. 25.1.4 running 'init-local' at Sun, 29 Nov 2026.
[    6.204311] cloud-init[498]: Generating public/private ed25519 key pair.
[    6.204998] cloud-init[498]: The key fingerprint is:
[    6.205011] cloud-init[498]: {_fingerprint(ED25519[1])} root@{host}
<14>Nov 29 09:01:08 cloud-init: #############################################################
<14>Nov 29 09:01:08 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----
{table}
<14>Nov 29 09:01:08 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----
<14>Nov 29 09:01:08 cloud-init: #############################################################
-----BEGIN SSH HOST KEY KEYS-----
{key_lines}
-----END SSH HOST KEY KEYS-----
[    9.118200] cloud-init[601]: Cloud-init v. 25.1.4 finished at Sun, 29 Nov 2026 09:01:09 +0000.
"""


# --- the parser -----------------------------------------------------------------------------


def test_keys_come_from_the_keys_block_and_match_the_printed_fingerprints() -> None:
    keys = kh.keys_from_console(console())
    assert {(k.key_type, k.key) for k in keys} == {ED25519, ECDSA}
    lines = kh.known_hosts_lines("10.77.0.11", keys)
    assert sorted(lines) == sorted(f"10.77.0.11 {t} {b}" for t, b in (ED25519, ECDSA))
    assert kh.known_hosts_lines("10.77.0.11", keys[:1], port=2222)[0].startswith(
        "[10.77.0.11]:2222 "
    )


def test_the_lines_are_what_paramiko_checks_a_host_against() -> None:
    keys = kh.keys_from_console(console())
    entries = [HostKeyEntry.from_line(line) for line in kh.known_hosts_lines("10.77.0.11", keys)]
    host_keys = paramiko.HostKeys()
    for entry in entries:
        host_keys.add("10.77.0.11", entry.key.get_name(), entry.key)
    presented = paramiko.Ed25519Key(data=base64.b64decode(ED25519[1]))
    assert host_keys.check("10.77.0.11", presented)
    assert not host_keys.check("10.77.0.12", presented)


def test_the_block_printed_again_after_a_reboot_is_the_same_keys() -> None:
    assert len(kh.keys_from_console(console() + console())) == 2


@pytest.mark.parametrize(
    ("output", "said"),
    [
        ("[    0.0] Linux version 6.1\nlogin:\n", "no -----BEGIN SSH HOST KEY KEYS----- block"),
        (console(keys=()), "holds no key"),
        (console(fingerprints=(ED25519,)), "is not among the fingerprints"),
        (console() + console(keys=(ED25519,), fingerprints=()), "different sets of host keys"),
        (console(keys=(("ssh-rsa", ED25519[1]),), fingerprints=()), "is a 'ssh-ed25519' key"),
        (console(keys=(("ssh-ed25519", "AAAA!!!!"),), fingerprints=()), "does not decode"),
    ],
    ids=["no block", "empty block", "fingerprint mismatch", "two sets", "wrong type", "garbage"],
)
def test_console_output_without_one_trustworthy_set_of_keys_is_refused(
    output: str, said: str
) -> None:
    with pytest.raises(kh.ConsoleKeysError, match=said.replace("(", r"\(").replace(")", r"\)")):
        kh.keys_from_console(output)


# --- the policy -----------------------------------------------------------------------------


@pytest.fixture
def pinned(tmp_path: Path) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(f"10.77.0.11 {ED25519[0]} {ED25519[1]}\n")
    return path


def test_strict_checking_against_the_pinned_file(pinned: Path) -> None:
    policy = kh.host_key_policy({"DEPLOY_SSH_KNOWN_HOSTS": str(pinned)})
    assert policy == kh.HostKeyPolicy(strict="yes", known_hosts=str(pinned), warning=None)


def test_no_known_hosts_is_refused_and_says_how_to_get_them() -> None:
    with pytest.raises(kh.HostKeyPolicyError) as refused:
        kh.host_key_policy({})
    assert "DEPLOY_SSH_KNOWN_HOSTS is not set" in str(refused.value)
    assert "python -m inventories.known_hosts" in str(refused.value)
    assert "DEPLOY_SSH_TRUST_ON_FIRST_USE=true" in str(refused.value)


def test_trust_on_first_use_only_when_asked_and_with_a_warning(pinned: Path) -> None:
    policy = kh.host_key_policy({"DEPLOY_SSH_TRUST_ON_FIRST_USE": "true"})
    assert (policy.strict, policy.known_hosts) == ("accept-new", None)
    assert policy.warning and "machine in the middle" in policy.warning
    both = {"DEPLOY_SSH_TRUST_ON_FIRST_USE": "true", "DEPLOY_SSH_KNOWN_HOSTS": str(pinned)}
    assert kh.host_key_policy(both).strict == "accept-new"
    assert kh.host_key_policy({**both, "DEPLOY_SSH_TRUST_ON_FIRST_USE": "false"}).strict == "yes"


@pytest.mark.parametrize(
    ("content", "value", "said"),
    [
        (None, "yes", "expected true or false"),
        ("", "", "holds no host key"),
        ("# only a comment\n", "", "holds no host key"),
        (None, "", "cannot read it"),
    ],
)
def test_bad_host_key_settings_are_refused(tmp_path: Path, content, value, said) -> None:
    path = tmp_path / "known_hosts"
    if content is not None:
        path.write_text(content)
    env = {"DEPLOY_SSH_KNOWN_HOSTS": str(path)}
    if value:
        env["DEPLOY_SSH_TRUST_ON_FIRST_USE"] = value
        path.write_text(f"x {ED25519[0]} {ED25519[1]}\n")
    with pytest.raises(kh.HostKeyPolicyError, match=said):
        kh.host_key_policy(env)


def test_bastion_hop_follows_the_same_policy(pinned: Path) -> None:
    assert kh.bastion_options({"DEPLOY_SSH_KNOWN_HOSTS": str(pinned)}) == [
        "    StrictHostKeyChecking yes",
        f"    UserKnownHostsFile {pinned}",
    ]
    assert kh.bastion_options({}) == ["    StrictHostKeyChecking yes"]
    tofu = kh.bastion_options({"DEPLOY_SSH_TRUST_ON_FIRST_USE": "true"})
    assert tofu == ["    StrictHostKeyChecking accept-new"]


def _group_data(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict:
    for name in ("DEPLOY_SSH_KNOWN_HOSTS", "DEPLOY_SSH_TRUST_ON_FIRST_USE", "DEPLOY_SSH_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(REPO / "group_data/all.py"))


def test_group_data_makes_pyinfra_strict_and_refuses_without_known_hosts(
    monkeypatch: pytest.MonkeyPatch, pinned: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _group_data(monkeypatch, DEPLOY_SSH_KNOWN_HOSTS=str(pinned))
    assert data["ssh_strict_host_key_checking"] == "yes"  # pyinfra's default is accept-new
    assert data["ssh_known_hosts_file"] == str(pinned)
    with pytest.raises(PyinfraError, match="DEPLOY_SSH_KNOWN_HOSTS is not set"):
        _group_data(monkeypatch)
    data = _group_data(monkeypatch, DEPLOY_SSH_TRUST_ON_FIRST_USE="true")
    assert data["ssh_strict_host_key_checking"] == "accept-new"
    assert "WARNING: DEPLOY_SSH_TRUST_ON_FIRST_USE=true" in capsys.readouterr().err


# --- the command, against the fake EC2 ------------------------------------------------------


@pytest.fixture
def ec2_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith(("AWS_", "EC2_INVENTORY_")) or name in {"ENVIRONMENT", "CI"}:
            monkeypatch.delenv(name)
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "EC2_INVENTORY_REGIONS": REGION,
        "EC2_INVENTORY_CACHE_DIR": str(tmp_path / "cache"),
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _launch(private_ip: str, name: str) -> str:
    client = new_botocore_session().create_client("ec2", region_name=REGION)
    vpc = client.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="10.77.0.0/24")["Subnet"]["SubnetId"]
    tags = {"Name": name, "Role": "reverse-proxy"}
    return client.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        PrivateIpAddress=private_ip,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )["Instances"][0]["InstanceId"]


def test_command_prints_known_hosts_lines_for_the_inventorys_addresses(
    ec2_env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(moto_console, "SAMPLE_CONSOLE_OUTPUT", console())
    with mock_aws():
        instance = _launch("10.77.0.11", "proxy-1")
        assert kh.main([], environ=ec2_env) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"# proxy-1 {instance} ({REGION}), from its console output"
    assert sorted(out[1:]) == sorted(f"10.77.0.11 {t} {b}" for t, b in (ED25519, ECDSA))


def test_command_fails_for_an_instance_whose_console_has_no_keys(
    ec2_env, capsys: pytest.CaptureFixture[str]
) -> None:
    with mock_aws():  # moto's own console output: a kernel log, no cloud-init keys
        instance = _launch("10.77.0.12", "proxy-2")
        assert kh.main([], environ=ec2_env) == 1
    captured = capsys.readouterr()
    assert "10.77.0.12" not in captured.out
    assert f"proxy-2 ({instance}): no -----BEGIN SSH HOST KEY KEYS----- block" in captured.err
    assert "1 of 1 hosts have no trustworthy keys" in captured.err
