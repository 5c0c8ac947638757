"""Settings for the proxies (the `proxies` group): overrides of the defaults in tasks/settings.py.

Every setting, its default and the reason for it: README "Settings" (generated from
tasks/settings.py). Settings that depend on the environment (the allowlists) belong in the
environment's own file, group_data/env_<ENVIRONMENT>.py (the inventory puts each instance in
the group `env_<its Environment tag>`); see group_data/env_lab.py.
"""
