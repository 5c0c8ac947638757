"""Host keys: how the deploy checks them, and a trustworthy way to get them.

    python -m inventories.known_hosts > known_hosts        # every host of the inventory
    export DEPLOY_SSH_KNOWN_HOSTS=$PWD/known_hosts

The policy (`host_key_policy`, used by group_data/all.py for pyinfra and by the bastion's
generated ssh_config): host keys are checked strictly (`StrictHostKeyChecking yes`) against the
known_hosts file DEPLOY_SSH_KNOWN_HOSTS, which is required. Trust on first use (`accept-new`: the
first key a host shows is believed, and so is a machine in the middle at that moment) only by an
explicit DEPLOY_SSH_TRUST_ON_FIRST_USE=true, and every run says so on stderr.

The keys. At an instance's first boot cloud-init prints its SSH host public keys on the serial
console, between `-----BEGIN SSH HOST KEY KEYS-----` and `-----END SSH HOST KEY KEYS-----`
(cloud-init's keys_to_console). EC2 returns that console output through the authenticated EC2 API
(GetConsoleOutput), not through the network path SSH takes: a machine in the middle of SSH
cannot forge it. This module reads it for every host of the inventory (same settings, same
credentials: EC2_INVENTORY_*, AWS_*) and prints one known_hosts line per key, for the address
pyinfra connects to. When cloud-init also printed the fingerprints (`-----BEGIN SSH HOST KEY
FINGERPRINTS-----`), every key must match one of them. A host whose console holds no keys (the
block is printed at first boot only, and EC2 keeps the last 64 KB), or two different sets, is
reported and the exit status is 1: get its key another way (the EC2 serial console, or from the
instance through SSM), never by connecting and believing it.

Needs ec2:GetConsoleOutput besides the inventory's ec2:DescribeInstances.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import os
import re
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

TOFU_VARIABLE = "DEPLOY_SSH_TRUST_ON_FIRST_USE"
KNOWN_HOSTS_VARIABLE = "DEPLOY_SSH_KNOWN_HOSTS"
KEYS_BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
KEYS_END = "-----END SSH HOST KEY KEYS-----"
FINGERPRINTS_BEGIN = "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
FINGERPRINTS_END = "-----END SSH HOST KEY FINGERPRINTS-----"
KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
_TYPES = "|".join(map(re.escape, KEY_TYPES))
_KEY = re.compile(r"(?<![\w-])(" + _TYPES + r")\s+([A-Za-z0-9+/]+={0,2})")
_FINGERPRINT = re.compile(r"SHA256:([A-Za-z0-9+/]{43})")


# --- The policy -------------------------------------------------------------------------------


class HostKeyPolicyError(ValueError):
    """The environment does not say how to check host keys (or says it wrongly)."""


@dataclass(frozen=True)
class HostKeyPolicy:
    strict: str  # pyinfra's ssh_strict_host_key_checking / ssh_config's StrictHostKeyChecking
    known_hosts: str | None  # None: ~/.ssh/known_hosts
    warning: str | None  # to print on every run (trust on first use)


def host_key_policy(environ: Mapping[str, str]) -> HostKeyPolicy:
    """Strict checking against DEPLOY_SSH_KNOWN_HOSTS; `accept-new` only with
    DEPLOY_SSH_TRUST_ON_FIRST_USE=true. Raises HostKeyPolicyError otherwise."""
    tofu = _trust_on_first_use(environ)
    path = environ.get(KNOWN_HOSTS_VARIABLE, "").strip()
    if path:
        _check_known_hosts_file(path)
    if tofu:
        where = path or "~/.ssh/known_hosts"
        return HostKeyPolicy(
            strict="accept-new",
            known_hosts=path or None,
            warning=(
                f"WARNING: {TOFU_VARIABLE}=true: a host whose key is not in {where} is trusted on "
                "first use (accept-new), and so is a machine in the middle at that moment. Pin "
                "the keys instead: python -m inventories.known_hosts > known_hosts, then "
                f"{KNOWN_HOSTS_VARIABLE}=$PWD/known_hosts."
            ),
        )
    if not path:
        raise HostKeyPolicyError(
            f"{KNOWN_HOSTS_VARIABLE} is not set: host keys are checked strictly and there is no "
            "known_hosts to check them against. Build one from the instances' own console output "
            f"(python -m inventories.known_hosts > known_hosts), read it, then export "
            f"{KNOWN_HOSTS_VARIABLE}=$PWD/known_hosts. To trust unknown hosts on first use "
            f"instead (a machine in the middle would be trusted too): {TOFU_VARIABLE}=true."
        )
    return HostKeyPolicy(strict="yes", known_hosts=path, warning=None)


def bastion_options(environ: Mapping[str, str]) -> list[str]:
    """ssh_config lines for the bastion hop: the same policy as the targets (pyinfra checks the
    hop with these, not with its own host data). Never raises: without a usable policy the hop
    is strict against ~/.ssh/known_hosts, and group_data/all.py refuses the run anyway."""
    try:
        policy = host_key_policy(environ)
    except HostKeyPolicyError:
        policy = HostKeyPolicy(strict="yes", known_hosts=None, warning=None)
    lines = [f"    StrictHostKeyChecking {policy.strict}"]
    if policy.known_hosts and not re.search(r"\s", policy.known_hosts):
        lines.append(f"    UserKnownHostsFile {policy.known_hosts}")
    return lines


def _trust_on_first_use(environ: Mapping[str, str]) -> bool:
    raw = environ.get(TOFU_VARIABLE, "").strip().lower()
    if raw not in ("", "true", "false"):
        raise HostKeyPolicyError(
            f"{TOFU_VARIABLE}={environ[TOFU_VARIABLE]!r}: expected true or false (unset: false)"
        )
    return raw == "true"


def _check_known_hosts_file(path: str) -> None:
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as error:
        raise HostKeyPolicyError(
            f"{KNOWN_HOSTS_VARIABLE}={path!r}: cannot read it ({error.strerror or error})"
        ) from None
    if re.search(r"\s", path):
        raise HostKeyPolicyError(
            f"{KNOWN_HOSTS_VARIABLE}={path!r}: a path with white space cannot go into the "
            "bastion's ssh_config (UserKnownHostsFile); move the file"
        )
    if not any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()):
        raise HostKeyPolicyError(
            f"{KNOWN_HOSTS_VARIABLE}={path!r} holds no host key: every host would be refused"
        )


# --- Keys from the console output -------------------------------------------------------------


class ConsoleKeysError(ValueError):
    """The console output holds no trustworthy set of host keys."""


@dataclass(frozen=True)
class HostKey:
    key_type: str
    key: str  # base64 of the public key blob

    @property
    def fingerprint(self) -> str:
        """OpenSSH's SHA256 fingerprint (base64, no padding)."""
        digest = hashlib.sha256(base64.b64decode(self.key)).digest()
        return base64.b64encode(digest).decode().rstrip("=")


def keys_from_console(output: str) -> list[HostKey]:
    """The host keys cloud-init printed in OUTPUT, checked: each key's blob names its own type,
    every printing of the block holds the same keys, and each key matches a printed fingerprint
    when fingerprints were printed. Raises ConsoleKeysError."""
    blocks = _blocks(output, KEYS_BEGIN, KEYS_END)
    if not blocks:
        raise ConsoleKeysError(
            f"no {KEYS_BEGIN} block in the console output (cloud-init prints it at first boot "
            "only, and EC2 keeps the last 64 KB of output)"
        )
    sets = []
    for block in blocks:
        keys = []
        for line in block:
            match = _KEY.search(line)
            if match:
                keys.append(_checked_key(match[1], match[2]))
        sets.append(tuple(sorted(set(keys), key=lambda k: (k.key_type, k.key))))
    if not sets[0]:
        raise ConsoleKeysError(f"the {KEYS_BEGIN} block holds no key")
    if any(keys != sets[0] for keys in sets[1:]):
        raise ConsoleKeysError(
            "the console output holds different sets of host keys (keys regenerated, or output "
            "forged from inside the instance): refusing to choose"
        )
    fingerprints = {
        match[1]
        for block in _blocks(output, FINGERPRINTS_BEGIN, FINGERPRINTS_END)
        for line in block
        for match in [_FINGERPRINT.search(line)]
        if match
    }
    if fingerprints:
        for key in sets[0]:
            if key.fingerprint not in fingerprints:
                raise ConsoleKeysError(
                    f"{key.key_type} key SHA256:{key.fingerprint} is not among the fingerprints "
                    "cloud-init printed"
                )
    return list(sets[0])


def known_hosts_lines(address: str, keys: Iterable[HostKey], port: int = 22) -> list[str]:
    """known_hosts lines for ADDRESS (`[address]:port` unless port 22, as ssh and paramiko
    look it up)."""
    host = address if port == 22 else f"[{address}]:{port}"
    return [f"{host} {key.key_type} {key.key}" for key in keys]


def _blocks(output: str, begin: str, end: str) -> list[list[str]]:
    """The lines between each BEGIN and END marker (a marker may follow a console prefix)."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in output.splitlines():
        if begin in line:
            current = []
        elif end in line and current is not None:
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def _checked_key(key_type: str, key: str) -> HostKey:
    """A key whose blob decodes and starts with its own type name (SSH wire format)."""
    try:
        blob = base64.b64decode(key, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        named = blob[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError) as error:
        raise ConsoleKeysError(f"{key_type} key {key[:16]}... does not decode: {error}") from None
    if named != key_type:
        raise ConsoleKeysError(f"a key printed as {key_type} is a {named!r} key")
    return HostKey(key_type, key)


# --- The command ------------------------------------------------------------------------------


def console_output(client: object, instance_id: str) -> str:
    """The instance's console output as text (botocore decodes EC2's base64)."""
    response = client.get_console_output(InstanceId=instance_id)  # type: ignore[attr-defined]
    return response.get("Output") or ""


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inventories.known_hosts",
        description=(
            "known_hosts lines for every host of the EC2 inventory, from the host keys "
            "cloud-init printed on each instance's console at first boot (ec2:GetConsoleOutput)."
        ),
    )
    parser.add_argument("--port", type=int, default=22, help="SSH port of the hosts (22)")
    parser.add_argument(
        "--no-cache", action="store_true", help="query AWS even if a cached inventory is fresh"
    )
    options = parser.parse_args(argv)

    from botocore.exceptions import BotoCoreError, ClientError

    from .ec2 import explain_error, make_botocore_config, open_session
    from .errors import InventoryError
    from .loader import MESSAGE_PREFIX, fail, load_inventory
    from .settings import InventorySettings

    try:
        settings = InventorySettings.from_environ(environ)
        inventory = load_inventory(settings, use_cache=not options.no_cache)
        session = open_session(settings)
    except InventoryError as error:
        fail(error)
    clients: dict[str, object] = {}
    problems = 0
    for host in inventory.hosts:
        instance_id = str(host.data["ec2_instance_id"])
        region = str(host.data["ec2_region"])
        if region not in clients:
            clients[region] = session.create_client(
                "ec2", region_name=region, config=make_botocore_config(settings)
            )
        try:
            keys = keys_from_console(console_output(clients[region], instance_id))
        except ConsoleKeysError as error:
            print(f"{MESSAGE_PREFIX}: {host.name} ({instance_id}): {error}", file=sys.stderr)
            problems += 1
            continue
        except (ClientError, BotoCoreError) as error:
            explained = explain_error(error, "ec2:GetConsoleOutput", region, settings)
            print(f"{MESSAGE_PREFIX}: {host.name} ({instance_id}): {explained}", file=sys.stderr)
            problems += 1
            continue
        print(f"# {host.name} {instance_id} ({region}), from its console output")
        for line in known_hosts_lines(host.ssh_hostname, keys, options.port):
            print(line)
    if problems:
        print(
            f"{MESSAGE_PREFIX}: {problems} of {len(inventory.hosts)} hosts have no trustworthy "
            "keys in their console output (above); their lines are missing",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(environ=os.environ))
