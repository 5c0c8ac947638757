"""Shipping the proxies' logs to S3: the rotated JSON access logs and audit logs, hourly, nothing
lost on failure.

Declares the package curl (tasks/packages.py installs it; nginx_install needs it too): the
uploader is Python's standard library plus curl, which signs the S3 requests itself
(`--aws-sigv4`), so no boto3 on the proxies. Owns: /usr/local/lib/proxy-deploy/ship-logs (from
programs/ship-logs.py), /etc/default/proxy-log-shipping, and the units
proxy-log-shipping.service and .timer (enabled). With `log_bucket` empty the timer is stopped
and disabled (the files stay, inert).
The audit log (auditd_enabled, audit_log_prefix not empty) goes under a prefix of its own; once a
day the unit asks auditd to rotate it first, as auditd itself rotates only at 8 MB.
Reads: log_bucket, log_prefix, audit_log_prefix, auditd_enabled, log_shipping_env, access_log;
the instance id and region from the EC2 inventory (the object keys carry the instance id).
Leaves alone: rotation of the access log (the nginx package's logrotate: daily, 14 days) and
the bucket (terraform/).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from tasks.activation import install_file, manages, program_text, render
from tasks.auditd import AUDIT_LOG
from tasks.facts import exists, looks_for
from tasks.settings import for_host, instance_identity
from tasks.units import install_units, service_state, watches

UNIT = "proxy-log-shipping"
UNIT_DIR = "/etc/systemd/system"
SCRIPT = "/usr/local/lib/proxy-deploy/ship-logs"
ENV_FILE = "/etc/default/proxy-log-shipping"
manages(SCRIPT, ENV_FILE, *(f"{UNIT_DIR}/{UNIT}.{kind}" for kind in ("service", "timer")))
watches(f"{UNIT}.service", f"{UNIT}.timer")
looks_for(f"{UNIT_DIR}/{UNIT}.timer")
# The uploader's S3 client (curl signs with AWS SigV4 since 7.75; Debian 12 has 7.88).
# Hosts converged before this keep python3-boto3: nothing removes a package the deploy stops
# declaring, and an operator may use it.
PACKAGES = ("curl",)


@deploy("Ship access logs to S3")
def ship_logs() -> None:
    settings = for_host(host)
    if not settings.log_bucket:
        if exists(f"{UNIT_DIR}/{UNIT}.timer"):
            service_state(
                name=f"Stop and disable {UNIT}.timer (log_bucket is empty)",
                unit=f"{UNIT}.timer",
                running=False,
                enabled=False,
            )
        return
    instance_id, region = instance_identity(host)
    audit_log = AUDIT_LOG if settings.auditd_enabled and settings.audit_log_prefix else ""
    install_file(
        name=f"Install {SCRIPT}",
        path=SCRIPT,
        content=program_text("ship-logs.py"),
        mode="755",
    )
    install_file(
        name=f"Install {ENV_FILE}",
        path=ENV_FILE,
        mode="600",
        content=render(
            f"logs/{UNIT}.env.j2",
            s=settings,
            instance_id=instance_id,
            region=region or "us-east-1",
            audit_log=audit_log,
        ),
    )
    install_units(
        {
            f"{UNIT_DIR}/{UNIT}.{kind}": render(
                f"logs/{UNIT}.{kind}.j2", s=settings, audit_log=audit_log
            )
            for kind in ("service", "timer")
        },
        "log shipping",
    )
    service_state(
        name=f"Run {UNIT}.timer hourly, from boot",
        unit=f"{UNIT}.timer",
        running=True,
        enabled=True,
    )
