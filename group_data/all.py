"""Data for every host: how pyinfra reaches it. Deploy settings live in proxies.py.

The SSH key and known_hosts file come from the environment so that CI (a file variable), a
laptop and the lab (`eval "$(python -m lab env)"`) can each point at their own.
"""

import os

# Every change needs root. The login user (`admin` on Debian's EC2 images, set by the inventory)
# has passwordless sudo there, as in the lab.
_sudo = True

# Private key for the login user; unset: pyinfra falls back to the SSH agent and ~/.ssh keys.
if os.environ.get("DEPLOY_SSH_KEY"):
    ssh_key = os.environ["DEPLOY_SSH_KEY"]

# known_hosts to check host keys against. Unset: ~/.ssh/known_hosts, with pyinfra's default
# `accept-new` (new hosts are trusted on first use, changed keys are refused).
if os.environ.get("DEPLOY_SSH_KNOWN_HOSTS"):
    ssh_known_hosts_file = os.environ["DEPLOY_SSH_KNOWN_HOSTS"]

# New EC2 instances may still be booting when CI reaches them right after Terraform.
ssh_connect_retries = 3
