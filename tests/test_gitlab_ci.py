""".gitlab-ci.yml: valid against GitLab's schema (check-jsonschema's bundled copy, offline), and
shaped as the issue asks: stage order, a manual canary, serialised and environment-bound deploy
jobs, AWS through OIDC id_tokens only, nothing secret in the file, jobs that call plain
repository commands, and the fleet's jobs split into shards (`parallel:`)."""

from __future__ import annotations

import copy
import fnmatch
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CI_FILE = REPO / ".gitlab-ci.yml"
KEYWORDS = {"workflow", "stages", "variables", "default", "include", "image", "services", "cache"}
DEPLOY_JOBS = ("deploy:canary", "deploy:fleet", "drift:repair")
FLEET_JOBS = (*DEPLOY_JOBS, "verify", "drift:detect")
SHARDED_JOBS = ("deploy:fleet", "drift:detect", "drift:repair")
SHARD_ARG = 'SHARD="${CI_NODE_INDEX:-1}/${CI_NODE_TOTAL:-1}"'
# make targets the jobs call; the Makefile must provide each one
MAKE_TARGETS = {
    "checkov",
    "check",
    "venv",
    "canary",
    "fleet",
    "verify",
    "drift",
    "drift-repair",
    "drift-join",
    "shift",
}


def _merge(base: dict, override: dict) -> dict:
    """GitLab's `extends`: hashes merge deeply, everything else (lists too) is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve(doc: dict, name: str) -> dict:
    job = doc[name]
    parents = job.get("extends", [])
    parents = [parents] if isinstance(parents, str) else parents
    merged: dict = {}
    for parent in parents:
        merged = _merge(merged, _resolve(doc, parent))
    merged = _merge(merged, {k: v for k, v in job.items() if k != "extends"})
    return merged


@pytest.fixture(scope="module")
def doc() -> dict:
    return yaml.safe_load(CI_FILE.read_text())


@pytest.fixture(scope="module")
def jobs(doc) -> dict[str, dict]:
    return {
        name: _resolve(doc, name)
        for name in doc
        if name not in KEYWORDS and not name.startswith(".")
    }


def _scripts(job: dict) -> list[str]:
    return [*job.get("before_script", []), *job.get("script", [])]


def test_pipeline_passes_gitlab_schema_offline():
    # the bundled schema, no download: any attempt to reach the network goes to a dead proxy
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "all_proxy")}
    env.update({"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"})
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.gitlab-ci"]
    proc = subprocess.run(
        [*cmd, str(CI_FILE)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_rejects_a_broken_pipeline(tmp_path):
    bad = tmp_path / ".gitlab-ci.yml"
    bad.write_text("stages: [a]\njob:\n  stage: a\n  script: [echo]\n  when: sometimes\n")
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.gitlab-ci"]
    proc = subprocess.run([*cmd, str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "sometimes" in proc.stdout


def test_stages_in_order(doc):
    assert doc["stages"] == ["lint", "test", "plan", "apply", "deploy", "verify", "drift"]


def test_every_job_uses_a_declared_stage(doc, jobs):
    for name, job in jobs.items():
        assert job.get("stage") in doc["stages"], name


def test_plan_is_an_artifact_applied_by_a_manual_job_on_the_default_branch(jobs):
    plan = jobs["terraform:plan"]
    assert "terraform/plan.cache" in plan["artifacts"]["paths"]
    apply = jobs["terraform:apply"]
    assert apply["needs"] == ["terraform:plan"]
    assert "apply" in apply["script"][0]
    run_rules = [r for r in apply["rules"] if r.get("when") != "never"]
    assert run_rules == [
        {
            "if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH",
            "when": "manual",
            "allow_failure": True,
        }
    ]


def test_canary_is_manual_and_blocks_the_fleet(jobs):
    canary = jobs["deploy:canary"]
    run_rules = [r for r in canary["rules"] if r.get("when") != "never"]
    assert run_rules and all(r["when"] == "manual" for r in run_rules)
    assert all(r.get("allow_failure") is False for r in run_rules)
    assert any("make canary HOST=" in line for line in canary["script"])
    fleet = jobs["deploy:fleet"]
    assert fleet["needs"] == ["deploy:canary"]
    assert any("make fleet" in line for line in fleet["script"])
    # it follows the canary on its own, unless CANARY_ONLY=true asks for one host only
    waits = [r for r in fleet["rules"] if r.get("when") == "manual"]
    assert len(waits) == 1 and '$CANARY_ONLY == "true"' in waits[0]["if"]
    assert fleet["rules"][-1] == {"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}
    assert jobs["verify"]["needs"] == ["deploy:fleet"]


@pytest.mark.parametrize("name", FLEET_JOBS)
def test_jobs_that_touch_proxies_are_serialised_per_environment(jobs, name):
    job = jobs[name]
    # one job at a time per shard; the unsharded jobs share shard 1's group, so with parallel: 1
    # every job that touches the proxies of an environment is in the one group
    shard = "$CI_NODE_INDEX" if name in SHARDED_JOBS else "1"
    assert job["resource_group"] == f"deploy-$ENVIRONMENT-shard-{shard}"
    assert job["environment"]["name"] == "$ENVIRONMENT"
    assert job["interruptible"] is False


def test_sharded_jobs_share_one_shard_count_from_one_place(doc, jobs):
    # GitLab reads `parallel:` as a literal number, never a variable: one template holds it, and
    # the same N everywhere keeps shard k of every job on the same proxies (its resource group)
    assert isinstance(doc[".shards"]["parallel"], int)
    assert 1 <= doc[".shards"]["parallel"] <= 200
    for name in SHARDED_JOBS:
        assert ".shards" in doc[name]["extends"], name
        assert "parallel" not in doc[name], f"{name}: set the shard count in .shards only"
        assert jobs[name]["parallel"] == doc[".shards"]["parallel"]


@pytest.mark.parametrize("name", SHARDED_JOBS)
def test_sharded_jobs_pass_their_shard_to_make(jobs, name):
    assert any(line.endswith(f" {SHARD_ARG}") for line in jobs[name]["script"]), name


@pytest.mark.parametrize(
    ("env", "shard"),
    [({"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "3"}, "2/3"), ({}, "1/1")],
)
def test_shard_argument_expands_to_gitlab_node_index_or_the_whole_fleet(env, shard):
    # GitLab's shell expands it; without `parallel:` (no CI_NODE_INDEX) it is 1/1, every proxy
    value = SHARD_ARG.removeprefix("SHARD=")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CI_NODE_")}
    out = subprocess.run(
        ["sh", "-c", f"printf %s {value}"], env=clean | env, capture_output=True, text=True
    )
    assert out.stdout == shard


def test_canary_and_verify_are_single_jobs_before_and_after_the_shards(jobs):
    for name in ("deploy:canary", "verify"):
        assert "parallel" not in jobs[name], name
        assert not any("SHARD=" in line for line in jobs[name]["script"]), name
    assert jobs["deploy:fleet"]["needs"] == ["deploy:canary"]
    assert jobs["verify"]["needs"] == ["deploy:fleet"]  # every shard of it


def test_makefile_passes_shard_to_every_rollout_target():
    # -n prints the commands without running them
    proc = subprocess.run(
        ["make", "-n", "fleet", "verify", "drift", "drift-repair", "SHARD=2/3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rollouts = [line for line in proc.stdout.splitlines() if "-m tools.rollout" in line]
    assert len(rollouts) == 4, proc.stdout
    assert all("--shard 2/3" in line for line in rollouts), rollouts


@pytest.mark.parametrize("name", ["drift:detect", "drift:repair"])
def test_shard_reports_are_kept_under_their_own_names(jobs, name):
    paths = jobs[name]["artifacts"]["paths"]
    for report in ("drift-report", "drift-report-shard-2-of-3"):  # parallel: 1, and a shard
        for suffix in (".txt", ".json"):
            assert any(fnmatch.fnmatch(report + suffix, p) for p in paths), (report, paths)


def test_expose_as_only_with_plain_paths(jobs):
    # GitLab refuses "'*' when used with 'expose_as'" (the offline schema does not know it)
    for name, job in jobs.items():
        artifacts = job.get("artifacts") or {}
        if "expose_as" in artifacts:
            assert not any("*" in p for p in artifacts["paths"]), name


def test_drift_report_job_joins_the_shards_reports_even_after_drift(jobs):
    job = jobs["drift:report"]
    assert job["needs"] == [{"job": "drift:detect", "artifacts": True}]
    assert job["script"] == ["make drift-join"]
    detect_if = jobs["drift:detect"]["rules"][0]["if"]
    assert job["rules"] == [{"if": detect_if, "when": "always"}]  # the shards fail on drift
    assert job["artifacts"]["paths"] == ["drift-report.txt", "drift-report.json"]
    assert job["artifacts"]["when"] == "always"
    assert "tags" not in job and "id_tokens" not in job  # files only: no runner in the VPC, no AWS


@pytest.mark.parametrize("name", DEPLOY_JOBS)
def test_deploy_jobs_use_the_deploy_role(jobs, name):
    assert jobs[name]["variables"]["AWS_ROLE_ARN"] == "$AWS_DEPLOY_ROLE_ARN"


def test_read_only_jobs_use_the_read_only_role(jobs):
    for name in ("verify", "drift:detect", "terraform:plan"):
        assert jobs[name]["variables"]["AWS_ROLE_ARN"] == "$AWS_READONLY_ROLE_ARN", name


def test_aws_access_only_through_oidc_id_tokens(jobs):
    text = CI_FILE.read_text()
    assert "AWS_ACCESS_KEY_ID" not in text
    assert "AWS_SECRET_ACCESS_KEY" not in text
    for name, job in jobs.items():
        if "AWS_ROLE_ARN" not in job.get("variables", {}):
            continue
        assert job["id_tokens"]["AWS_ID_TOKEN"]["aud"], name
        lines = _scripts(job)
        assert any("AWS_WEB_IDENTITY_TOKEN_FILE" in line for line in lines), name


def _all_variables(doc, jobs):
    yield from doc.get("variables", {}).items()
    for job in jobs.values():
        yield from job.get("variables", {}).items()


def test_no_secret_values_in_the_file(doc, jobs):
    secretish = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE", re.I)
    for name, value in _all_variables(doc, jobs):
        value = value.get("value", "") if isinstance(value, dict) else str(value)
        if secretish.search(name):
            assert re.fullmatch(r"\$\{?\w+\}?", value or "$X"), f"{name} holds a literal value"
    text = CI_FILE.read_text()
    assert "-----BEGIN" not in text
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)


def test_no_job_prints_its_environment(jobs):
    leaky = re.compile(r"(^|[;&|\s])(set -x|env|printenv|export -p)(\s|$)")
    for name, job in jobs.items():
        for line in _scripts(job):
            assert not leaky.search(line), f"{name}: {line}"


def test_ssh_key_comes_from_a_file_variable(jobs):
    for name in (*DEPLOY_JOBS, "drift:detect"):
        lines = "\n".join(_scripts(jobs[name]))
        assert 'chmod 600 "$DEPLOY_SSH_KEY"' in lines, name


def _known_hosts_check(job: dict) -> str:
    (check,) = [line for line in job["before_script"] if "DEPLOY_SSH_KNOWN_HOSTS" in line]
    return check


@pytest.mark.parametrize(
    ("known_hosts", "tofu", "refused"),
    [
        (None, None, "DEPLOY_SSH_KNOWN_HOSTS (a File-type CI/CD variable) is not set or empty"),
        ("", None, "is not set or empty"),
        ("10.0.1.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n", "true", "never for CI"),
        ("10.0.1.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n", None, None),
        ("10.0.1.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n", "false", None),
    ],
)
def test_jobs_that_reach_the_proxies_refuse_to_run_without_pinned_host_keys(
    jobs, tmp_path, known_hosts, tofu, refused
):
    """Issue 13 item 1: every SSH job checks before anything else that host keys are pinned."""
    env = {"PATH": os.environ["PATH"]}
    if known_hosts is not None:
        path = tmp_path / "known_hosts"
        path.write_text(known_hosts)
        env["DEPLOY_SSH_KNOWN_HOSTS"] = str(path)
    if tofu is not None:
        env["DEPLOY_SSH_TRUST_ON_FIRST_USE"] = tofu
    for name in (*DEPLOY_JOBS, "drift:detect", "verify", "shift"):
        check = _known_hosts_check(jobs[name])
        done = subprocess.run(["sh", "-c", check], env=env, capture_output=True, text=True)
        if refused is None:
            assert done.returncode == 0, (name, done.stderr)
        else:
            assert done.returncode == 1 and refused in done.stderr, (name, done.stderr)


def test_shift_is_a_manual_job_after_verify_that_keeps_its_report(jobs):
    job = jobs["shift"]
    assert job["needs"] == ["verify"] and job["stage"] == "verify"
    run_rules = [r for r in job["rules"] if r.get("when") != "never"]
    assert run_rules and all(r["when"] == "manual" for r in run_rules)
    assert job["variables"]["AWS_ROLE_ARN"] == "$AWS_DEPLOY_ROLE_ARN"  # ModifyRule
    assert job["environment"]["name"] == "$ENVIRONMENT"
    assert 'chmod 600 "$DEPLOY_SSH_KEY"' in "\n".join(_scripts(job))  # logs over SSH
    assert job["script"][0].startswith('make shift TO="$SHIFT_TO"')
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["paths"] == ["shift-report.txt", "shift-report.json"]


def test_drift_detect_runs_on_schedule_and_keeps_its_report(jobs):
    job = jobs["drift:detect"]
    assert all("schedule" in r["if"] for r in job["rules"])
    assert job["script"] == [f"make drift {SHARD_ARG}"]
    assert job["artifacts"]["when"] == "always"


def test_drift_repair_runs_on_schedule_or_by_hand(jobs):
    job = jobs["drift:repair"]
    conditions = " ".join(r.get("if", "") for r in job["rules"])
    assert "schedule" in conditions and "web" in conditions
    assert any(r.get("when") == "manual" for r in job["rules"])
    assert job["script"] == [f"make drift-repair {SHARD_ARG}"]


def test_jobs_call_repository_commands(jobs):
    for name, job in jobs.items():
        for line in job["script"]:
            assert line.startswith(("make ", "tools/")), f"{name} runs {line!r}"
            if line.startswith("tools/"):
                script = REPO / line.split()[0]
                assert script.is_file() and os.access(script, os.X_OK), script


def test_make_targets_called_by_jobs_are_known(jobs):
    called = set()
    for job in jobs.values():
        for line in _scripts(job):
            if m := re.match(r"make ([\w-]+)", line.strip()):
                called.add(m.group(1))
    assert called <= MAKE_TARGETS
    makefile = (REPO / "Makefile").read_text()
    missing = sorted(t for t in called if not re.search(rf"^{re.escape(t)}:", makefile, re.M))
    assert not missing, f"Makefile lacks the targets the CI jobs call: {missing}"
