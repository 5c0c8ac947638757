"""The inventory benchmark runs end to end on a small fleet (untimed: its output is the figure)."""

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_inventory_benchmark_prints_table_and_writes_json_when_small(tmp_path: Path) -> None:
    output = tmp_path / "inventory_build.json"
    command = [sys.executable, "bench/inventory_build.py", "--instances", "12", "--repeat", "2"]
    result = subprocess.run(
        [*command, "--output", str(output)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()[:2]
    assert header.split()[:4] == ["instances", "hosts", "min", "s"]
    assert row.split()[:2] == ["12", "13"]  # 12 proxies and 1 backend
    results = json.loads(output.read_text(encoding="utf-8"))
    assert results["instances"] == 12
    assert results["hosts"] == 13
    assert len(results["seconds"]["all"]) == 2
    assert results["seconds"]["min"] <= results["seconds"]["median"]
    assert 0 <= results["fake_ec2_seconds_median"] <= results["seconds"]["median"]
