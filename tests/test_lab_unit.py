"""The lab's own code, without a lab: clear refusals before anything is made, and how a command
reaches a lab host (`core.run_in`)."""

from __future__ import annotations

import subprocess

import pytest

from lab import __main__ as cli
from lab import config, core, state
from lab.testinfra_host import lab_host


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


def test_run_in_runs_in_the_members_namespace_and_passes_text_and_check(monkeypatch):
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append((cmd, kwargs))
        return subprocess.CompletedProcess(
            cmd, 0, stdout=b"" if not kwargs["text"] else "", stderr=""
        )

    monkeypatch.setattr(core.state, "load", lambda: {"leaders": {}})
    monkeypatch.setattr(core.hosts.subprocess, "run", fake_run)
    core.run_in("app-1", ["true"])
    core.run_in("app-1", ["true"], text=False, check=True)
    assert [c for c, _ in calls] == [["ip", "netns", "exec", "plab-app-1", "true"]] * 2
    assert [(k["text"], k["check"], k["capture_output"]) for _, k in calls] == [
        (True, False, True),
        (False, True, True),
    ]


def test_testinfra_host_runs_its_commands_through_run_in(monkeypatch, tmp_path):
    """testinfra's quoting reaches run_in as one `sh -c` argument (run here on this machine)."""
    seen = []

    def local_run_in(name, cmd, **kwargs):
        seen.append((name, cmd[:2], kwargs))
        return subprocess.run(cmd, capture_output=True, text=kwargs.get("text", True))

    monkeypatch.setattr(core, "run_in", local_run_in)
    (tmp_path / "a file").write_text("NTP=169.254.169.123\n")
    host = lab_host("proxy-1")
    assert host.file(str(tmp_path / "a file")).contains("^NTP=")
    assert host.run("echo %s", "two words; not a command").stdout == "two words; not a command\n"
    assert {(name, tuple(cmd), kwargs["text"]) for name, cmd, kwargs in seen} == {
        ("proxy-1", ("/bin/sh", "-c"), False)
    }


def test_up_and_down_hold_the_lab_lock_and_nest(tmp_path, monkeypatch):
    """Two `up`/`down` at once would each save the record from their own copy (PIDs lost, their
    processes left running): each holds lab.lock, which another process cannot take meanwhile;
    `up` calls `down` on a failure, so the lock nests in one process."""
    monkeypatch.setattr(config, "STATE_DIR", tmp_path)
    lock = str(tmp_path / "lab.lock")

    def another_process_can_take_it() -> bool:
        return subprocess.run(["flock", "--nonblock", lock, "true"]).returncode == 0

    with state.exclusive():
        with state.exclusive():
            assert not another_process_can_take_it()
        assert not another_process_can_take_it()
    assert another_process_can_take_it()
