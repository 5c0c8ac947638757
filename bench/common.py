"""What every benchmark shares: its fixed-width table and its JSON results file.

Owns: the table layout (columns of a width and a format, one space apart, titles aligned like
their values) and bench/results/NAME.json (indented JSON, parent directories made). Leaves
alone: what each bench measures and which figures its table shows (bench/NAME.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True)
class Column:
    """One column of a table: its title, width, alignment and the format of its numbers."""

    title: str
    width: int
    spec: str = ""  # format spec after the width, e.g. ".2f", ".3%"
    align: str = ">"

    def cell(self, value: Any) -> str:
        """VALUE in this column; a string (already formatted, or "-") only aligned."""
        spec = "" if isinstance(value, str) else self.spec
        return format(value, f"{self.align}{self.width}{spec}")


def table(columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> list[str]:
    """The title line, then one line per row. A row shorter than the columns fills the first
    ones only (a summary line under the table)."""
    lines = [" ".join(format(c.title, f"{c.align}{c.width}") for c in columns)]
    for row in rows:
        lines.append(" ".join(c.cell(v) for c, v in zip(columns, row, strict=False)))
    return lines


def result_path(name: str) -> Path:
    """Where a bench writes its results by default: bench/results/NAME.json."""
    return RESULTS / f"{name}.json"


def write_json(path: Path | str, data: Any) -> Path:
    """DATA as indented JSON in PATH (its directory made if missing); returns PATH."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
