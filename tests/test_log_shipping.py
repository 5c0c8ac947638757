"""Access logs shipped to S3 (issue 7) on the lab, against the fake AWS's S3: rotated files land
under the instance id; an upload that fails is retried by the next run and nothing is lost."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import boto3
import pytest
from conftest import REPO
from test_deploy import on_host

from lab import config, core, fakeaws

pytestmark = pytest.mark.lab
LAB_STAGE = 25

PREFIX = "proxy-access-logs"
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


def rotate_and_ship(host: str) -> subprocess.CompletedProcess:
    on_host(host, "logrotate -f /etc/logrotate.d/nginx")
    return core.exec_in_lab(host, ["systemctl", "start", "proxy-log-shipping.service"])


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
    assert shipping.returncode == 0, shipping.stderr
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
    retried = core.exec_in_lab(node.name, ["systemctl", "start", "proxy-log-shipping.service"])
    assert retried.returncode == 0, retried.stderr
    lines = shipped_lines(instance_id(node.name))
    assert sum(1 for entry in lines if entry.get("path") == "/pets/5") >= 100
    again = core.exec_in_lab(node.name, ["systemctl", "start", "proxy-log-shipping.service"])
    assert again.returncode == 0
    assert len(shipped_lines(instance_id(node.name))) == len(lines)  # no second copy


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
