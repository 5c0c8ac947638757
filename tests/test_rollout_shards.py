"""Unit tests of tools/rollout/'s shards (issue 11): which proxies a shard takes (stable, every
host in exactly one shard, roughly balanced), the settings (--shard, GitLab's CI_NODE_INDEX /
CI_NODE_TOTAL, their errors), and what fleet, verify, drift, repair and join-drift do in a shard,
with the fake deploy, gate and dry run of tests/rollout_fakes.py."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from itertools import count

import pytest
from rollout_fakes import HOSTS, Recorder, drifted_on, run_main, settings

from tools.rollout.cli import main
from tools.rollout.commands import Actions
from tools.rollout.drift import DryRun, drift_json, dry_run_from_json
from tools.rollout.errors import (
    EXIT_DRIFT,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    RolloutError,
)
from tools.rollout.hosts import Host, describe_shard, parse_inventory_json, shard_hosts, shard_of
from tools.rollout.pyinfra_cmd import deploy_command, dry_run_command
from tools.rollout.settings import Settings, Shard

INSTANCE_IDS = [f"i-{n:017x}" for n in range(1000)]
_SERIAL = count()


def instance_in_shard(index: int, total: int) -> str:
    """A made-up instance id that hashes into shard index/total (each call a new one)."""
    while True:
        candidate = f"i-0{next(_SERIAL):016x}"
        if shard_of(candidate, total) == index:
            return candidate


def fleet(layout: dict[str, int], total: int) -> list[Host]:
    """Hosts named as in `layout` (name -> the shard it must be in), in that order."""
    return [
        Host(name, f"10.0.1.{n}", instance_in_shard(shard, total))
        for n, (name, shard) in enumerate(layout.items(), 1)
    ]


# Shard 1: the canary and p-2; shard 2: p-3, p-4, p-5; shard 3: p-6.
SIX = fleet({"p-1": 1, "p-2": 1, "p-3": 2, "p-4": 2, "p-5": 2, "p-6": 3}, 3)


def ran_in(shard: str, argv: list[str], rec=None, **kw):
    return run_main([*argv, "--shard", shard], rec=rec or Recorder(), hosts=SIX, **kw)


# --- Which hosts a shard takes --------------------------------------------------------------------


def test_shard_of_is_the_same_in_every_process():
    # Python's hash() of a str changes with PYTHONHASHSEED; the shard must not
    code = "from tools.rollout.hosts import shard_of; print(shard_of('i-0abc123def4567890', 7))"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("0", "1", "12345")
    }
    assert runs == {str(shard_of("i-0abc123def4567890", 7))}


def test_shard_of_is_pinned_so_a_change_of_the_hash_is_noticed():
    # sha256 of the id, its first 8 bytes big-endian, mod N, plus 1: another function would move
    # hosts between shards (harmless, but it should be a decision, not an accident)
    ids = ["i-0123456789abcdef0", "i-0fedcba9876543210", "i-00000000000000001"]
    assert [shard_of(i, 4) for i in ids] == [2, 1, 1]
    digest = int.from_bytes(hashlib.sha256(b"i-0abc").digest()[:8], "big")
    assert shard_of("i-0abc", 5) == digest % 5 + 1


@pytest.mark.parametrize("total", [1, 2, 3, 7, 20])
def test_every_host_is_in_exactly_one_shard(total):
    hosts = [Host(f"proxy-{n}", "10.0.0.1", i) for n, i in enumerate(INSTANCE_IDS[:200])]
    shards = [shard_hosts(hosts, Shard(i, total)) for i in range(1, total + 1)]
    placed = Counter(h.name for shard in shards for h in shard)
    assert placed == Counter(h.name for h in hosts)  # each once, none left out


def test_host_stays_in_its_shard_when_other_hosts_come_and_go():
    hosts = [Host(f"proxy-{n}", "10.0.0.1", i) for n, i in enumerate(INSTANCE_IDS[:100])]
    before = {h.name: s for s in range(1, 5) for h in shard_hosts(hosts, Shard(s, 4))}
    changed = hosts[10:60] + [Host(f"new-{n}", "10.0.0.2", f"i-new{n}") for n in range(40)]
    after = {h.name: s for s in range(1, 5) for h in shard_hosts(changed, Shard(s, 4))}
    assert all(after[name] == before[name] for name in after if name in before)


def test_shards_are_roughly_balanced():
    hosts = [Host(f"proxy-{n}", "10.0.0.1", i) for n, i in enumerate(INSTANCE_IDS)]
    sizes = [len(shard_hosts(hosts, Shard(i, 4))) for i in range(1, 5)]
    assert sum(sizes) == 1000
    assert all(200 <= size <= 300 for size in sizes), sizes  # 250 each, give or take 20%


def test_shard_key_is_the_instance_id_so_a_renamed_host_keeps_its_shard():
    instance = instance_in_shard(2, 3)
    for name in ("proxy-a-1", "proxy-z-9", "renamed"):
        assert shard_hosts([Host(name, "10.0.0.1", instance)], Shard(2, 3))


def test_host_without_instance_id_is_placed_by_name_and_listed():
    hosts = [Host(f"proxy-{n}", "10.0.0.1") for n in range(30)]
    mine = shard_hosts(hosts, Shard(1, 2))
    assert mine == [h for h in hosts if shard_of(h.name, 2) == 1]
    lines = describe_shard(Shard(1, 2), hosts, mine)
    assert lines[0].startswith(f"shard 1/2: {len(mine)} of 30 proxies (by sha256 of the EC2")
    assert lines[1] == (
        "  placed by host name, the inventory gave them no ec2_instance_id: "
        + ", ".join(h.name for h in mine)
    )


def test_parse_inventory_json_reads_the_instance_id():
    text = json.dumps(
        [
            {
                "name": "proxy-1",
                "ssh_hostname": "10.0.0.101",
                "groups": ["proxies"],
                "data": {"ec2_instance_id": "i-0123"},
            },
            {"name": "proxy-2", "ssh_hostname": "10.0.0.102", "groups": ["proxies"], "data": {}},
        ]
    )
    hosts = parse_inventory_json(text)
    assert [(h.instance_id, h.shard_key) for h in hosts] == [
        ("i-0123", "i-0123"),
        (None, "proxy-2"),
    ]


# --- Settings -------------------------------------------------------------------------------------


def test_shard_from_the_command_line():
    s = settings(["--shard", "2/3"])
    assert s.shard == Shard(2, 3)


def test_shard_from_gitlab_node_index_and_total():
    s = settings([], {"CI_NODE_INDEX": "3", "CI_NODE_TOTAL": "4"})
    assert s.shard == Shard(3, 4)
    assert s.shard.source == "CI_NODE_INDEX/CI_NODE_TOTAL"


def test_command_line_shard_beats_gitlab_variables():
    assert settings(["--shard", "1/2"], {"CI_NODE_INDEX": "3", "CI_NODE_TOTAL": "4"}).shard == (
        Shard(1, 2)
    )


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        ([], {}),
        ([], {"CI_NODE_TOTAL": "1"}),  # what GitLab sets on every job without `parallel:`
        ([], {"CI_NODE_INDEX": "", "CI_NODE_TOTAL": ""}),
        ([], {"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "1"}),  # `parallel: 1`
        (["--shard", "1/1"], {}),
    ],
)
def test_no_shard_or_one_of_one_is_the_whole_fleet(argv, env):
    assert settings(argv, env).shard is None


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--shard", "0/2"], {}, "--shard='0/2': there is no shard 0 of 2"),
        (["--shard", "3/2"], {}, "--shard='3/2': there is no shard 3 of 2"),
        (["--shard", "1/0"], {}, "--shard='1/0': there is no shard 1 of 0"),
        (["--shard", "2"], {}, "--shard='2': expected I/N"),
        (["--shard", "a/b"], {}, "--shard='a/b': expected I/N"),
        (["--shard=-1/2"], {}, "--shard='-1/2': expected I/N"),
        (["--shard", "1/2/3"], {}, "--shard='1/2/3': expected I/N"),
        (["--shard", ""], {}, "--shard='': expected I/N"),
        (
            [],
            {"CI_NODE_INDEX": "5", "CI_NODE_TOTAL": "4"},
            "CI_NODE_INDEX/CI_NODE_TOTAL='5/4': there is no shard 5 of 4",
        ),
        ([], {"CI_NODE_INDEX": "2"}, "CI_NODE_INDEX/CI_NODE_TOTAL='2/': expected I/N"),
        ([], {"CI_NODE_TOTAL": "3"}, "CI_NODE_TOTAL='3' without CI_NODE_INDEX"),
    ],
)
def test_bad_shard_is_a_usage_error_naming_the_setting(argv, env, message):
    with pytest.raises(RolloutError) as e:
        settings(argv, env)
    assert e.value.exit_code == EXIT_USAGE
    assert str(e.value).startswith(message)
    if "expected" in message or "no shard" in message:  # and what is allowed
        assert "with N of 1 or more and I from 1 to N, e.g. 2/4" in str(e.value)


def test_report_name_carries_the_shard():
    s = settings(["drift", "--report", "out/drift-report.txt", "--shard", "2/3"])
    assert str(s.report) == "out/drift-report-shard-2-of-3.txt"
    assert str(settings(["drift", "--report", "drift-report.txt"]).report) == "drift-report.txt"


@pytest.mark.parametrize("mode", ["deploy", "canary", "join-drift"])
def test_modes_without_shards_refuse_one_before_touching_anything(mode, capsys):
    def no_inventory(_settings):
        raise AssertionError("the inventory was read")

    args = [mode, "--shard", "2/3"]
    code = main(args, environ={}, actions=Actions(load_hosts=no_inventory))
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"--shard='2/3': `{mode}` does not take a shard" in err
    assert "shards are for fleet, verify, drift, repair" in err


def test_deploy_refuses_a_shard_from_gitlab_variables_too(capsys):
    code, rec = run_main(["deploy"], env={"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "2"})
    assert code == EXIT_USAGE
    assert rec.deployed == []
    assert "CI_NODE_INDEX/CI_NODE_TOTAL='1/2': `deploy` does not take a shard" in (
        capsys.readouterr().err
    )


# --- fleet in shards ------------------------------------------------------------------------------


def test_fleet_shards_together_deploy_every_proxy_but_the_canary_once():
    deployed = []
    for shard in ("1/3", "2/3", "3/3"):
        code, rec = ran_in(shard, ["fleet"])
        assert code == EXIT_OK
        assert rec.gated[0] == "p-1"  # every shard checks the canary first
        deployed += rec.deployed
    assert sorted(deployed) == ["p-2", "p-3", "p-4", "p-5", "p-6"]


def test_fleet_shard_with_the_canary_leaves_it_out_and_batches_the_rest():
    code, rec = ran_in("1/3", ["fleet"])
    assert code == EXIT_OK
    assert rec.batches == [["p-2"]]


def test_fleet_shard_batches_are_percentages_of_the_shard():
    # 3 hosts: 1 (the shard's first host), then 34% of 3 = 1, then the rest
    code, rec = ran_in("2/3", ["fleet", "--batches", "1,34%,100%"])
    assert code == EXIT_OK
    assert rec.batches == [["p-3"], ["p-4"], ["p-5"]]
    code, rec = ran_in("2/3", ["fleet", "--batch-size", "2"])
    assert rec.batches == [["p-3"], ["p-4", "p-5"]]


def test_fleet_shard_says_which_proxies_it_took_and_whose_canary(capsys):
    ran_in("2/3", ["fleet"])
    out = capsys.readouterr().out
    assert "shard 2/3: 3 of 6 proxies (by sha256 of the EC2 instance id, mod 3): p-3, p-4, p-5" in (
        out
    )
    assert "fleet: 3 proxies, canary p-1 (another shard's)" in out


def test_failing_shard_stops_its_own_later_batches_only(capsys):
    code, rec = ran_in("2/3", ["fleet"], rec=Recorder(unhealthy={"p-3"}))
    assert code == EXIT_FAILED
    assert rec.deployed == ["p-3"]  # p-4 and p-5 untouched
    assert "untouched: p-4, p-5" in capsys.readouterr().err
    code, rec = ran_in("3/3", ["fleet"], rec=Recorder(unhealthy={"p-3"}))
    assert code == EXIT_OK  # another shard (another GitLab job) goes on
    assert rec.deployed == ["p-6"]


def test_every_shard_refuses_to_start_when_the_canary_is_unhealthy(capsys):
    for shard in ("1/3", "2/3", "3/3"):
        code, rec = ran_in(shard, ["fleet"], rec=Recorder(unhealthy={"p-1"}))
        assert code == EXIT_FAILED
        assert rec.deployed == []
    assert "ROLLOUT ABORTED at p-1: the canary is not healthy" in capsys.readouterr().err


def test_shards_agree_on_a_named_canary():
    for shard in ("1/3", "2/3", "3/3"):
        code, rec = ran_in(shard, ["fleet", "--canary", "p-4"])
        assert code == EXIT_OK
        assert "p-4" not in rec.deployed
        assert rec.gated[0] == "p-4"


def test_empty_shard_succeeds_and_says_so(capsys):
    hosts = fleet({"p-1": 1, "p-2": 1}, 2)
    code, rec = run_main(["fleet", "--shard", "2/2"], hosts=hosts)
    assert code == EXIT_OK
    assert rec.deployed == [] and rec.gated == []
    assert "shard 2/2: no hosts (the inventory's 2 proxies are all in other shards)" in (
        capsys.readouterr().out
    )


def test_empty_inventory_is_still_an_error_in_a_shard():
    code, _ = run_main(["fleet", "--shard", "2/2"], hosts=[])
    assert code == EXIT_ERROR


def test_fleet_shard_dry_run_plans_its_own_hosts_only(capsys):
    code, rec = ran_in("2/3", ["fleet", "--dry"])
    assert code == EXIT_OK
    assert rec.deployed == [] and rec.gated == []
    out = capsys.readouterr().out
    assert "--limit p-3" in out and "--limit p-2" not in out and "--limit p-6" not in out


def test_verify_shard_checks_its_own_hosts():
    code, rec = ran_in("2/3", ["verify"])
    assert code == EXIT_OK
    assert rec.gated == ["p-3", "p-4", "p-5"]


def test_pyinfra_is_never_run_without_a_limit():
    s = Settings()
    for command in (deploy_command, dry_run_command):
        with pytest.raises(RolloutError, match="without --limit"):
            command(s, [])


# --- drift, repair and join-drift in shards -------------------------------------------------------


def recording(fake):
    calls = []

    def dry(settings, hosts, limits):
        calls.append(list(limits))
        return fake(settings, hosts, limits)

    return dry, calls


def test_drift_shard_checks_its_hosts_by_name_and_writes_its_own_report(tmp_path):
    dry, calls = recording(drifted_on("p-4"))
    report = tmp_path / "drift-report.txt"
    code, _ = ran_in("2/3", ["drift", "--report", str(report)], dry=dry)
    assert code == EXIT_DRIFT
    assert calls == [["p-3", "p-4", "p-5"]]  # never --limit proxies: that is every host
    assert not report.exists()
    text = (tmp_path / "drift-report-shard-2-of-3.txt").read_text()
    assert "Shard: 2/3 of the proxies" in text
    assert "RESULT: DRIFTED - 1 of 3 hosts" in text
    doc = json.loads((tmp_path / "drift-report-shard-2-of-3.json").read_text())
    assert doc["shard"] == {"index": 2, "total": 3}
    assert list(doc["drifted"]) == ["p-4"]


def test_drift_without_shard_still_limits_to_the_group(tmp_path):
    dry, calls = recording(drifted_on())
    code, _ = run_main(["drift", "--report", str(tmp_path / "r.txt")], dry=dry, hosts=SIX)
    assert code == EXIT_OK
    assert calls == [["proxies"]]
    assert json.loads((tmp_path / "r.json").read_text())["shard"] is None


def test_empty_drift_shard_writes_a_report_without_a_dry_run(tmp_path):
    dry, calls = recording(drifted_on())
    hosts = fleet({"p-1": 1}, 2)
    code, _ = run_main(
        ["drift", "--report", str(tmp_path / "drift-report.txt"), "--shard", "2/2"],
        dry=dry,
        hosts=hosts,
    )
    assert code == EXIT_OK
    assert calls == []
    assert "Shard 2/2: no hosts." in (tmp_path / "drift-report-shard-2-of-2.txt").read_text()
    doc = json.loads((tmp_path / "drift-report-shard-2-of-2.json").read_text())
    assert (doc["status"], doc["hosts"], doc["shard"]) == ("clean", [], {"index": 2, "total": 2})


def test_repair_shard_repairs_its_own_drifted_hosts():
    calls = []

    def fake(settings, hosts, limits):
        calls.append(list(limits))
        drifted = ("p-4", "p-5") if len(calls) == 1 else ()
        return drifted_on(*drifted)(settings, hosts, limits)

    code, rec = ran_in("2/3", ["repair"], dry=fake)
    assert code == EXIT_OK
    assert calls == [["p-3", "p-4", "p-5"], ["p-4", "p-5"]]
    assert rec.batches == [["p-4"], ["p-5"]]


def write_shard_reports(tmp_path, shards, drifted=("p-4",)):
    """Run `drift` in each of `shards` ("2/3", ...), its report in tmp_path."""
    for shard in shards:
        report = str(tmp_path / "drift-report.txt")
        code, _ = ran_in(shard, ["drift", "--report", report], dry=drifted_on(*drifted))
        assert code in (EXIT_OK, EXIT_DRIFT)


def join(tmp_path):
    return main(["join-drift", "--report", str(tmp_path / "drift-report.txt")], environ={})


def test_join_drift_makes_one_report_of_every_shard(tmp_path, capsys):
    write_shard_reports(tmp_path, ["1/3", "2/3", "3/3"])
    assert join(tmp_path) == EXIT_OK
    text = (tmp_path / "drift-report.txt").read_text()
    assert text.startswith("Drift report of the whole fleet (3 of 3 shards) (")
    assert "Joined from: drift-report-shard-1-of-3.json, drift-report-shard-2-of-3.json, " in text
    assert "Hosts: 6 (p-1, p-2, p-3, p-4, p-5, p-6)" in text
    assert "RESULT: DRIFTED - 1 of 6 hosts" in text
    assert "p-4: 1 difference(s)\n  file /etc/nginx/nginx.conf: differs\n" in text
    assert "In step: p-1, p-2, p-3, p-5, p-6" in text
    doc = json.loads((tmp_path / "drift-report.json").read_text())
    assert doc["status"] == "drifted"
    assert doc["shards"] == {"total": 3, "missing": []}
    assert doc["drifted"]["p-4"][0]["kind"] == "file"


def test_join_drift_missing_shard_is_exit_4_and_named(tmp_path):
    write_shard_reports(tmp_path, ["1/3", "3/3"])
    assert join(tmp_path) == EXIT_ERROR
    text = (tmp_path / "drift-report.txt").read_text()
    assert "shard 2/3 wrote no report" in text
    assert json.loads((tmp_path / "drift-report.json").read_text())["shards"]["missing"] == [2]


def test_join_drift_refuses_reports_of_different_shard_counts(tmp_path, capsys):
    write_shard_reports(tmp_path, ["1/3"])
    (tmp_path / "drift-report-shard-1-of-2.json").write_text(
        json.dumps(drift_json(DryRun(hosts=[]), Shard(1, 2)))
    )
    assert join(tmp_path) == EXIT_ERROR
    assert "different shard counts (1/2, 1/3)" in capsys.readouterr().err


def test_join_drift_unsharded_report_is_already_the_whole_fleet(tmp_path, capsys):
    code, _ = run_main(
        ["drift", "--report", str(tmp_path / "drift-report.txt")], dry=drifted_on(), hosts=SIX
    )
    assert code == EXIT_OK
    before = (tmp_path / "drift-report.txt").read_text()
    assert join(tmp_path) == EXIT_OK
    assert (tmp_path / "drift-report.txt").read_text() == before
    assert "the drift check ran unsharded" in capsys.readouterr().out


def test_join_drift_without_any_report_is_exit_4(tmp_path, capsys):
    assert join(tmp_path) == EXIT_ERROR
    assert "no drift report to join" in capsys.readouterr().err


def test_join_drift_unreadable_report_names_the_file(tmp_path, capsys):
    (tmp_path / "drift-report-shard-1-of-2.json").write_text('{"hosts": "p-1"}')
    assert join(tmp_path) == EXIT_ERROR
    assert 'drift-report-shard-1-of-2.json: not a readable drift report ("hosts" is not' in (
        capsys.readouterr().err
    )


def test_drift_json_reads_back_as_it_was_written():
    dry = drifted_on("proxy-a-2")(None, HOSTS, ["proxies"])
    again, shard = dry_run_from_json(json.loads(json.dumps(drift_json(dry, Shard(2, 5)))))
    assert shard == Shard(2, 5)
    assert (again.hosts, again.drift, again.not_checked, again.error) == (
        dry.hosts,
        dry.drift,
        dry.not_checked,
        dry.error,
    )
