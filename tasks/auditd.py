"""auditd: a small audit rule set for what matters on a proxy.

Owns: /etc/audit/rules.d/90-proxy.rules (templates/audit/90-proxy.rules: sshd_config, sudoers,
identity files, nginx and nftables configuration, unit files, module loading), its loading into
the kernel (`augenrules --load` when the file changed), auditd running and enabled at boot, and
the drop-ins proxy-not-in-container.conf of auditd.service and audit-rules.service
(ConditionVirtualization=!container).
Declares the package auditd (tasks/packages.py installs it with the others).
Reads: auditd_enabled.
Leaves alone: Debian's own rules (audit.rules: buffers, failure mode) and auditd.conf. The log
shipper (tasks/log_shipping.py) ships the rotated audit logs with the access logs.

Inside a container (`systemd-detect-virt --container`) the audit subsystem is the machine's:
auditd cannot start there, so the rules are persisted and enabled at boot but neither loaded nor
started, and the run says so (like the global sysctl keys); the units' condition skips them at
boot instead of failing (a failed unit would leave the host "degraded").
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.server import Command
from pyinfra.operations import server

from tasks.activation import install_file, manages, template_text
from tasks.facts import ask, asks
from tasks.settings import for_host
from tasks.units import service_state, unit_state, watches

PACKAGES = ("auditd",)
# Where auditd writes (log_file in Debian's auditd.conf, left alone), root:adm 0640 in a root:adm
# 0750 directory (log_group = adm): the log shipper, in group adm, ships its rotated files.
AUDIT_LOG = "/var/log/audit/audit.log"
RULES = "/etc/audit/rules.d/90-proxy.rules"
# audit-rules.service loads the rules on Debian 13 (Debian 12: auditd.service itself).
UNITS = ("auditd.service", "audit-rules.service")
DROPINS = tuple(f"/etc/systemd/system/{unit}.d/proxy-not-in-container.conf" for unit in UNITS)
manages(RULES, *DROPINS)
watches(*UNITS)


@asks
def _container() -> tuple[type[Command], dict]:
    return Command, {"command": "systemd-detect-virt --container || true"}


def in_container() -> bool:
    return (ask(_container) or "").strip() not in ("", "none")


@deploy("Audit what matters (auditd)")
def audit_rules() -> None:
    if not for_host(host).auditd_enabled:
        return
    skipped_in_containers = [
        install_file(
            name=f"Install {path}",
            path=path,
            content=template_text("audit/not-in-container.conf"),
        )
        for path in DROPINS
    ]
    stale = [u for u in UNITS if unit_state(u).get("NeedDaemonReload") == "yes"]
    if any(skipped_in_containers) or stale:
        server.shell(
            name="Reload systemd (auditd skipped in containers), forget earlier failures",
            commands=[
                f"systemctl daemon-reload && systemctl reset-failed {' '.join(UNITS)} || true"
            ],
        )
    changed = install_file(
        name=f"Install {RULES}",
        path=RULES,
        content=template_text("audit/90-proxy.rules"),
        mode="640",
    )
    if in_container():
        service_state(name="Enable auditd at boot", unit="auditd", enabled=True)
        logger.info(
            f"[{host.name}] auditd: rules persisted and enabled at boot, not running here "
            "(container: the audit subsystem is the machine's)"
        )
        return
    service_state(
        name="Keep auditd running and enabled at boot", unit="auditd", running=True, enabled=True
    )
    if changed:
        server.shell(name=f"Load the audit rules ({RULES} changed)", commands=["augenrules --load"])
