"""The SSH daemon, hardened without ever locking the deploy out, even by a run killed midway.

Owns: /etc/ssh/sshd_config (the whole file, mode 600, no drop-ins read), weak DH moduli
(removed from /etc/ssh/moduli), the ssh service's reload, sshd's activation record, and the
safety net: /usr/local/lib/proxy-deploy/sshd-rollback with the units
proxy-deploy-sshd-rollback.service (enabled: runs at boot) and .timer, and the state in
/var/lib/proxy-deploy/sshd/ (`confirmed`: the last sshd_config a fresh login proved;
`pending`: present while a change is unconfirmed).
Reads: sshd_allow_users, sshd_login_grace_time, sshd_max_auth_tries, sshd_ciphers,
sshd_kex_algorithms, sshd_macs, sshd_client_alive_interval, admin_cidrs, legal_banner (Banner
/etc/issue.net, written by tasks/host_controls.py); pyinfra's ssh_port.

A change goes live in this order, and a kill or a reboot between any two steps is safe:
1. arm: keep the running file as `confirmed` if none is kept yet, create `pending`, start the
   two-minute timer. From here on the timer, or the boot-time service after a reboot, puts
   `confirmed` back unless step 4 happens first.
2. install the new file, checked with `sshd -t` first (tasks/activation.py);
3. reload sshd (never restart: open sessions survive);
4. log in *afresh* over SSH as the deploy user and, over that login, stop the timer, keep the
   new file as `confirmed`, record it as active and remove `pending`. If that login fails, the
   confirmed file is put back at once over the connection still open, and the host fails.
A run that finds `pending`, a file that is not the desired one, or an activation record that is
not the desired fingerprint does all four steps again.
"""

from __future__ import annotations

from shlex import quote

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.facts.server import Command
from pyinfra.operations import python, server

from tasks import drift
from tasks.activation import (
    STATE_DIR,
    differing,
    fingerprint,
    install_file,
    install_validated,
    manages,
    program_text,
    record_command,
    recorded,
    render,
    template_text,
)
from tasks.facts import ask, asks, exists, looks_for
from tasks.hardening_defaults import (
    SSHD_HOST_KEY_ALGORITHMS,
    SSHD_HOST_KEY_FILES,
    SSHD_MODULI_MIN_SIZE_FIELD,
    SSHD_REQUIRED_RSA_SIZE,
    effective_kex_algorithms,
    parse_openssh_version,
    penalty_exempt_cidrs,
)
from tasks.settings import Settings, for_host, ssh_port_of
from tasks.ssh_login import fresh_login_runs
from tasks.units import enable_at_boot, install_units, watches

SSHD_CONFIG = "/etc/ssh/sshd_config"
MODULI = "/etc/ssh/moduli"
SSHD_STATE = f"{STATE_DIR}/sshd"
CONFIRMED = f"{SSHD_STATE}/confirmed"
PENDING = f"{SSHD_STATE}/pending"
ROLLBACK_UNIT = "proxy-deploy-sshd-rollback"
ROLLBACK_SCRIPT = "/usr/local/lib/proxy-deploy/sshd-rollback"
UNIT_DIR = "/etc/systemd/system"
manages(
    SSHD_CONFIG,
    ROLLBACK_SCRIPT,
    *(f"{UNIT_DIR}/{ROLLBACK_UNIT}.{kind}" for kind in ("service", "timer")),
)
watches(f"{ROLLBACK_UNIT}.service", f"{ROLLBACK_UNIT}.timer")
looks_for(PENDING)


@asks
def _moduli_and_version() -> tuple[type[Command], dict]:
    """The weak moduli count on the first line, `ssh -V` on the second."""
    return Command, {"command": f"{_count_weak_moduli()}; ssh -V 2>&1"}


@deploy("Harden the SSH daemon")
def harden_sshd() -> None:
    settings = for_host(host)
    version_and_count = ask(_moduli_and_version) or ""
    weak_moduli, _, version = version_and_count.partition("\n")
    openssh = parse_openssh_version(version)
    if weak_moduli.strip() not in ("", "0"):
        server.shell(
            name=f"Remove Diffie-Hellman moduli under {SSHD_MODULI_MIN_SIZE_FIELD + 1} bits",
            commands=[_keep_strong_moduli()],
        )
    _install_safety_net()
    wanted = {SSHD_CONFIG: sshd_config(settings, ssh_port_of(host), openssh)}
    unconfirmed = _why_unconfirmed(wanted)
    if unconfirmed is None:
        host.noop("sshd runs the deployed, confirmed configuration")
        return
    # One line explains the whole sequence below (arm, install, reload, confirm).
    drift.state_differs("sshd", unconfirmed, "Harden the SSH daemon")
    _change_with_safety_net(wanted)


def sshd_config(settings: Settings, ssh_port: int, openssh_version: tuple[int, int] | None) -> str:
    """/etc/ssh/sshd_config for the host's OpenSSH (None: unknown, nothing version-specific):
    the template gets every value computed here and in tasks/hardening_defaults.py."""
    return render(
        "ssh/sshd_config.j2",
        s=settings,
        ssh_port=ssh_port,
        kex_algorithms=effective_kex_algorithms(settings.sshd_kex_algorithms, openssh_version),
        penalty_exempt=penalty_exempt_cidrs(settings.admin_cidrs, openssh_version),
        host_key_files=SSHD_HOST_KEY_FILES,
        host_key_algorithms=SSHD_HOST_KEY_ALGORITHMS,
        required_rsa_size=SSHD_REQUIRED_RSA_SIZE,
    )


def _why_unconfirmed(wanted: dict[str, str]) -> str | None:
    """None when sshd runs WANTED and a fresh login confirmed it; else why it is not so."""
    if exists(PENDING):
        return "a change is not confirmed yet by a fresh login (the rollback timer is armed)"
    if differing(wanted):
        return f"{SSHD_CONFIG} is not the deployed file (the repair reloads sshd, then confirms)"
    if recorded("sshd") != fingerprint(wanted):
        return f"running configuration older than {SSHD_CONFIG} (reload pending)"
    return None


def _install_safety_net() -> None:
    install_file(
        name=f"Install {ROLLBACK_SCRIPT}",
        path=ROLLBACK_SCRIPT,
        content=program_text("sshd-rollback.sh"),
        mode="755",
    )
    install_units(
        {
            f"{UNIT_DIR}/{ROLLBACK_UNIT}.{kind}": template_text(f"ssh/{ROLLBACK_UNIT}.{kind}")
            for kind in ("service", "timer")
        },
        "sshd rollback",
    )
    enable_at_boot(f"{ROLLBACK_UNIT}.service", "rolls an unconfirmed sshd_config back at boot")


def _change_with_safety_net(wanted: dict[str, str]) -> None:
    server.shell(
        name="Arm the sshd safety net: the confirmed sshd_config returns in 2 minutes, or at "
        "boot, unless a fresh login confirms the new one",
        commands=[
            f"mkdir -p {SSHD_STATE} && chmod 700 {SSHD_STATE}"
            f" && {{ [ -s {CONFIRMED} ] || cp -p {SSHD_CONFIG} {CONFIRMED}; }}"
            f" && touch {PENDING} && systemctl restart {ROLLBACK_UNIT}.timer"
        ],
    )
    install_validated(
        name=f"Install {SSHD_CONFIG} (checked with sshd -t first)",
        files=wanted,
        check="sshd -t -f {stage}" + SSHD_CONFIG,
        label="sshd",
        mode="600",
    )
    server.shell(name="Reload sshd", commands=["systemctl reload ssh"])
    python.call(
        name="Log in afresh over SSH, then confirm the new sshd_config and disarm the rollback",
        function=_confirm_or_roll_back,
        confirm=_confirm_command(fingerprint(wanted)),
    )


def _confirm_command(active: str) -> str:
    """Shell, run over the fresh login: disarm first, then keep and record, then clear pending."""
    return (
        f"systemctl stop {ROLLBACK_UNIT}.timer"
        f" && cp -p {SSHD_CONFIG} {CONFIRMED}.new && mv -f {CONFIRMED}.new {CONFIRMED}"
        f" && {record_command('sshd', active)} && rm -f {PENDING}"
    )


def _count_weak_moduli() -> str:
    return f"awk '$1 !~ /^#/ && $5 < {SSHD_MODULI_MIN_SIZE_FIELD}' {MODULI} 2>/dev/null | wc -l"


def _keep_strong_moduli() -> str:
    return (
        f"awk '$1 ~ /^#/ || $5 >= {SSHD_MODULI_MIN_SIZE_FIELD}' {MODULI} > {MODULI}.new"
        f" && chmod 644 {MODULI}.new && mv -f {MODULI}.new {MODULI}"
    )


def _confirm_or_roll_back(confirm: str) -> None:
    """Runs on the deploy machine once sshd has reloaded (see the module docstring)."""
    ok, detail = fresh_login_runs(host, f"sudo -n sh -c {quote(confirm)}")
    if ok:
        return
    logger.warning(
        f"[{host.name}] fresh SSH login failed ({detail}): restoring the confirmed sshd_config"
    )
    host.run_shell_command(f"systemctl stop {ROLLBACK_UNIT}.timer; {ROLLBACK_SCRIPT}", _sudo=True)
    raise PyinfraError(
        f"{host.name}: a fresh SSH login failed after the new sshd_config ({detail}); "
        "the last confirmed configuration was put back"
    )
