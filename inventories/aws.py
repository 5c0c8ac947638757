"""pyinfra inventory: the reverse proxies found in EC2 at run time.

    pyinfra inventories/aws.py deploy.py                  # every proxy
    pyinfra inventories/aws.py deploy.py --limit proxy-2  # one host (or a group name)
    python -m inventories.aws [--json]                    # show what would be targeted

The backends (Role=app) are not hosts: each proxy gets their private addresses as host data
`ec2_backend_addresses`. EC2_INVENTORY_BACKENDS_AS_HOSTS=true also makes them hosts (group
`backends`), for deploys aimed at the app servers.

Settings are EC2_INVENTORY_* environment variables (docs/inventory.md). pyinfra executes this
file and turns every module-level list into a group, so everything else here starts with `_`.
"""

import gc as _gc
import sys as _sys
from importlib import import_module as _import_module
from pathlib import Path as _Path

# pyinfra runs this file with exec(), not as part of the package: make the repository root
# importable whatever the working directory (`--chdir`, CI runners, another cwd).
_REPO_ROOT = str(_Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in _sys.path:
    _sys.path.insert(0, _REPO_ROOT)

if __name__ == "__main__":
    _status = _import_module("inventories.cli").main()
    # The process ends here. At shutdown Python runs its cyclic collector over every object
    # still alive (modules, botocore's parsed models) to free them one by one: 0.08 s of CPU,
    # an eighth of the listing's (docs/inventory.md, Performance). Frozen objects are skipped;
    # the OS frees the memory anyway.
    _gc.freeze()
    raise SystemExit(_status)

# Groups: proxies, the keyed groups (env_*, az_*, region_*) and, with BACKENDS_AS_HOSTS, backends.
globals().update(_import_module("inventories.loader").pyinfra_groups_or_exit())
