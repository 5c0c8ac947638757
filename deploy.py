"""The deploy: hardened nginx reverse proxies that retry a flaky backend.

    pyinfra inventories/aws.py deploy.py                   # every proxy
    pyinfra inventories/aws.py deploy.py --limit proxy-2   # one host

Each line below is one concern, in its own module under tasks/. Settings are validated, and the
lockout guard checked, for every host before anything runs (tasks/preflight.py); then the host's
state is read in one command (tasks/facts.py), and each task compares against it.
"""

from tasks import (
    auditd,
    facts,
    finish,
    firewall,
    host_controls,
    log_shipping,
    nginx_install,
    nginx_proxy,
    packages,
    preflight,
    sandbox,
    sshd,
    sysctl,
    time_sync,
    updates,
)

preflight.check_settings_and_access()
facts.read_all()  # every fact the tasks below compare, in one remote command
nginx_install.package_source()
packages.install_needed()
updates.security_updates()  # the pending security updates once, before nginx serves
nginx_proxy.configure_proxy()
sshd.harden_sshd()
firewall.configure_firewall()
sysctl.harden_sysctl()
sandbox.sandbox_services()
host_controls.host_controls()
auditd.audit_rules()
time_sync.time_sync()
packages.remove_unneeded()
log_shipping.ship_logs()
finish.deploy_finished()  # listed in pyinfra's results even when nothing changed
