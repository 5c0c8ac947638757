"""Unit tests of the pure parts of activation and drift: what the facts' output means, the
fingerprints, nginx's load times, the diff. The behaviour on real hosts is in test_drift_lab.py."""

from __future__ import annotations

import pytest

from tasks.activation import ActivationRecords, fingerprint, sha1
from tasks.drift import unified_diff
from tasks.facts import ManagedFiles
from tasks.nginx_proxy import LoadTimes, NginxLoaded
from tasks.sysctl import _typed


def test_records_fact_reads_one_label_and_value_per_line():
    output = ["nginx 3f2a", "firewall abc def", "sshd "]
    assert ActivationRecords().process(output) == {
        "nginx": "3f2a",
        "firewall": "abc def",
        "sshd": "",
    }


def test_managed_files_fact_reads_hash_mode_and_path_and_skips_junk():
    output = [f"{'a' * 40} 600 /etc/default/proxy-log-shipping", f"{'b' * 40} 644 /etc/x y", ""]
    assert ManagedFiles().process(output) == {
        "/etc/default/proxy-log-shipping": ("a" * 40, "600"),
        "/etc/x y": ("b" * 40, "644"),
    }


def test_fingerprint_changes_with_any_file_and_ignores_order():
    one = {"/a": "x", "/b": "y"}
    assert fingerprint(one) == fingerprint({"/b": "y", "/a": "x"})
    assert fingerprint(one) != fingerprint({"/a": "x", "/b": "z"})
    assert fingerprint(one) != fingerprint({"/a": "x"})
    assert sha1("") == "da39a3ee5e6b4b0d3255bfef95601890afd80709"


@pytest.mark.parametrize(
    ("loaded", "changed", "stale"),
    [
        (100.5, 100.0, False),  # reloaded after the file changed
        (100.0, 100.01, False),  # within the clocks' resolution
        (100.0, 101.0, True),  # file changed after the last (re)load: not live
        (None, 101.0, False),  # nginx not running: the service operation starts it
        (100.0, None, False),  # no file yet
    ],
)
def test_nginx_is_stale_only_when_its_workers_are_older_than_its_file(loaded, changed, stale):
    line = LoadTimes(loaded, changed).drift("/etc/nginx/nginx.conf")
    assert (line is not None) is stale
    if stale:
        assert line.startswith("running configuration older than /etc/nginx/nginx.conf")


def test_nginx_load_time_places_worker_ticks_on_the_wall_clock():
    # now 1000.0 s, up 500.0 s => booted at 500.0; a worker started 250 s (25,000 ticks) after.
    times = NginxLoaded().process(["1000.0 500.0 100 800.25", "20000", "25000"])
    assert times == LoadTimes(750.0, 800.25)
    assert NginxLoaded().process(["1000.0 500.0 100 -"]) == LoadTimes(None, None)


def test_diff_goes_from_live_to_desired_and_names_the_path():
    diff = unified_diff("/etc/x", "a\nhand edit\n", "a\n")
    assert diff.splitlines()[:2] == ["--- /etc/x (live)", "+++ /etc/x (desired)"]
    assert "-hand edit" in diff.splitlines()


def test_sysctl_values_compare_as_the_fact_reports_them():
    assert _typed("1") == 1
    assert _typed("32768 60999") == [32768, 60999]
    assert _typed("bbr") == "bbr"
