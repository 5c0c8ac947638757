"""Checks that run before any operation: settings, and that the deploy cannot lock itself out.

Owns: nothing on the hosts (reads facts only).
Reads: every setting (validated as a whole by tasks/settings.py).

pyinfra runs operations only after it has prepared them for every host, so an error raised
here stops the whole run before any host is changed.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from tasks.settings import for_host


@deploy("Check settings and access")
def check_settings_and_access() -> None:
    for_host(host)  # raises SettingsError naming each bad setting
