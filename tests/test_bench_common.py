"""bench/common.py: the fixed-width table every bench prints and the JSON file it writes."""

from __future__ import annotations

import json

from bench.common import RESULTS, Column, result_path, table, write_json

COLUMNS = (Column("name", 6, align="<"), Column("n", 3), Column("rate", 8, ".2%"))


def test_table_aligns_titles_like_their_values_one_space_apart():
    assert table(COLUMNS, [["a", 7, 0.5], ["bb", 12, 0.125]]) == [
        "name     n     rate",
        "a        7   50.00%",
        "bb      12   12.50%",
    ]


def test_table_aligns_strings_without_their_number_format_and_fills_short_rows():
    lines = table(COLUMNS, [["-", "-", "-"], ["sum", 19]])
    assert lines[1:] == ["-        -        -", "sum     19"]


def test_json_results_are_indented_in_a_directory_made_for_them(tmp_path):
    path = write_json(tmp_path / "new" / "x.json", {"rows": [1]})
    assert path.read_text(encoding="utf-8") == '{\n  "rows": [\n    1\n  ]\n}\n'
    assert json.loads(path.read_text()) == {"rows": [1]}
    assert result_path("overhead") == RESULTS / "overhead.json"
