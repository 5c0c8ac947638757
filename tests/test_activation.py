"""tasks/activation.py, the pure parts: the activation records' fact, the fingerprints. Fast
unit tests; the behaviour on real hosts is in tests/test_drift_lab.py."""

from __future__ import annotations

from tasks.activation import ActivationRecords, fingerprint, sha1


def test_records_fact_reads_one_label_and_value_per_line():
    output = ["nginx 3f2a", "firewall abc def", "sshd "]
    assert ActivationRecords().process(output) == {
        "nginx": "3f2a",
        "firewall": "abc def",
        "sshd": "",
    }


def test_fingerprint_changes_with_any_file_and_ignores_order():
    one = {"/a": "x", "/b": "y"}
    assert fingerprint(one) == fingerprint({"/b": "y", "/a": "x"})
    assert fingerprint(one) != fingerprint({"/a": "x", "/b": "z"})
    assert fingerprint(one) != fingerprint({"/a": "x"})
    assert sha1("") == "da39a3ee5e6b4b0d3255bfef95601890afd80709"
