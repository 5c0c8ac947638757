"""tasks/nginx_install.py: nginx.org's signing keys, as the task checks them.

The repository and pin files are rendered in tests/test_templates.py and installed on the lab in
tests/test_nginx_org.py."""

from __future__ import annotations

import re

from tasks.nginx_install import NGINX_ORG_KEY_FINGERPRINTS, fetch_checked_key_command


def test_nginx_signing_key_fingerprints_well_formed() -> None:
    assert len(NGINX_ORG_KEY_FINGERPRINTS) == 3
    assert all(re.fullmatch(r"[0-9A-F]{40}", f) for f in NGINX_ORG_KEY_FINGERPRINTS)
    assert "573BFD6B3D8FBC641079A6ABABF5BD827BD9BF62" in NGINX_ORG_KEY_FINGERPRINTS


def test_key_command_compares_every_fingerprint() -> None:
    assert " ".join(sorted(NGINX_ORG_KEY_FINGERPRINTS)) in fetch_checked_key_command()
