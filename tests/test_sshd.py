"""The repository's ssh-audit policies (tests/data/ssh-audit/, for the sshd that tasks/sshd.py
configures): each is ssh-audit's built-in "Hardened Debian" policy with the commented entries
changed, and only those. Fast unit test; the policies run against the lab's proxies in
tests/test_sshd_lab.py.
"""

from __future__ import annotations

import pytest
from conftest import REPO
from ssh_audit.builtin_policies import BUILTIN_POLICIES
from ssh_audit.policy import Policy

POLICIES = REPO / "tests/data/ssh-audit"


SUITES = {
    "bookworm": ("proxy-debian12.txt", "Hardened Debian 12 (version 3)"),
    "trixie": ("proxy-debian13.txt", "Hardened Debian 13 (version 1)"),
}


def _fields(policy: Policy) -> dict:
    return {
        "host keys": policy._host_keys,
        "optional host keys": policy._optional_host_keys,
        "kex": policy._kex,
        "ciphers": policy._ciphers,
        "macs": policy._macs,
        "host key sizes": {k: v["hostkey_size"] for k, v in (policy._hostkey_sizes or {}).items()},
        "dh modulus sizes": policy._dh_modulus_sizes,
        "allow larger keys": policy._allow_larger_keys,
    }


@pytest.mark.parametrize("suite", SUITES)
def test_our_policy_differs_from_the_builtin_only_in_the_commented_entries(suite: str) -> None:
    ours_file, builtin_name = SUITES[suite]
    ours = _fields(Policy(policy_file=str(POLICIES / ours_file)))
    builtin = {
        "host keys": BUILTIN_POLICIES[builtin_name]["host_keys"],
        "optional host keys": BUILTIN_POLICIES[builtin_name]["optional_host_keys"],
        "kex": BUILTIN_POLICIES[builtin_name]["kex"],
        "ciphers": BUILTIN_POLICIES[builtin_name]["ciphers"],
        "macs": BUILTIN_POLICIES[builtin_name]["macs"],
        "host key sizes": {
            k: v["hostkey_size"]
            for k, v in BUILTIN_POLICIES[builtin_name]["hostkey_sizes"].items()
            if not k.startswith("sk-")
        },
        "dh modulus sizes": BUILTIN_POLICIES[builtin_name]["dh_modulus_sizes"],
        "allow larger keys": False,
    }
    differ = {key for key in ours if ours[key] != builtin[key]}
    expected = {"kex", "host key sizes", "allow larger keys"}
    if suite == "bookworm":
        expected.add("macs")
    assert differ == expected
    rsa = {k: v for k, v in ours["host key sizes"].items() if k.startswith("rsa")}
    assert set(rsa.values()) == {3072}
