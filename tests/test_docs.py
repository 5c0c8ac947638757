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
