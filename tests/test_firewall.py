"""The nftables.service drop-in (issue 13 item 9): stopping the unit deletes only the deploy's
table, never `nft flush ruleset`. Its behaviour on real hosts: tests/test_firewall_lab.py."""

from __future__ import annotations

from tasks import firewall
from tasks.activation import MANAGED_FILES, template_text

DROPIN = template_text("systemd/nftables-proxy-deploy.conf")


def directives(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in DROPIN.splitlines() if line.startswith(f"{key}=")]


def test_stop_resets_the_packages_flush_and_deletes_only_our_table() -> None:
    stop = directives("ExecStop")
    assert stop[0] == "", "ExecStop= must first clear the package's `nft flush ruleset`"
    table = firewall.TABLE
    assert stop[1:] == [f'/usr/sbin/nft "add table {table}; delete table {table}"']
    assert "flush" not in "".join(line for line in DROPIN.splitlines() if not line.startswith("#"))


def test_start_and_reload_load_only_our_ruleset_file() -> None:
    for key in ("ExecStart", "ExecReload"):
        assert directives(key) == ["", f"/usr/sbin/nft -f {firewall.RULESET}"], key


def test_the_dropin_is_a_service_section_in_nftables_service_d_and_a_managed_file() -> None:
    assert firewall.DROPIN == "/etc/systemd/system/nftables.service.d/proxy-deploy.conf"
    assert "[Service]" in DROPIN.splitlines()
    assert firewall.DROPIN in MANAGED_FILES  # read in the one fact command: no extra round trip
