"""The inventory benchmark runs end to end on a small fleet (untimed: its output is the figure)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.inventory_build import PHASES

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_inventory_benchmark_prints_table_and_writes_json_when_small(tmp_path: Path) -> None:
    output = tmp_path / "inventory_build.json"
    recording = tmp_path / "recording.json"
    command = [sys.executable, "-m", "bench.inventory_build", "--instances", "12", "--repeat", "2"]
    result = subprocess.run(
        [*command, "--output", str(output), "--save-recording", str(recording)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["fake", "EC2", "instances", "hosts", "runs"]
    # One row per fake: 12 proxies and 1 backend, all hosts; runs as asked.
    assert [line.split()[:4] for line in lines[1:4]] == [
        ["recorded", "12", "13", "2"],
        ["moto", "12", "13", "1"],
        ["cache", "12", "13", "2"],
    ]
    breakdown_at = lines.index("CPU breakdown, recorded (median of each step):")
    assert [line[:20].strip() for line in lines[breakdown_at + 1 : -1]] == list(PHASES)

    results = json.loads(output.read_text(encoding="utf-8"))
    assert (results["instances"], results["backends"], results["hosts"]) == (12, 1, 13)
    for section, runs in (("recorded", 2), ("moto", 1), ("cache_hit", 2)):
        for figure in ("wall_seconds", "cpu_seconds"):
            values = results[section][figure]
            assert len(values["all"]) == runs
            assert 0 < values["min"] <= values["median"]
    moto = results["moto"]
    assert 0 < moto["moto_seconds"]["median"] <= moto["wall_seconds"]["median"]
    # The pages the inventory asked for: proxies and backends, one page each at MaxResults=1000.
    pages = [
        (page["max_results"], page["next_token_sent"], page["instances"])
        for page in results["recorded"]["pages"]
    ]
    assert pages == [(1000, False, 12), (1000, False, 1)]
    breakdown = results["cpu_breakdown_seconds"]
    assert list(breakdown) == list(PHASES)
    # The steps add up to the end-to-end CPU figure ("exit and the rest" is the difference).
    total = results["recorded"]["cpu_seconds"]["median"]
    assert sum(breakdown.values()) == pytest.approx(total)
    assert json.loads(recording.read_text(encoding="utf-8"))["responses"]
