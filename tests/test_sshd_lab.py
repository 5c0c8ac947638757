"""ssh-audit policies on the lab (issue 12): the repository's policies pass on both suites, and
ssh-audit's built-in "Hardened Debian" policies fail only on the entries those policies change.

The policies are tests/data/ssh-audit/proxy-debian12.txt and proxy-debian13.txt: the built-in ones
with each difference commented (the KEX paramiko and OpenSSH 9.2 need, RSA host keys of 3072
bits since the deploy never replaces a host key). Runs after the first deploy (LAB_STAGE 21).
A unit test checks that the policies differ from the built-in ones in those entries only.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import REPO
from ssh_audit.builtin_policies import BUILTIN_POLICIES
from ssh_audit.policy import Policy

LAB_STAGE = 21
POLICIES = REPO / "tests/data/ssh-audit"
SUITES = {
    "bookworm": ("proxy-debian12.txt", "Hardened Debian 12 (version 3)"),
    "trixie": ("proxy-debian13.txt", "Hardened Debian 13 (version 1)"),
}
# The entries each of our policies changes (commented in the files), as ssh-audit names them
# when the built-in policy fails on them.
CHANGED = {
    "bookworm": {
        "Key exchanges",
        "MACs",
        "Host key (rsa-sha2-256) sizes",
        "Host key (rsa-sha2-512) sizes",
    },
    "trixie": {"Key exchanges", "Host key (rsa-sha2-256) sizes", "Host key (rsa-sha2-512) sizes"},
}


def audit(address: str, policy: str) -> dict:
    run = subprocess.run(
        [str(REPO / ".venv/bin/ssh-audit"), "-j", "-P", policy, address],
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        return json.loads(run.stdout)
    except ValueError:
        raise AssertionError(f"ssh-audit said: {run.stdout}{run.stderr}") from None


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


@pytest.mark.lab
@pytest.mark.parametrize("suite", SUITES)
def test_proxies_pass_our_policy_and_fail_the_builtin_only_where_it_differs(
    deployed, proxies, suite
):
    node = next(n for n in proxies if n.suite == suite)
    ours_file, builtin_name = SUITES[suite]
    ours = audit(node.address, str(POLICIES / ours_file))
    builtin = audit(node.address, builtin_name)
    failed = sorted(error["mismatched_field"] for error in builtin.get("errors", []))
    print(
        f"\nssh-audit on {node.name} ({suite}): {ours_file}: "
        f"{'pass' if ours['passed'] else 'FAIL'}; {builtin_name}: "
        f"{'pass' if builtin['passed'] else 'fail'} ({', '.join(failed) or 'no error'})"
    )
    assert ours["passed"], ours.get("errors")
    assert set(failed) <= CHANGED[suite], builtin.get("errors")
