"""The generated docs (settings table, README sections) are current (`make docs`)."""

from __future__ import annotations

import subprocess
import sys

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
