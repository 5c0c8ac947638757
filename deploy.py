"""The deploy: hardened nginx reverse proxies that retry a flaky backend.

    pyinfra inventories/aws.py deploy.py                   # every proxy
    pyinfra inventories/aws.py deploy.py --limit proxy-2   # one host

Each line below is one concern, in its own module under tasks/. Settings are validated for
every host before anything runs (tasks/settings.py): a bad value stops the run with its name.
"""

from tasks import nginx_install, nginx_proxy, preflight

preflight.check_settings_and_access()
nginx_install.install_nginx()
nginx_proxy.configure_proxy()
