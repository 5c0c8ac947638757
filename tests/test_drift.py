"""tasks/drift.py, the pure parts: the diff a drift report shows. Fast unit tests; on the lab:
tests/test_drift_lab.py."""

from __future__ import annotations

from tasks.drift import unified_diff


def test_diff_goes_from_live_to_desired_and_names_the_path():
    diff = unified_diff("/etc/x", "a\nhand edit\n", "a\n")
    assert diff.splitlines()[:2] == ["--- /etc/x (live)", "+++ /etc/x (desired)"]
    assert "-hand edit" in diff.splitlines()
