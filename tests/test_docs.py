"""The generated docs (settings table, README sections) are current (`make docs`)."""

from __future__ import annotations

import datetime
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from tasks.settings import Settings
from tools import docs


def test_readme_and_settings_docs_are_up_to_date():
    result = subprocess.run(
        [sys.executable, "-m", "tools.docs", "--check"],
        cwd=docs.REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_included_docs_start_at_heading_level_two(tmp_path, monkeypatch):
    monkeypatch.setattr(docs, "REPO", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/x.md").write_text("# Title\n\n## Part\ntext\n")
    assert docs.included("docs/x.md", {}) == "## Title\n\n### Part\ntext\n"


def test_included_docs_keep_comments_in_code_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(docs, "REPO", tmp_path)
    (tmp_path / "docs").mkdir()
    page = "## Title\n\n```sh\n# a shell comment\nrun\n```\n\n### Part\n~~~\n# also code\n~~~\n"
    (tmp_path / "docs/x.md").write_text(page)
    assert docs.included("docs/x.md", {}) == page
    (tmp_path / "docs/y.md").write_text("```\n# code\n```\n# Title\n")
    assert docs.included("docs/y.md", {}) == "```\n# code\n```\n## Title\n"


# --- the Athena table of docs/report.md reads where the log shipper writes ------------------------


def athena_ddl() -> str:
    text = (docs.REPO / "docs/report.md").read_text()
    match = re.search(r"```sql\n(CREATE EXTERNAL TABLE.*?)```", text, re.DOTALL)
    assert match, "docs/report.md has no CREATE EXTERNAL TABLE block"
    return match.group(1)


def shipped_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str, when: int) -> str:
    """The key programs/ship-logs.py gives a rotated file last written at `when`."""
    spec = importlib.util.spec_from_file_location("ship_logs", docs.REPO / "programs/ship-logs.py")
    assert spec and spec.loader
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    rotated = tmp_path / "proxy_access.log.1"
    rotated.write_text("{}\n")
    os.utime(rotated, (when, when))
    monkeypatch.setenv("SHIP_PREFIX", prefix)
    monkeypatch.setenv("SHIP_INSTANCE_ID", "i-0123456789abcdef0")
    monkeypatch.setenv("SHIP_LOG_FILE", str(tmp_path / "proxy_access.log"))
    return ship.object_key(str(rotated), "0" * 64)


def test_athena_table_location_is_the_default_log_prefix():
    prefix = next(f.default for f in fields(Settings) if f.name == "log_prefix")
    location = re.search(r"^LOCATION '([^']*)'", athena_ddl(), re.MULTILINE)
    assert location and location.group(1) == f"s3://BUCKET/{prefix}/"


def test_athena_partitions_project_the_shippers_keys_exactly(tmp_path, monkeypatch):
    ddl = athena_ddl()
    prefix = next(f.default for f in fields(Settings) if f.name == "log_prefix")
    props = dict(re.findall(r"^\s*'([\w.]+)'\s*=\s*'([^']*)'", ddl, re.MULTILINE))
    partitioned = re.search(r"PARTITIONED BY \((.*?)\n\)", ddl, re.DOTALL)
    assert partitioned and props["projection.enabled"] == "true"
    columns = re.findall(r"^\s*(\w+)\s+\w+", partitioned.group(1), re.MULTILINE)
    # 2026-03-07 23:59:59 UTC: one-digit month and day, the last second of the UTC day.
    when = int(datetime.datetime(2026, 3, 7, 23, 59, 59, tzinfo=datetime.UTC).timestamp())
    key = shipped_key(tmp_path, monkeypatch, prefix, when)
    values = {"instance_id": "i-0123456789abcdef0", "year": 2026, "month": 3, "day": 7}
    assert columns == list(values)

    folder = props["storage.location.template"]
    for column, value in values.items():
        assert f"projection.{column}.type" in props, column
        if isinstance(value, int):
            low, high = map(int, props[f"projection.{column}.range"].split(","))
            assert low <= value <= high, column
            value = str(value).zfill(int(props.get(f"projection.{column}.digits", "1")))
        folder = folder.replace("${" + column + "}", value)

    url = f"s3://BUCKET/{key}"
    assert folder.endswith("/") and url.startswith(folder), (folder, url)
    assert "/" not in url[len(folder) :]  # the object sits in the partition's folder itself


# --- the README is the front door: it links every page of docs/, and the links lead somewhere ---


def anchors(page: Path) -> set[str]:
    return {
        docs.anchor(m.group(1))
        for line, prose in docs.prose_lines(page.read_text())
        if prose and (m := re.match(r"^#+ (.*)$", line))
    }


def test_relative_links_lead_to_a_file_and_heading_that_exist():
    broken = []
    for page in [docs.README, *docs.docs_pages()]:
        for line, prose in docs.prose_lines(page.read_text()):
            for target in re.findall(r"\]\(([^)\s]+)\)", line) if prose else ():
                if re.match(r"\w+:", target):  # https:, mailto:
                    continue
                path, _, fragment = target.partition("#")
                linked = (page.parent / path).resolve() if path else page
                if not linked.exists() or (fragment and fragment not in anchors(linked)):
                    broken.append(f"{page.relative_to(docs.REPO)}: {target}")
    assert broken == []


def test_readme_links_every_docs_page():
    readme = docs.README.read_text()
    for page in docs.docs_pages():
        assert f"](docs/{page.name})" in readme, page.name


def test_docs_index_lists_each_page_with_its_sections(tmp_path, monkeypatch):
    monkeypatch.setattr(docs, "REPO", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/b.md").write_text("# Page `b`\n\n```sh\n# not a heading\n```\n## One, two\n")
    (tmp_path / "docs/a.md").write_text("## Page a\n\n### Part\n#### Detail\n")
    (tmp_path / "docs/NOTES.md").write_text("# Notes\n")
    assert docs.docs_index() == (
        "- **[Page a](docs/a.md)**: [Part](docs/a.md#part)\n"
        "- **[Page b](docs/b.md)**: [One, two](docs/b.md#one-two)\n"
        "- **[Notes](docs/NOTES.md)**\n"
    )


@pytest.mark.parametrize(
    ("name", "body", "cell"),
    [
        ("vpc_id", {}, "**required**"),
        ("admin_cidrs", {}, "**required** (from group data)"),
        ("allowed_http_cidrs", {"default": []}, "`[]` (from group data)"),
        ("ssh_key_name", {"default": None}, "`null`"),
        ("lb_internal", {"default": False}, "`false`"),
        ("gitlab_project_path", {"default": ""}, '`""`'),
        ("region", {"default": "eu-west-1"}, "`eu-west-1`"),
        ("extra_tags", {"default": {"a": {"n": 2}}}, '`{"a": {"n": 2}}`'),
    ],
)
def test_terraform_defaults_are_written_as_terraform_takes_them(name, body, cell):
    assert docs._tf_default(name, body) == cell


def test_terraform_object_types_are_shortened():
    assert docs._tf_type("${map(object({n = number, o = object({a = string})}))}") == "map(object)"
    assert docs._tf_type("${list(string)}") == "list(string)" and docs._tf_type("bool") == "bool"
