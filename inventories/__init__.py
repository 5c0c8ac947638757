"""EC2 dynamic inventory for pyinfra.

`inventories/aws.py` is the file pyinfra runs (`pyinfra inventories/aws.py deploy.py`); the logic
lives in importable, typed modules so it can be unit tested without pyinfra or AWS:

- `settings`: every EC2_INVENTORY_* environment variable, its default, validation and docs table.
- `botocore_setup`: botocore's data files loaded once per process, its timestamp parser, and the
  regions it knows.
- `ec2`: the boto3 calls (credentials, assumed role, paginated describe_instances, per-region
  concurrency) and the translation of AWS failures into one clear `InventoryError`.
- `hosts`: host names, SSH addresses, groups and host data built from the instances found.
- `cache`: the optional short-lived cache of the query result for repeated manual runs.
- `cli`: `python -m inventories.aws [--json]`, a listing of what would be targeted.
"""
