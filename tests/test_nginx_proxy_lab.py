"""nginx as the deploy configures it (tasks/nginx_proxy.py), on the lab (issue 5): scanner paths
answered by nginx, methods refused, the live configuration through gixy, `server_names`.

Runs after the first deploy (LAB_STAGE 20): the `deployed` fixture has converged every proxy.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import run_deploy

from lab import core

pytestmark = pytest.mark.lab
LAB_STAGE = 20

SCANNER_PATHS = ["/wp-login.php", "/.env", "/.git/config", "/admin", "/sitemap.xml", "/phpmyadmin/"]


def test_scanner_paths_are_answered_by_nginx_without_reaching_the_backend(deployed, proxies):
    core.backend_control("/reset", {"fail_rate": 0.0})
    try:
        for node in proxies:
            for path in SCANNER_PATHS:
                result = core.traffic("loadgen", f"http://{node.address}{path}", requests=3)
                assert set(result["outcomes"]) <= {"403", "404"}, (node.name, path, result)
        assert core.backend_control()["attempts"] == 0
    finally:
        core.backend_control("/reset", {"fail_rate": 0.2})


def test_methods_the_application_does_not_use_are_refused(deployed, proxies):
    result = core.traffic(
        "loadgen", f"http://{proxies[0].address}/pets/1", requests=3, method="DELETE"
    )
    assert result["outcomes"] == {"405": 3}


def test_live_nginx_configuration_passes_gixy(deployed, proxies, tmp_path):
    for node in proxies:
        archive = core.run_in(
            node.name, ["tar", "-C", "/etc", "-cf", "-", "nginx"], text=False, check=True
        ).stdout
        target = tmp_path / node.name
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
        gixy = subprocess.run(
            [str(Path(sys.executable).with_name("gixy")), str(target / "nginx/nginx.conf")],
            capture_output=True,
            text=True,
        )
        assert gixy.returncode == 0, gixy.stdout + gixy.stderr
        assert "No issues found" in gixy.stdout, gixy.stdout


def test_server_names_answer_other_hosts_without_proxying_but_keep_healthz(
    deployed, lab_env, proxies
):
    node = proxies[2]
    url = f"http://{node.address}"
    try:
        run = run_deploy(lab_env, "--limit", node.name, "--data", 'server_names=["vet.example"]')
        assert run.returncode == 0, run.output[-3000:]
        assert http_code("loadgen", f"{url}/pets/1", host="vet.example") == "200"
        assert http_code("loadgen", f"{url}/pets/1", host="scanner.example") in ("000", "421")
        assert http_code("loadgen", f"{url}/healthz", host=node.address) == "200"
    finally:
        assert run_deploy(lab_env, "--limit", node.name).returncode == 0


def http_code(source: str, url: str, host: str) -> str:
    """The HTTP status curl sees from lab namespace SOURCE ("000": no answer at all)."""
    result = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            f"plab-{source}",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-m",
            "5",
            "-w",
            "%{http_code}",
            "-H",
            f"Host: {host}",
            url,
        ],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()
