"""Shipping the proxies' JSON access logs to S3: rotated files, hourly, nothing lost on failure.

Owns: the package python3-boto3, /usr/local/lib/proxy-deploy/ship-logs (from
templates/logs/ship-logs.py), /etc/default/proxy-log-shipping, and the units
proxy-log-shipping.service and .timer (enabled). With `log_bucket` empty the timer is stopped
and disabled (the files stay, inert).
Reads: log_bucket, log_prefix, log_shipping_env, access_log; the instance id and region from
the EC2 inventory (the object keys carry the instance id).
Leaves alone: rotation itself (the nginx package's logrotate: daily, 14 days) and the bucket
(terraform/).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, systemd
from pyinfra.operations.util import any_changed

from tasks.activation import TEMPLATES
from tasks.settings import for_host, instance_identity

UNIT = "proxy-log-shipping"
UNIT_DIR = "/etc/systemd/system"
SCRIPT = "/usr/local/lib/proxy-deploy/ship-logs"
ENV_FILE = "/etc/default/proxy-log-shipping"


@deploy("Ship access logs to S3")
def ship_logs() -> None:
    settings = for_host(host)
    if not settings.log_bucket:
        if host.get_fact(File, path=f"{UNIT_DIR}/{UNIT}.timer"):
            systemd.service(
                name=f"Stop and disable {UNIT}.timer (log_bucket is empty)",
                service=f"{UNIT}.timer",
                running=False,
                enabled=False,
            )
        return
    instance_id, region = instance_identity(host)
    apt.packages(
        name="Install python3-boto3 (the uploader's S3 client)", packages=["python3-boto3"]
    )
    files.put(
        name=f"Install {SCRIPT}", src=f"{TEMPLATES}/logs/ship-logs.py", dest=SCRIPT, mode="755"
    )
    files.template(
        name=f"Install {ENV_FILE}",
        src=f"{TEMPLATES}/logs/{UNIT}.env.j2",
        dest=ENV_FILE,
        mode="600",
        s=settings,
        instance_id=instance_id,
        region=region or "us-east-1",
    )
    units = [
        files.template(
            name=f"Install {UNIT_DIR}/{UNIT}.{kind}",
            src=f"{TEMPLATES}/logs/{UNIT}.{kind}.j2",
            dest=f"{UNIT_DIR}/{UNIT}.{kind}",
            s=settings,
        )
        for kind in ("service", "timer")
    ]
    systemd.daemon_reload(
        name="Reload systemd (log shipping units changed)", _if=any_changed(*units)
    )
    systemd.service(
        name=f"Run {UNIT}.timer hourly, from boot",
        service=f"{UNIT}.timer",
        running=True,
        enabled=True,
    )
