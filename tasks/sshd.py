"""The SSH daemon, hardened without ever locking the deploy out.

Owns: /etc/ssh/sshd_config (the whole file, mode 600, no drop-ins read), weak DH moduli
(removed from /etc/ssh/moduli), the ssh service's reload, and a transient systemd timer
`proxy-deploy-sshd-rollback` that exists only while a new configuration is being confirmed.
Reads: sshd_allow_users, sshd_login_grace_time, sshd_max_auth_tries, sshd_ciphers,
sshd_kex_algorithms, sshd_macs, sshd_client_alive_interval, admin_cidrs; pyinfra's ssh_port.

A new configuration is checked with `sshd -t` before it replaces the old one. Before sshd is
reloaded (never restarted: open sessions survive), a timer is armed that puts the last good
file back in two minutes. Then the deploy opens a *fresh* SSH connection, as the deploy user,
and uses it to disarm the timer. If that login fails, the old file is restored at once over
the connection still open, and the host fails.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.facts.server import Command
from pyinfra.operations import python, server, systemd

from tasks.activation import STATE_DIR, install_validated, render
from tasks.hardening_defaults import SSHD_MODULI_MIN_SIZE_FIELD, parse_openssh_version
from tasks.settings import for_host, ssh_port_of
from tasks.ssh_login import fresh_login_runs

SSHD_CONFIG = "/etc/ssh/sshd_config"
MODULI = "/etc/ssh/moduli"
ROLLBACK_UNIT = "proxy-deploy-sshd-rollback"
ROLLBACK_AFTER = "2min"
LAST_GOOD = f"{STATE_DIR}/last-good/sshd{SSHD_CONFIG}"
RESTORE = f"cp -p {LAST_GOOD} {SSHD_CONFIG} && systemctl reload ssh"


@deploy("Harden the SSH daemon")
def harden_sshd() -> None:
    settings = for_host(host)
    openssh = parse_openssh_version(host.get_fact(Command, command="ssh -V 2>&1") or "")
    weak_moduli = host.get_fact(Command, command=_count_weak_moduli())
    if weak_moduli and weak_moduli.strip() != "0":
        server.shell(
            name=f"Remove Diffie-Hellman moduli under {SSHD_MODULI_MIN_SIZE_FIELD + 1} bits",
            commands=[_keep_strong_moduli()],
        )
    config = install_validated(
        name=f"Install {SSHD_CONFIG} (checked with sshd -t first)",
        files={
            SSHD_CONFIG: render(
                "ssh/sshd_config.j2",
                s=settings,
                ssh_port=ssh_port_of(host),
                openssh_version=openssh,
            )
        },
        check="sshd -t -f {stage}" + SSHD_CONFIG,
        label="sshd",
        mode="600",
    )
    server.shell(
        name=f"Arm the rollback: the last good sshd_config returns in {ROLLBACK_AFTER} "
        "unless a fresh login confirms the new one",
        commands=[
            f"systemctl stop {ROLLBACK_UNIT}.timer 2>/dev/null; "
            f"systemctl reset-failed {ROLLBACK_UNIT}.service 2>/dev/null; "
            f"systemd-run --quiet --unit={ROLLBACK_UNIT} --on-active={ROLLBACK_AFTER} "
            f"/bin/sh -c '{RESTORE}'"
        ],
        _if=config.did_change,
    )
    systemd.service(
        name="Reload sshd (its configuration changed)",
        service="ssh",
        reloaded=True,
        _if=config.did_change,
    )
    python.call(
        name="Log in afresh over SSH and disarm the rollback",
        function=_confirm_or_restore,
        _if=config.did_change,
    )


def _count_weak_moduli() -> str:
    return f"awk '$1 !~ /^#/ && $5 < {SSHD_MODULI_MIN_SIZE_FIELD}' {MODULI} 2>/dev/null | wc -l"


def _keep_strong_moduli() -> str:
    return (
        f"awk '$1 ~ /^#/ || $5 >= {SSHD_MODULI_MIN_SIZE_FIELD}' {MODULI} > {MODULI}.new"
        f" && chmod 644 {MODULI}.new && mv -f {MODULI}.new {MODULI}"
    )


def _confirm_or_restore() -> None:
    """Runs on the deploy machine once sshd has reloaded (see the module docstring)."""
    disarm = f"sudo -n systemctl stop {ROLLBACK_UNIT}.timer"
    ok, detail = fresh_login_runs(host, disarm)
    if ok:
        return
    logger.warning(
        f"[{host.name}] fresh SSH login failed ({detail}): restoring the old sshd_config"
    )
    host.run_shell_command(f"{RESTORE} && systemctl stop {ROLLBACK_UNIT}.timer", _sudo=True)
    raise PyinfraError(
        f"{host.name}: a fresh SSH login failed after the new sshd_config ({detail}); "
        "the previous configuration was put back"
    )
