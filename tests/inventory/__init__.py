"""Unit tests of the EC2 inventory (inventories/), one file per module, against moto's
in-process EC2 and STS.

No network: moto intercepts boto3 in-process, IMDS is disabled, and the only real sockets are
on loopback (an unreachable endpoint, and the moto_server the pyinfra CLI tests start).
Shared fixtures are in conftest.py (a clean environment for every test, an empty fake account),
shared helpers and constants in fakes.py.
"""
