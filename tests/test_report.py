"""The reliability report (report/): parsing, classification, figures, sources, command line.

No lab and no network: sample logs are tests/data/proxy_access_sample.log (its figures are
worked out by hand below) or written by the tests; S3 runs on moto's in-process mock_aws; of the
SSH path only the pure parts, the checks made before any connection and the helpers of
ssh_log_lines over fake paramiko objects are tested.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from report.__main__ import build_parser, main, parse_bucket, plan_from
from report.analyze import Aggregator, choose_bucket, classify, is_success, normalise_route
from report.parse import MalformedLine, parse_line, parse_upstream_statuses
from report.render import percent
from report.sources import (
    JumpHost,
    SourceError,
    SshAuth,
    SshTarget,
    UsageError,
    _bastion_channel,
    _cat_output,
    _login,
    list_s3_keys,
    load_proxy_targets,
    parse_s3_url,
    proxy_targets,
    remote_command,
    s3_endpoint,
    ssh_auth_from_env,
)

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "data" / "proxy_access_sample.log"
TARGET = ["--target", "0.999"]  # saves importing tasks.settings (pyinfra) in most tests


def line(**overrides: object) -> str:
    """One log line as nginx writes it (proxy_json), a successful GET by default."""
    record: dict[str, object] = {
        "time": "2025-11-28T10:00:00+00:00",
        "request_id": "r1",
        "remote_addr": "10.77.0.20",
        "peer_addr": "10.77.0.20",
        "method": "GET",
        "uri": "/pets/1?x=1",
        "path": "/pets/1",
        "host": "proxy",
        "status": 200,
        "request_time": 0.003,
        "upstream_status": "200",
        "upstream_addr": "10.77.0.10:8080",
        "upstream_response_time": "0.002",
        "upstream_connect_time": "0.000",
        "bytes_sent": 300,
        "body_bytes_sent": 20,
        "user_agent": "test",
        "blocked": 0,
    }
    record.update(overrides)
    return json.dumps(record, separators=(",", ":"))


def aggregate(*lines: str) -> Aggregator:
    agg = Aggregator()
    agg.start_source("test")
    agg.read_lines(lines)
    return agg


def run(capsys: pytest.CaptureFixture[str], *argv: str, **kwargs: object) -> tuple[int, str, str]:
    code = main(list(argv), **kwargs)  # type: ignore[arg-type]
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- the log format -------------------------------------------------------------------------------


def template_line(values: dict[str, str]) -> str:
    """A line as `log_format proxy_json` in nginx.conf.j2 would write it with these variables."""
    conf = (REPO / "templates" / "nginx" / "nginx.conf.j2").read_text()
    body = re.search(r"log_format proxy_json escape=json\n(.*?);\n", conf, re.S)
    assert body, "no JSON log_format in nginx.conf.j2"
    template = "".join(re.findall(r"'([^']*)'", body.group(1)))
    return re.sub(r"\$(\w+)", lambda m: values[m.group(1)], template)


NGINX_VALUES = {
    "time_iso8601": "2025-11-28T11:00:00+01:00",
    "proxy_request_id": "4f1c",
    "remote_addr": "10.77.0.20",
    "realip_remote_addr": "10.77.0.20",
    "request_method": "GET",
    "request_uri": "/pets/42?full=1",
    "uri": "/pets/42",
    "host": "proxy.example",
    "status": "200",
    "request_time": "0.012",
    "upstream_status": "502, 500, 200",
    "upstream_addr": "10.77.0.10:8080, 10.77.0.10:8080, 10.77.0.10:8080",
    "upstream_response_time": "0.001, 0.002, 0.003",
    "upstream_connect_time": "0.000, 0.000, 0.000",
    "bytes_sent": "310",
    "body_bytes_sent": "20",
    "http_user_agent": "curl/8",
    "proxy_blocked": "0",
}


def test_parse_line_reads_the_templates_log_format() -> None:
    entry = parse_line(template_line(NGINX_VALUES))
    assert entry.time == datetime(2025, 11, 28, 10, 0, tzinfo=UTC)
    assert (entry.status, entry.method, entry.path) == (200, "GET", "/pets/42")
    assert entry.upstream_statuses == (502, 500, 200)
    assert entry.upstream_addrs == ("10.77.0.10:8080",) * 3
    assert not entry.blocked
    assert entry.request_id == "4f1c"


def test_parse_line_reads_a_blocked_request_without_upstream() -> None:
    # escape=json writes unset variables (no upstream) as "".
    values = NGINX_VALUES | {
        "uri": "/.git/config",
        "request_uri": "/.git/config",
        "status": "404",
        "upstream_status": "",
        "upstream_addr": "",
        "upstream_response_time": "",
        "upstream_connect_time": "",
        "proxy_blocked": "1",
    }
    entry = parse_line(template_line(values))
    assert entry.blocked
    assert entry.upstream_statuses == ()
    assert entry.path == "/.git/config"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("200", (200,)),
        ("502, 500, 200", (502, 500, 200)),
        ("504, -", (504, None)),
        ("-", (None,)),  # parse_line decides with upstream_addr whether this is an attempt
        ("502, 200 : 200", (502, 200, 200)),  # " : " separates upstream groups
    ],
)
def test_parse_upstream_statuses_one_value_per_attempt(
    value: str, expected: tuple[int | None, ...]
) -> None:
    assert parse_upstream_statuses(value) == expected


@pytest.mark.parametrize(
    ("upstream_status", "upstream_addr", "attempts"),
    [("-", "10.77.0.10:8080", (None,)), ("-", "", ()), ("-", "-", ())],
)
def test_lone_dash_is_an_attempt_only_with_an_upstream_address(
    upstream_status: str, upstream_addr: str, attempts: tuple[int | None, ...]
) -> None:
    entry = parse_line(line(upstream_status=upstream_status, upstream_addr=upstream_addr))
    assert entry.upstream_statuses == attempts


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"time":"2025-11-28T10:00:00+00:00","status":200,"upstr', "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (line(status="ok"), "status 'ok'"),
        (line(status=True), "status True"),
        (line(status=42), "not an HTTP status"),
        (line(time="yesterday"), "time 'yesterday'"),
        (line(upstream_status="5x2, 200"), "'5x2' is not a status"),
        (line(blocked="maybe"), "blocked 'maybe'"),
        ('{"status": 200}', "no 'time'"),
    ],
)
def test_parse_line_rejects_malformed_lines_naming_why(text: str, reason: str) -> None:
    with pytest.raises(MalformedLine, match=re.escape(reason)):
        parse_line(text)


def test_parse_line_tolerates_a_reencoded_log() -> None:
    # Shipped logs sometimes come back with numbers as strings and without newer keys.
    entry = parse_line(line(status="503", upstream_status=503, blocked=None, path=""))
    assert entry.status == 503
    assert entry.upstream_statuses == (503,)
    assert not entry.blocked
    assert entry.path == "/pets/1"  # from uri, without the query


# --- what a request means -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "ok"),
    [
        (200, True),
        (304, True),
        (404, True),
        (429, True),
        (444, True),
        (499, False),
        (500, False),
        (502, False),
        (None, False),
    ],
)
def test_is_success_counts_4xx_but_not_499(status: int | None, ok: bool) -> None:
    assert is_success(status) is ok


@pytest.mark.parametrize(
    ("overrides", "attempts", "client_ok", "first_ok", "recovered"),
    [
        ({}, 1, True, True, False),
        ({"upstream_status": "502, 504, 200"}, 3, True, False, True),
        ({"upstream_status": "502, 502", "status": 502}, 2, False, False, False),
        ({"upstream_status": "500", "status": 500, "method": "POST"}, 1, False, False, False),
        ({"upstream_status": "502, -", "status": 499}, 2, False, False, False),
        ({"upstream_status": "", "upstream_addr": "", "status": 429}, 0, True, None, False),
    ],
)
def test_classify_attempts_and_recovery(
    overrides: dict[str, object], attempts: int, client_ok: bool, first_ok: bool | None,
    recovered: bool,
) -> None:  # fmt: skip
    outcome = classify(parse_line(line(**overrides)))
    assert outcome.attempts == attempts
    assert outcome.client_ok is client_ok
    assert outcome.first_ok is first_ok
    assert outcome.recovered is recovered
    assert outcome.reached_backend is (attempts > 0)


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/pets/123", "/pets/{id}"),
        ("/pets/123/visits/7", "/pets/{id}/visits/{id}"),
        ("/appointments", "/appointments"),
        ("/users/3f2b8c1e-9a4d-4b6e-8f00-1234567890ab", "/users/{id}"),
        ("/blobs/0123456789abcdef0123", "/blobs/{id}"),
        ("/t/AbCdEfGhIjKlMnOpQrSt9", "/t/{id}"),
        ("/v1/pets/", "/v1/pets/"),  # short alphanumerics are words, not ids
        ("/", "/"),
        ("", "(no path)"),
    ],
)
def test_normalise_route_replaces_ids(path: str, route: str) -> None:
    assert normalise_route(path) == route


@pytest.mark.parametrize(
    ("span", "bucket"),
    [(0, 60), (3600, 60), (6 * 3600, 300), (86400, 600), (30 * 86400, 21600), (365 * 86400, 86400)],
)
def test_choose_bucket_keeps_the_timeline_short(span: float, bucket: int) -> None:
    assert choose_bucket(span) == bucket


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (None, "n/a"),
        (1.0, "100.00%"),
        (0.99999, "99.999%"),
        (0.9999999, "99.999%"),
        (0.8012, "80.12%"),
        (0.0, "0.00%"),
    ],
)
def test_percent_never_rounds_up_to_100(rate: float | None, text: str) -> None:
    assert percent(rate) == text


# --- the figures ----------------------------------------------------------------------------------


def sample_report():  # type: ignore[no-untyped-def]
    agg = Aggregator()
    agg.start_source(str(SAMPLE))
    agg.read_lines(SAMPLE.read_bytes().splitlines())
    return agg.report()


def test_sample_figures_match_the_hand_count() -> None:
    """tests/data/proxy_access_sample.log: 18 lines = 14 requests, 3 malformed, 1 blank."""
    r = sample_report()
    assert (r.requests, r.blocked, r.served) == (14, 3, 11)
    assert (r.answered_by_nginx, r.reached_backend) == (3, 8)  # 405, 429, 444
    assert r.status_classes == {"2xx": 4, "3xx": 0, "4xx": 4, "499": 1, "5xx": 2}
    assert (r.client_ok, r.through_proxy) == (8, 8 / 11)
    assert (r.first_ok, r.backend_alone) == (2, 0.25)
    assert (r.recovered, r.failed_after_retries, r.failed_not_retried) == (3, 1, 2)
    assert r.recovered + r.failed_after_retries + r.failed_not_retried == r.first_attempt_failed
    assert (r.attempts, r.mean_attempts) == (16, 2.0)
    assert r.attempts_histogram == {1: 4, 2: 2, 3: 1, 5: 1}
    assert [(x.route, x.requests, x.failed, x.first_attempt_failed) for x in r.failing_routes] == [
        ("/pets/{id}", 7, 2, 4),
        ("/appointments", 2, 1, 2),
    ]
    assert [(b.address, b.attempts, b.failed) for b in r.backends] == [
        ("10.77.0.10:8080", 15, 10),
        ("10.77.0.11:8080", 1, 1),
    ]
    assert r.blocked_by_path == [("/.git/config", 2), ("/wp-login.php", 1)]
    assert r.blocked_by_source == [("10.77.0.30", 2), ("203.0.113.9", 1)]
    # 11:01:00+01:00 is 10:01:00Z: times are compared in UTC.
    assert r.first_time == datetime(2025, 11, 28, 10, 0, 1, tzinfo=UTC)
    assert r.last_time == datetime(2025, 11, 28, 10, 2, 30, tzinfo=UTC)
    assert r.malformed == 3
    assert r.malformed_examples[0].startswith(f"{SAMPLE}:14: not JSON")


def test_sample_timeline_is_per_minute_and_leaves_out_blocked() -> None:
    r = sample_report()
    assert r.bucket_seconds == 60
    assert [(p.start.minute, p.served, p.reached_backend) for p in r.timeline] == [
        (0, 9, 7),
        (1, 1, 1),
        (2, 1, 0),
    ]
    assert r.timeline[2].backend_alone is None  # nothing reached a backend: no rate, not 0


def test_timeline_keeps_empty_buckets_as_gaps() -> None:
    agg = aggregate(
        line(time="2025-11-28T10:00:10+00:00"),
        line(time="2025-11-28T10:03:10+00:00", status=502, upstream_status="502, 502"),
    )
    points = agg.report().timeline
    assert [(p.start.minute, p.served) for p in points] == [(0, 1), (1, 0), (2, 0), (3, 1)]
    assert [p.through_proxy for p in points] == [1.0, None, None, 0.0]


def test_bucket_option_regroups_minutes() -> None:
    agg = aggregate(line(time="2025-11-28T10:01:00+00:00"), line(time="2025-11-28T10:07:00+00:00"))
    points = agg.report(bucket_seconds=300).timeline
    assert [(p.start.minute, p.served) for p in points] == [(0, 1), (5, 1)]


def test_top_limits_every_list() -> None:
    lines = [line(path=f"/x{i}/1", status=500, upstream_status="500") for i in range(5)]
    assert len(aggregate(*lines).report(top=2).failing_routes) == 2


def test_empty_input_gives_no_rates_rather_than_zero() -> None:
    r = aggregate().report()
    assert (r.requests, r.through_proxy, r.backend_alone, r.mean_attempts) == (0, None, None, None)
    assert r.timeline == []


# --- command line: files, text, JSON, PNG ---------------------------------------------------------


def test_text_report_of_the_sample(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--file", str(SAMPLE), *TARGET)
    assert code == 0, err
    assert re.search(r"through the proxy\s+72\.72%\s+8 of 11 served", out)
    assert re.search(r"backend alone\s+25\.00%\s+2 of 8 first attempts", out)
    assert re.search(r"recovered by retries\s+3\b", out)
    assert re.search(r"attempts per request\s+2\.000\b", out)
    assert re.search(r"target\s+99\.9%\s+NOT MET", out)
    assert "/pets/{id}" in out
    assert re.search(r"malformed\s+3 lines skipped", out)
    assert "2025-11-28T10:00:01Z .. 2025-11-28T10:02:30Z" in out


def test_json_report_has_the_same_figures(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--file", str(SAMPLE), "--json", *TARGET)
    assert code == 0
    data = json.loads(out)
    assert data["requests"] == {
        "total": 14,
        "blocked": 3,
        "served": 11,
        "answered_by_nginx": 3,
        "reached_backend": 8,
    }
    assert data["success_rate"] == {"through_proxy": 8 / 11, "backend_alone": 0.25, "target": 0.999}
    assert data["recovered_by_retries"] == 3
    assert data["attempts"] == {
        "total": 16,
        "mean": 2.0,
        "histogram": {"1": 4, "2": 2, "3": 1, "5": 1},
    }
    assert data["top_failing_routes"][0]["route"] == "/pets/{id}"
    assert data["blocked"]["by_path"][0] == {"path": "/.git/config", "requests": 2}
    assert data["blocked"]["by_source"][0] == {"remote_addr": "10.77.0.30", "requests": 2}
    assert data["time_range"]["first"] == "2025-11-28T10:00:01Z"
    assert data["malformed_lines"]["count"] == 3
    assert data["errors"] == []
    assert len(data["timeline"]["points"]) == 3


def test_target_defaults_to_the_deploy_setting(capsys: pytest.CaptureFixture[str]) -> None:
    from tasks.settings import Settings

    default = next(f.default for f in fields(Settings) if f.name == "target_success_rate")
    code, out, _ = run(capsys, "--file", str(SAMPLE), "--json")
    assert code == 0
    assert json.loads(out)["success_rate"]["target"] == default


def test_gzip_is_read_by_content_not_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    packed = tmp_path / "proxy_access.log.2"  # rotated and compressed, no .gz suffix
    packed.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    code, out, _ = run(capsys, "--file", str(packed), "--file", str(SAMPLE), "--json", *TARGET)
    assert code == 0
    data = json.loads(out)
    assert data["requests"]["total"] == 28
    assert [s["requests"] for s in data["sources"]] == [14, 14]


def test_standard_input_is_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    stdin = io.BufferedReader(io.BytesIO(SAMPLE.read_bytes()))  # type: ignore[arg-type]
    code, out, _ = run(capsys, "--file", "-", "--json", *TARGET, stdin=stdin)
    assert code == 0
    assert json.loads(out)["sources"][0]["name"] == "standard input"


def test_missing_file_is_reported_and_the_others_still_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.log"
    code, out, err = run(capsys, "--file", str(missing), "--file", str(SAMPLE), *TARGET)
    assert code == 4
    assert f"NOT READ     {missing}: No such file or directory" in out
    assert f"not read: {missing}" in err
    assert "14 read" not in out and "1 read" in out


def test_nothing_readable_gives_no_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--file", str(tmp_path / "nope.log"), *TARGET)
    assert code == 4
    assert out == ""
    assert "nothing could be read" in err


def test_truncated_gzip_keeps_what_was_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = gzip.compress(("\n".join(line(request_id=str(i)) for i in range(2000)) + "\n").encode())
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(data[: len(data) // 2])
    code, out, _ = run(capsys, "--file", str(cut), "--json", *TARGET)
    assert code == 4
    report = json.loads(out)
    assert 0 < report["requests"]["total"] < 2000
    assert "damaged or truncated gzip" in report["errors"][0]


def test_png_is_drawn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "success.png"
    code, _, err = run(capsys, "--file", str(SAMPLE), "--png", str(png), *TARGET)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--file", "x", "--limit", "proxy-1"], "--limit and --log-path go with --from-hosts"),
        (["--s3", "s3://b/p", "--log-path", "/x"], "--limit and --log-path go with --from-hosts"),
        (["--file", "x", "--bucket", "90s"], "--bucket '90s'"),
        (["--file", "x", "--target", "99.9"], "--target '99.9'"),
        (["--file", "x", "--top", "0"], "--top 0"),
        (["--s3", "https://bucket/x"], "expected s3://BUCKET[/PREFIX]"),
        (["--s3", "s3://"], "expected s3://BUCKET[/PREFIX]"),
        (["--file", "-", "--file", "-"], "standard input can be read once only"),
        (
            ["--file", "x", "--png", "/nonexistent-dir/x.png"],
            "directory '/nonexistent-dir' missing",
        ),
    ],
)
def test_bad_usage_exits_2_naming_the_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *argv, environ={})
    assert code == 2
    assert message in err
    assert out == ""


@pytest.mark.parametrize(
    ("text", "seconds"), [("1m", 60), ("5m", 300), ("1h", 3600), ("120", 120), ("1d", 86400)]
)
def test_parse_bucket_accepts_whole_minutes(text: str, seconds: int) -> None:
    assert parse_bucket(text) == seconds


# --- S3 (moto, in process) ------------------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        import boto3

        client = boto3.client("s3", region_name="eu-west-1")
        client.create_bucket(
            Bucket="proxy-logs", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        yield client


def test_s3_reads_plain_and_gzip_objects_under_the_prefix(
    s3, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    sample = SAMPLE.read_bytes()
    s3.put_object(Bucket="proxy-logs", Key="nginx/proxy-1/access.log", Body=sample)
    s3.put_object(
        Bucket="proxy-logs",
        Key="nginx/proxy-2/access.log.gz",
        Body=gzip.compress(sample),
        ContentEncoding="gzip",
    )
    s3.put_object(Bucket="proxy-logs", Key="nginx/proxy-2/", Body=b"")  # a "folder" marker
    s3.put_object(Bucket="proxy-logs", Key="other/access.log", Body=sample)  # outside the prefix
    code, out, err = run(capsys, "--s3", "s3://proxy-logs/nginx/", "--json", *TARGET)
    assert code == 0, err
    data = json.loads(out)
    assert [s["name"] for s in data["sources"]] == [
        "s3://proxy-logs/nginx/proxy-1/access.log",
        "s3://proxy-logs/nginx/proxy-2/access.log.gz",
    ]
    assert data["requests"]["total"] == 28
    assert data["malformed_lines"]["count"] == 6


def test_s3_listing_reads_every_page(s3) -> None:  # type: ignore[no-untyped-def]
    for i in range(5):
        s3.put_object(Bucket="proxy-logs", Key=f"many/{i}.log", Body=line().encode())
    calls = []
    s3.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append(1))
    keys = list_s3_keys(s3, parse_s3_url("s3://proxy-logs/many/"), page_size=2)
    assert keys == [f"many/{i}.log" for i in range(5)]
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "s3://proxy-logs/nothing-here/",
            "s3://proxy-logs/nothing-here/: no object under this prefix",
        ),
        ("s3://no-such-bucket/x", "s3://no-such-bucket/x: NoSuchBucket"),
    ],
)
def test_s3_wrong_bucket_or_prefix_is_an_error(
    s3, url: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "--s3", url, *TARGET)
    assert code == 4
    assert message in err
    assert out == ""


def test_s3_endpoint_follows_boto3s_environment_variables() -> None:
    assert s3_endpoint({}) is None
    assert s3_endpoint({"AWS_ENDPOINT_URL": "http://127.0.0.1:5077"}) == "http://127.0.0.1:5077"
    both = {"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_S3": "http://s3:2"}
    assert s3_endpoint(both) == "http://s3:2"


def test_parse_s3_url_prefix_may_be_empty() -> None:
    assert parse_s3_url("s3://logs").prefix == ""
    assert parse_s3_url("s3://logs/a/b/").url == "s3://logs/a/b/"


# --- SSH: settings and targets (no connection) ----------------------------------------------------


def test_unreadable_ssh_key_fails_before_any_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "missing_key"
    code, out, err = run(capsys, "--from-hosts", environ={"DEPLOY_SSH_KEY": str(key)})
    assert code == 2
    assert f"DEPLOY_SSH_KEY='{key}': cannot read the key (No such file or directory)" in err
    assert out == ""


def test_ssh_key_that_is_not_a_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("not a key\n")
    with pytest.raises(UsageError, match=r"DEPLOY_SSH_KEY=.*not a usable private key"):
        ssh_auth_from_env({"DEPLOY_SSH_KEY": str(key)})


def test_unreadable_known_hosts_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"DEPLOY_SSH_KNOWN_HOSTS=.*cannot read it"):
        ssh_auth_from_env({"DEPLOY_SSH_KNOWN_HOSTS": str(tmp_path / "missing")})


def test_ssh_settings_from_the_environment(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = tmp_path / "id_ed25519"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    known = tmp_path / "known_hosts"
    known.write_text("")
    auth = ssh_auth_from_env({"DEPLOY_SSH_KEY": str(key), "DEPLOY_SSH_KNOWN_HOSTS": str(known)})
    assert auth.key is not None and auth.key.get_name() == "ssh-ed25519"
    assert auth.known_hosts == known
    assert ssh_auth_from_env({}) == type(auth)(key=None, known_hosts=None)  # agent, ~/.ssh


def inventory_host(name: str, group: str, **data: object) -> SimpleNamespace:
    return SimpleNamespace(
        name=name,
        groups=(group, "env_lab"),
        data={"ssh_hostname": f"10.77.0.{len(name)}", "ssh_user": "admin", **data},
    )


HOSTS = [
    inventory_host("app-1", "backends"),
    inventory_host("proxy-1", "proxies"),
    inventory_host("proxy-2", "proxies", ssh_port=2222, ssh_hostname="10.77.0.102"),
]


def test_proxy_targets_are_the_proxies_as_pyinfra_reaches_them() -> None:
    jump = JumpHost("bastion.example", 22, "admin", None)
    targets = proxy_targets(HOSTS, group="proxies", jump=jump)
    assert targets == [
        SshTarget("proxy-1", "10.77.0.7", 22, "admin", jump),
        SshTarget("proxy-2", "10.77.0.102", 2222, "admin", jump),
    ]


def test_proxy_targets_limit_selects_and_rejects_unknown_names() -> None:
    assert [t.name for t in proxy_targets(HOSTS, group="proxies", limit=["proxy-2"])] == ["proxy-2"]
    with pytest.raises(UsageError, match=r"--limit app-1: not in group 'proxies'"):
        proxy_targets(HOSTS, group="proxies", limit=["app-1"])


def fake_inventory(monkeypatch: pytest.MonkeyPatch, hosts: list[SimpleNamespace]) -> None:
    """inventories.loader.load_inventory answering `hosts` and one warning, without AWS."""
    from inventories import loader
    from inventories.hosts import Ec2Inventory, InventoryHost

    inventory = Ec2Inventory(
        hosts=tuple(InventoryHost(h.name, h.groups, h.data) for h in hosts),
        warnings=("fewer proxies than expected",),
    )
    monkeypatch.setattr(loader, "load_inventory", lambda settings, **kwargs: inventory)


def test_proxies_come_from_the_inventory_with_its_bastion(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_inventory(monkeypatch, HOSTS)
    environ = {
        "EC2_INVENTORY_REGIONS": "eu-west-1",
        "EC2_INVENTORY_BASTION": "jump@bastion.example:2222",
        "EC2_INVENTORY_BASTION_KEY": "/keys/bastion",
    }
    targets, warnings = load_proxy_targets(environ)
    assert [t.name for t in targets] == ["proxy-1", "proxy-2"]
    assert {t.jump for t in targets} == {JumpHost("bastion.example", 2222, "jump", "/keys/bastion")}
    assert warnings == ["fewer proxies than expected"]


def test_inventory_without_proxies_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_inventory(monkeypatch, HOSTS[:1])
    with pytest.raises(SourceError, match="no host in group 'proxies'"):
        load_proxy_targets({"EC2_INVENTORY_REGIONS": "eu-west-1"})


def test_limit_naming_no_proxy_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_inventory(monkeypatch, HOSTS)
    environ = {"EC2_INVENTORY_REGIONS": "eu-west-1"}
    code, out, err = run(capsys, "--from-hosts", "--limit", "proxy-9", *TARGET, environ=environ)
    assert code == 2
    assert "--limit proxy-9: not in group 'proxies'" in err
    assert out == ""


def test_remote_command_reads_the_log_with_sudo_quoted() -> None:
    assert remote_command("/var/log/nginx/proxy_access.log") == (
        "sudo -n cat -- /var/log/nginx/proxy_access.log"
    )
    assert remote_command("/var/log/a b.log") == "sudo -n cat -- '/var/log/a b.log'"


def test_log_path_defaults_to_the_deploy_setting() -> None:
    from tasks.settings import Settings

    default = next(f.default for f in fields(Settings) if f.name == "access_log")
    plan = plan_from(build_parser().parse_args(["--from-hosts", *TARGET]), {})
    assert plan.log_path == default
    assert plan.ssh_auth is not None and plan.ssh_auth.key is None


@pytest.mark.parametrize(
    ("argv", "hosts", "by_default"),
    [
        ([], True, True),
        (["--limit", "proxy-1", "--log-path", "/var/log/x.log"], True, True),
        (["--from-hosts"], True, False),
        (["--file", "x"], False, False),
        (["--s3", "s3://logs/proxy-access-logs/"], False, False),
        (["--file", "x", "--from-hosts"], True, False),
    ],
)
def test_proxies_are_the_source_without_file_or_s3(
    argv: list[str], hosts: bool, by_default: bool
) -> None:
    plan = plan_from(build_parser().parse_args([*argv, *TARGET]), {})
    assert (plan.ssh_auth is not None) is hosts
    assert plan.hosts_by_default is by_default
    assert bool(plan.log_path) is hosts


def test_no_source_reads_the_inventory_and_says_how_to_read_elsewhere(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, *TARGET, environ={"EC2_INVENTORY_NOPE": "x"})
    assert code == 4
    assert "not read: inventory: EC2_INVENTORY_NOPE is not an inventory setting" in err
    assert "give --file PATH or --s3 s3://BUCKET/PREFIX to read logs from elsewhere" in err
    assert out == ""
    _, _, asked = run(capsys, "--from-hosts", *TARGET, environ={"EC2_INVENTORY_NOPE": "x"})
    assert "elsewhere" not in asked  # asked for the proxies: no hint about other sources


def test_no_source_with_an_empty_inventory_names_the_group(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_inventory(monkeypatch, HOSTS[:1])
    code, out, err = run(capsys, *TARGET, environ={"EC2_INVENTORY_REGIONS": "eu-west-1"})
    assert code == 4
    assert "no host in group 'proxies'" in err and "--file PATH or --s3" in err
    assert "nothing could be read; no report" in err
    assert out == ""


def test_inventory_error_is_a_source_error(capsys: pytest.CaptureFixture[str]) -> None:
    # Refused by the inventory's own settings check, before any AWS call.
    code, out, err = run(capsys, "--from-hosts", *TARGET, environ={"EC2_INVENTORY_NOPE": "x"})
    assert code == 4
    assert "not read: inventory: EC2_INVENTORY_NOPE is not an inventory setting" in err
    assert out == ""


# --- SSH: the helpers of ssh_log_lines, over fake paramiko objects (no connection) ----------------


class FakeChannel:
    """What _cat_output reads: stdout lines (an exception after them if `fail`), exit, stderr."""

    def __init__(
        self,
        lines: list[bytes],
        status: int = 0,
        stderr: bytes = b"",
        fail: Exception | None = None,
    ) -> None:
        self.lines, self.status, self.stderr, self.fail = lines, status, stderr, fail

    def makefile(self, mode: str) -> Iterator[bytes]:
        yield from self.lines
        if self.fail is not None:
            raise self.fail

    def recv_exit_status(self) -> int:
        return self.status

    def makefile_stderr(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.stderr)


class RefusingClient:
    """An SSHClient whose connect fails with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def connect(self, *args: object, **kwargs: object) -> None:
        raise self.error


def test_cat_output_yields_the_lines_of_a_zero_exit() -> None:
    assert list(_cat_output(FakeChannel([b"a\n", b"b\n"]), "h:22", "/x")) == [b"a\n", b"b\n"]


def test_cat_output_nonzero_exit_names_the_command_and_its_last_error_line() -> None:
    channel = FakeChannel([b"a\n"], status=1, stderr=b"first\nsudo: a password is required\n")
    with pytest.raises(SourceError) as e:
        list(_cat_output(channel, "h:22", "/var/log/a b.log"))
    assert str(e.value) == (
        "`sudo -n cat -- '/var/log/a b.log'` on h:22 failed (exit 1): sudo: a password is required"
    )


def test_cat_output_broken_stream_says_how_many_lines_were_read() -> None:
    channel = FakeChannel([b"a\n", b"b\n"], fail=OSError("socket closed"))
    with pytest.raises(
        SourceError, match=r"^h:22: reading stopped after 2 lines \(socket closed\)$"
    ):
        list(_cat_output(channel, "h:22", "/x"))


def test_refused_login_names_the_user_and_the_key() -> None:
    import paramiko

    client = RefusingClient(paramiko.AuthenticationException("no"))
    target = SshTarget("proxy-1", "10.0.0.1", 22, "admin")
    auth = SshAuth(key=None, known_hosts=None)
    with pytest.raises(SourceError) as e:
        _login(client, target, auth, sock=None, known="kh", timeout=1)  # type: ignore[arg-type]
    assert str(e.value) == (
        "login to 10.0.0.1:22 as admin refused with the SSH agent and default keys"
    )


def test_bastion_unknown_host_key_names_both_known_hosts_files() -> None:
    import paramiko

    client = RefusingClient(paramiko.SSHException("Server 'b' not found in known_hosts"))
    jump = JumpHost("bastion.example", 2200, "ec2-user", "/keys/bastion")
    target = SshTarget("proxy-1", "10.0.0.1", 22, "admin", jump)
    auth = SshAuth(key=None, known_hosts=Path("/kh"))
    with pytest.raises(
        SourceError,
        match=r"^host key of bastion bastion\.example:2200 is not in "
        r"/kh or ~/\.ssh/known_hosts: refused",
    ):
        _bastion_channel(client, target, auth, known="/kh", timeout=1)  # type: ignore[arg-type]
