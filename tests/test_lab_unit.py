"""The lab's own checks, without a lab: clear refusals before anything is made."""

from __future__ import annotations

import pytest

from lab import __main__ as cli
from lab import config, core


def test_preflight_refuses_without_root(monkeypatch):
    monkeypatch.setattr(core.os, "geteuid", lambda: 1000)
    with pytest.raises(core.LabError, match="needs root"):
        core.preflight()


def test_preflight_names_missing_packages(monkeypatch):
    monkeypatch.setattr(core.os, "geteuid", lambda: 0)
    monkeypatch.setattr(core.shutil, "which", lambda cmd: None if cmd == "debootstrap" else "/x")
    with pytest.raises(core.LabError, match="missing packages: debootstrap"):
        core.preflight()


def test_default_lab_has_two_debian_13_proxies_and_one_debian_12():
    suites = {n.name: n.suite for n in config.nodes(3) if n.container}
    assert suites == {"proxy-1": "trixie", "proxy-2": "trixie", "proxy-3": "bookworm"}


def test_suite_option_rejects_unknown_suite():
    with pytest.raises(core.LabError, match="proxy-N=trixie or proxy-N=bookworm"):
        cli._suites(["proxy-1=jessie"])


def test_link_names_fit_the_kernel_limit():
    assert all(len(n.link) <= 15 for n in config.nodes(50))


def test_env_lines_point_at_the_fake_aws():
    env = core.env_vars()
    assert env["AWS_ENDPOINT_URL"].startswith("http://10.77.0.1:")  # the lab bridge
    assert env["ENVIRONMENT"] == "lab"


def test_inotify_limit_is_raised_for_fifty_hosts_and_put_back(tmp_path, monkeypatch):
    from lab import limits, state

    knob = tmp_path / "max_user_instances"
    knob.write_text("128\n")
    monkeypatch.setattr(limits, "INOTIFY_INSTANCES", knob)
    monkeypatch.setattr(state, "save", lambda lab_state: None)
    lab_state: dict = {}
    limits.raise_for(lab_state, 50)
    assert int(knob.read_text()) == limits.needed_instances(50) >= 50 * 7 + 128
    limits.restore(lab_state)
    assert knob.read_text() == "128\n"


def test_inotify_limit_is_never_lowered(tmp_path, monkeypatch):
    from lab import limits, state

    knob = tmp_path / "max_user_instances"
    knob.write_text("8192\n")
    monkeypatch.setattr(limits, "INOTIFY_INSTANCES", knob)
    monkeypatch.setattr(state, "save", lambda lab_state: None)
    lab_state: dict = {}
    limits.raise_for(lab_state, 50)
    limits.restore(lab_state)
    assert knob.read_text() == "8192\n"
    assert "inotify_instances_before" not in lab_state
