"""Unit tests of tools/rollout/drift.py: real `pyinfra --dry --json` captures plus the deploy's
records, the text report and drift-report.json."""

from __future__ import annotations

from rollout_fakes import NGINX_OP, dry_run, proxy_3_drifted, record

from tools.rollout.drift import DryRun, drift_exit, drift_json, format_drift_report
from tools.rollout.errors import EXIT_DRIFT, EXIT_ERROR, EXIT_OK

# --- Drift, from real `pyinfra --dry --json` captures plus the deploy's records ---------------


def test_parse_dry_run_plan_and_records_combined():
    dry = dry_run("dry_changed")
    assert dry.drifted == ["@local"]
    entries = dry.drift["@local"]
    # the record explains "Install the marker file"; the directory has no record: named as is;
    # "Reload after a change" (hosts_with_conditional_change, `_if=`) is not drift
    assert [(e.kind, e.operation) for e in entries] == [
        ("file", "Install the marker file"),
        ("operation", "Ensure the state directory"),
    ]
    assert entries[0].detail == "missing on the host"
    assert dry.not_checked == {}
    assert dry.error is None


def test_parse_dry_run_conditional_change_only_is_in_step():
    dry = dry_run("dry_unchanged")
    assert dry.drifted == []
    assert dry.in_step == ["@local"]
    assert drift_exit(dry) == EXIT_OK


def test_parse_dry_run_records_alone_make_a_host_drifted():
    dry = proxy_3_drifted()
    assert dry.drifted == ["proxy-3"]
    assert [e.kind for e in dry.drift["proxy-3"]] == ["file", "state", "invalid"]
    assert dry.repair_would_fail == ["proxy-3"]
    assert dry.in_step == ["proxy-1", "proxy-2"]


def test_parse_dry_run_unreachable_host_is_not_checked():
    dry = dry_run("dry_mixed")  # pyinfra exits 1: proxy-unreachable could not be reached
    assert dry.drifted == ["@local", "@chroot//"]
    assert list(dry.not_checked) == ["proxy-unreachable"]
    assert dry.error is None
    assert drift_exit(dry) == EXIT_DRIFT


def test_parse_dry_run_host_without_checked_line_is_not_checked():
    dry = dry_run("dry_unchanged", {"proxy-1": "@local", "proxy-2": "@local"}, drop=["proxy-2"])
    assert dry.in_step == ["proxy-1"]
    assert "did not plan it" in dry.not_checked["proxy-2"]
    assert drift_exit(dry) == EXIT_ERROR


def test_parse_dry_run_without_any_checked_line_is_an_error():
    dry = dry_run("dry_unchanged", drop=["@local"])
    assert "no host was marked as checked in PROXY_DEPLOY_DRIFT_FILE" in dry.error
    assert drift_exit(dry) == EXIT_ERROR


def test_parse_dry_run_without_json_is_an_error():
    dry = dry_run("dry_unreachable")
    assert dry.error == "pyinfra exited 1 without its JSON plan"
    assert list(dry.not_checked) == ["proxy-unreachable"]
    assert dry.in_step == []
    assert drift_exit(dry) == EXIT_ERROR


def test_parse_dry_run_unreadable_record_line_is_an_error():
    dry = dry_run("dry_unchanged", extra='not json\n{"host": "@local", "kind": "odd"}\n')
    assert "PROXY_DEPLOY_DRIFT_FILE line 2: not JSON" in dry.error
    assert "line 3: expected an object" in dry.error
    assert drift_exit(dry) == EXIT_ERROR


def drift_text(dry: DryRun) -> str:
    return format_drift_report(dry, title="Drift report", command=["pyinfra", "--dry"])


def test_drift_report_file_diff_state_and_invalid_records():
    text = drift_text(proxy_3_drifted())
    assert "RESULT: DRIFTED - 1 of 3 hosts would be changed by the deploy." in text
    assert "REPAIR WOULD FAIL VALIDATION on proxy-3:" in text
    assert "\nproxy-3: 3 difference(s) - REPAIR WOULD FAIL VALIDATION\n" in text
    assert (
        "  file /etc/nginx/nginx.conf: differs\n"
        "    --- /etc/nginx/nginx.conf (live)\n"
        "    +++ /etc/nginx/nginx.conf (desired)\n"
    ) in text
    assert "    -keepalive_timeout 65;\n    +keepalive_timeout 20;\n" in text
    assert "  state nginx: running configuration older than /etc/nginx/nginx.conf\n" in text
    assert (
        "  REPAIR WOULD FAIL VALIDATION (nginx):\n"
        '    nginx: [emerg] unknown directive "retry" in /etc/nginx/nginx.conf:12\n'
    ) in text
    assert "In step: proxy-1, proxy-2" in text


def test_drift_report_operation_without_record_by_name_and_no_conditional_lines():
    text = drift_text(dry_run("dry_changed"))
    assert "  file " in text and ": missing on the host\n" in text
    assert (
        "  operation 'Ensure the state directory' would change something (no detail recorded)"
    ) in text
    assert "Reload after a change" not in text
    assert "possibly" not in text


def test_drift_report_not_checked_host_listed():
    text = drift_text(dry_run("dry_mixed"))
    assert "RESULT: DRIFTED - 2 of 3 hosts" in text
    assert "Not checked:\n  proxy-unreachable: the deploy did not plan it" in text


def test_drift_report_nothing_reached_says_not_checked():
    text = drift_text(dry_run("dry_unreachable"))
    assert "RESULT: NOT CHECKED" in text
    assert "The dry run failed: pyinfra exited 1 without its JSON plan" in text


def test_drift_report_clean():
    text = drift_text(dry_run("dry_unchanged"))
    assert "RESULT: IN STEP" in text
    assert "DRIFTED" not in text


def test_drift_report_long_diff_cut_in_text_kept_in_json():
    diff = "--- a\n+++ b\n" + "".join(f"+line {i}\n" for i in range(200))
    dry = dry_run("dry_unchanged", extra=record("@local", "file", "/etc/big", diff))
    text = drift_text(dry)
    assert "+line 57" in text and "+line 58" not in text
    assert "... 142 more line(s) in drift-report.json" in text
    assert drift_json(dry)["drifted"]["@local"][0]["detail"] == diff


def test_drift_json_entries_keep_kind_subject_detail_and_operation():
    doc = drift_json(proxy_3_drifted())
    assert doc["status"] == "drifted"
    assert doc["hosts"] == ["proxy-1", "proxy-2", "proxy-3"]
    assert list(doc["drifted"]) == ["proxy-3"]
    assert "nginx configuration" in str(doc["drifted"]["proxy-3"])
    assert doc["drifted"]["proxy-3"][1] == {
        "kind": "state",
        "subject": "nginx",
        "detail": "running configuration older than /etc/nginx/nginx.conf",
        "operation": NGINX_OP,
    }
    assert doc["not_checked"] == {} and doc["error"] is None


def test_drift_json_status_error_when_not_checked():
    assert drift_json(dry_run("dry_unreachable"))["status"] == "error"
    assert drift_json(dry_run("dry_unchanged"))["status"] == "clean"
