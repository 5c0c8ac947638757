"""Logs shipped to S3 (issue 7) on the lab, against the fake AWS's S3: rotated access logs land
under the instance id; an upload that fails is retried by the next run and nothing is lost; the
audit log's rotated files go the same way under their own prefix (issue 12)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import boto3
import pytest
from conftest import REPO
from lab_hosts import on_host

from lab import config, core, fakeaws

pytestmark = pytest.mark.lab
LAB_STAGE = 25

PREFIX = "proxy-access-logs"
AUDIT_PREFIX = "proxy-audit-logs"
AUDIT_RECORD = (
    'type=CONFIG_CHANGE msg=audit(1764409200.123:42): auid=1000 ses=3 op=add_rule key="lab" '
    "list=4 res=1"
)
BLOCK = "inet lab_block_s3"


def s3():
    return boto3.client(
        "s3", region_name=config.AWS_REGION, endpoint_url=fakeaws.endpoint(), **fakeaws.CREDENTIALS
    )


def shipped_lines(instance_id: str) -> list[dict]:
    client = s3()
    listing = client.list_objects_v2(Bucket=config.LOG_BUCKET, Prefix=f"{PREFIX}/{instance_id}/")
    lines = []
    for item in listing.get("Contents", []):
        body = client.get_object(Bucket=config.LOG_BUCKET, Key=item["Key"])["Body"].read()
        lines += [json.loads(line) for line in gzip.decompress(body).splitlines() if line]
    return lines


def instance_id(name: str) -> str:
    return next(i["id"] for i in fakeaws.instances() if i["name"] == name)


def shipping_journal(host: str) -> str:
    """What systemd said of the shipper's last runs on HOST, for a failed start's message."""
    return on_host(host, "journalctl -u proxy-log-shipping.service -n 30 --no-pager -o cat")


def rotate_and_ship(host: str) -> subprocess.CompletedProcess:
    on_host(host, "logrotate -f /etc/logrotate.d/nginx")
    return core.run_in(host, ["systemctl", "start", "proxy-log-shipping.service"])


def test_every_proxy_runs_the_hourly_shipping_timer(deployed, proxies):
    for node in proxies:
        state = on_host(
            node.name,
            "systemctl is-enabled proxy-log-shipping.timer; "
            "systemctl is-active proxy-log-shipping.timer",
        ).split()
        assert state == ["enabled", "active"], node.name


def test_rotated_log_lands_in_s3_under_the_instance_id(deployed, proxies):
    node = proxies[0]
    sent = core.traffic("loadgen", f"http://{node.address}/appointments", requests=150)
    shipping = rotate_and_ship(node.name)
    assert shipping.returncode == 0, shipping.stderr + shipping_journal(node.name)
    lines = shipped_lines(instance_id(node.name))
    assert sum(1 for entry in lines if entry.get("path") == "/appointments") >= (sent["requests"])


def test_failed_upload_is_retried_by_the_next_run_and_nothing_is_lost(deployed, proxies):
    node = proxies[1]
    # What the hourly timer already shipped (a lab up for more than an hour has shipped some).
    before = shipped_lines(instance_id(node.name))
    core.traffic("loadgen", f"http://{node.address}/pets/5", requests=100)
    on_host(
        node.name,
        f"nft add table {BLOCK} && nft 'add chain {BLOCK} out "
        "{ type filter hook output priority 0; }' && "
        f"nft add rule {BLOCK} out ip daddr 10.77.0.1 tcp dport 5077 reject with tcp reset",
    )
    try:
        failed = rotate_and_ship(node.name)
        assert failed.returncode != 0
        assert shipped_lines(instance_id(node.name)) == before
    finally:
        on_host(node.name, f"nft delete table {BLOCK}")
    retried = core.run_in(node.name, ["systemctl", "start", "proxy-log-shipping.service"])
    assert retried.returncode == 0, retried.stderr + shipping_journal(node.name)
    lines = shipped_lines(instance_id(node.name))
    assert sum(1 for entry in lines if entry.get("path") == "/pets/5") >= 100
    again = core.run_in(node.name, ["systemctl", "start", "proxy-log-shipping.service"])
    assert again.returncode == 0
    assert len(shipped_lines(instance_id(node.name))) == len(lines)  # no second copy


def test_rotated_audit_log_ships_from_the_sandbox_under_its_own_prefix(deployed, proxies):
    """auditd cannot run in a lab container, so the rotated file is written the way auditd
    leaves it (root:adm 0640 in Debian's root:adm 0750 directory); the sandboxed shipper, a
    dynamic user in group adm, must read it; asking a stopped auditd to rotate fails no run."""
    for node in (proxies[0], proxies[-1]):  # Debian 13 and Debian 12
        assert on_host(node.name, "stat -c '%U:%G %a' /var/log/audit").split() == [
            "root:adm",
            "750",
        ]
        marker = f"{AUDIT_RECORD} node={node.name}"
        instance = instance_id(node.name)
        on_host(
            node.name,
            f"printf '%s\\n' '{marker}' > /var/log/audit/audit.log.1 && "
            "chown root:adm /var/log/audit/audit.log.1 && chmod 640 /var/log/audit/audit.log.1 && "
            f"printf '%s\\n' '{AUDIT_RECORD}' > /var/log/audit/audit.log",
        )
        try:
            shipping = core.run_in(node.name, ["systemctl", "start", "proxy-log-shipping.service"])
            assert shipping.returncode == 0, shipping.stderr + shipping_journal(node.name)
            assert "DynamicUser=yes" in on_host(
                node.name, "systemctl show -p DynamicUser proxy-log-shipping.service"
            )
            client = s3()
            prefix = f"{AUDIT_PREFIX}/{instance}/"
            keys = [
                item["Key"]
                for item in client.list_objects_v2(Bucket=config.LOG_BUCKET, Prefix=prefix).get(
                    "Contents", []
                )
            ]
            bodies = [
                gzip.decompress(
                    client.get_object(Bucket=config.LOG_BUCKET, Key=key)["Body"].read()
                ).decode()
                for key in keys
            ]
            assert any(marker in body for body in bodies), (node.name, keys)
            # Never among the access logs, which everything downstream reads as JSON.
            access = client.list_objects_v2(
                Bucket=config.LOG_BUCKET, Prefix=f"{PREFIX}/{instance}/"
            )
            assert not [i["Key"] for i in access.get("Contents", []) if "audit.log" in i["Key"]]
        finally:
            on_host(node.name, "rm -f /var/log/audit/audit.log.1 /var/log/audit/audit.log")


def test_report_reads_the_shipped_logs_from_s3(deployed, lab_env):
    result = subprocess.run(
        [sys.executable, "-m", "report", "--s3", f"s3://{config.LOG_BUCKET}/{PREFIX}/", "--json"],
        cwd=REPO,
        env=lab_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["requests"]["total"] >= 250
