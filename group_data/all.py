"""Data for every host: how pyinfra reaches it. Deploy settings live in proxies.py.

The SSH key and known_hosts file come from the environment so that CI (a file variable), a
laptop and the lab (`eval "$(python -m lab env)"`) can each point at their own.
"""

import os
import sys

from pyinfra.api.exceptions import PyinfraError

from inventories.known_hosts import HostKeyPolicyError, host_key_policy

# Every change needs root. The login user (`admin` on Debian's EC2 images, set by the inventory)
# has passwordless sudo there, as in the lab.
_sudo = True

# Private key for the login user; unset: pyinfra falls back to the SSH agent and ~/.ssh keys.
if os.environ.get("DEPLOY_SSH_KEY"):
    ssh_key = os.environ["DEPLOY_SSH_KEY"]

# Host keys are checked strictly (never pyinfra's default `accept-new`, trust on first use)
# against DEPLOY_SSH_KNOWN_HOSTS, which is required: `python -m inventories.known_hosts` builds it
# from each instance's own console output. Trust on first use only with
# DEPLOY_SSH_TRUST_ON_FIRST_USE=true, said on every run (inventories/known_hosts.py).
try:
    __policy = host_key_policy(os.environ)
except HostKeyPolicyError as __error:
    raise PyinfraError(str(__error)) from None
ssh_strict_host_key_checking = __policy.strict
if __policy.known_hosts:
    ssh_known_hosts_file = __policy.known_hosts
if __policy.warning:
    print(__policy.warning, file=sys.stderr)

# New EC2 instances may still be booting when CI reaches them right after Terraform.
ssh_connect_retries = 3
