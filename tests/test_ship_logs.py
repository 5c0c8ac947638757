"""The log shipper (programs/ship-logs.py) on this machine, against a real moto_server.

The real script runs as a subprocess, under the system's /usr/bin/python3 with `-S` (no
site-packages: it must need the standard library and curl only), and uploads with this machine's
curl. moto checks every request's SigV4 signature and the caller's IAM permissions (turned on
after the setup, through moto's /moto-api/reset-auth, the server-mode form of
INITIAL_NO_AUTH_ACTION_COUNT), so a request curl signs wrongly is refused here as S3 would.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
from conftest import REPO

SCRIPT = REPO / "programs/ship-logs.py"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
MOTO = Path(sys.executable).with_name("moto_server")
REGION = "eu-west-1"
BUCKET = "proxy-logs-test"
PREFIX = "proxy-access-logs"
ALLOW_S3 = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
)
TRUST_EC2 = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "*"}
        ],
    }
)

# The tests that take `s3` run against moto_server and are marked slow (moto's IAM setup and a
# dozen script runs: several seconds); the others run in `make check`.
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class FakeS3:
    """moto_server with signature checks on, and credentials it accepts."""

    url: str
    key_id: str
    secret: str
    role_creds: dict[str, str]  # temporary credentials of an assumed role (with a session token)
    client: Any  # boto3's S3 client, signing as the IAM user

    def objects(self, instance_id: str, prefix: str = PREFIX) -> dict[str, dict]:
        """Key -> get_object answer (with the body read) for everything under the instance, in
        PREFIX (default: the access logs')."""
        client = self.client
        listing = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/{instance_id}/")
        found = {}
        for item in listing.get("Contents", []):
            answer = client.get_object(Bucket=BUCKET, Key=item["Key"])
            found[item["Key"]] = {**answer, "Body": answer["Body"].read()}
        return found


def _wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with status {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"moto_server did not listen on port {port}")


def _seed(url: str) -> FakeS3:
    """A bucket, an IAM user and a role allowed s3:*; then signature and IAM checks on."""
    open_creds = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
    aws = {"region_name": REGION, "endpoint_url": url, **open_creds}
    boto3.client("s3", **aws).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    iam = boto3.client("iam", **aws)
    iam.create_user(UserName="shipper")
    iam.put_user_policy(UserName="shipper", PolicyName="s3", PolicyDocument=ALLOW_S3)
    key = iam.create_access_key(UserName="shipper")["AccessKey"]
    role = iam.create_role(RoleName="proxy", AssumeRolePolicyDocument=TRUST_EC2)["Role"]
    iam.put_role_policy(RoleName="proxy", PolicyName="s3", PolicyDocument=ALLOW_S3)
    assumed = boto3.client("sts", **aws).assume_role(RoleArn=role["Arn"], RoleSessionName="i-1")
    reset = urllib.request.Request(
        f"{url}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},  # else the body is parsed as a form and lost
    )
    with urllib.request.urlopen(reset, timeout=10) as answer:
        assert json.load(answer)["status"] == "ok"
    reader = boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    return FakeS3(url, key["AccessKeyId"], key["SecretAccessKey"], assumed["Credentials"], reader)


@pytest.fixture(scope="module")
def s3() -> Iterator[FakeS3]:
    """One moto_server on a free loopback port for the module; stopped by its PID."""
    port = free_port()
    process = subprocess.Popen(
        [str(MOTO), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"},
    )
    try:
        _wait_for_port(port, process)
        yield _seed(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _Imds(BaseHTTPRequestHandler):
    """IMDSv2 as EC2 answers it: a token first, then the role name, then its credentials."""

    creds: ClassVar[dict[str, str]] = {}
    token = "imds-token"

    def _answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        if (
            self.path == "/latest/api/token"
            and self.headers["X-aws-ec2-metadata-token-ttl-seconds"]
        ):
            self._answer(200, self.token)
        else:
            self._answer(400, "")

    def do_GET(self) -> None:
        if self.headers["X-aws-ec2-metadata-token"] != self.token:
            self._answer(401, "")
        elif self.path == "/latest/meta-data/iam/security-credentials/":
            self._answer(200, "proxy\n")
        elif self.path == "/latest/meta-data/iam/security-credentials/proxy":
            creds = {k: self.creds[k] for k in ("AccessKeyId", "SecretAccessKey")}
            self._answer(
                200, json.dumps({"Code": "Success", **creds, "Token": self.creds["SessionToken"]})
            )
        else:
            self._answer(404, "")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def imds(s3: FakeS3) -> Iterator[str]:
    """A fake instance metadata service on loopback handing out the assumed role's credentials."""
    handler = type("Imds", (_Imds,), {"creds": s3.role_creds})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Host:
    """A proxy's log directory and shipper state, in a temporary directory."""

    root: Path
    instance_id: str

    @property
    def log(self) -> Path:
        return self.root / "access.log"

    @property
    def state(self) -> Path:
        return self.root / "state" / "log-shipping.json"

    def rotated(self, suffix: str, lines: int, mtime: float) -> bytes:
        """Write a rotated file (gzip-compressed for .gz) and return its plain content."""
        content = b"".join(
            json.dumps({"path": f"/{self.instance_id}/{suffix}/{n}", "status": 200}).encode()
            + b"\n"
            for n in range(lines)
        )
        path = self.root / f"access.log{suffix}"
        path.write_bytes(gzip.compress(content) if suffix.endswith(".gz") else content)
        os.utime(path, (mtime, mtime))
        return content

    def key(self, suffix: str, content: bytes) -> str:
        """The object key the shipper must use (the layout the report and Athena read)."""
        day = datetime.fromtimestamp((self.root / f"access.log{suffix}").stat().st_mtime, UTC)
        digest = hashlib.sha256(content).hexdigest()
        name = f"access.log-{day:%Y%m%dT%H%M%SZ}-{digest[:12]}.log.gz"
        return f"{PREFIX}/{self.instance_id}/{day:%Y/%m/%d}/{name}"

    def shipped(self) -> list[str]:
        return json.loads(self.state.read_text())["shipped"] if self.state.exists() else []

    def ship(self, endpoint: str, **aws: str | None) -> subprocess.CompletedProcess:
        """Run the real script once, as the systemd unit would (its environment file's keys)."""
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.root),
            "SHIP_BUCKET": BUCKET,
            "SHIP_PREFIX": PREFIX,
            "SHIP_INSTANCE_ID": self.instance_id,
            "SHIP_LOG_FILE": str(self.log),
            "SHIP_STATE_FILE": str(self.state),
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        env.update(aws)
        env = {name: value for name, value in env.items() if value is not None}
        return subprocess.run(
            [PYTHON, "-S", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60
        )


@pytest.fixture
def host(tmp_path: Path, request: pytest.FixtureRequest) -> Host:
    """A host with its own instance id, a live access log (never shipped), no rotated file."""
    proxy = Host(tmp_path, f"i-{hashlib.sha1(request.node.name.encode()).hexdigest()[:12]}")
    proxy.log.write_bytes(b'{"path": "/live"}\n')
    return proxy


def keys_of(s3: FakeS3) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": s3.key_id, "AWS_SECRET_ACCESS_KEY": s3.secret}


@pytest.mark.slow
@needs_curl
def test_rotated_files_land_under_their_keys_as_gzip_of_the_original(s3, host):
    now = time.time()
    older = host.rotated(".2.gz", 50, now - 86400)
    newer = host.rotated(".1", 80, now - 3600)

    run = host.ship(s3.url, **keys_of(s3))

    assert run.returncode == 0, run.stderr
    objects = s3.objects(host.instance_id)
    assert set(objects) == {host.key(".2.gz", older), host.key(".1", newer)}
    for suffix, content in ((".2.gz", older), (".1", newer)):
        stored = objects[host.key(suffix, content)]
        assert gzip.decompress(stored["Body"]) == content
        assert stored["ContentType"] == "application/json"
        assert stored["ContentEncoding"] == "gzip"
    # Oldest first, one line per file, then the summary: the lines the journal has always shown.
    assert run.stdout.splitlines() == [
        f"shipped {host.root}/access.log.2.gz to s3://{BUCKET}/{host.key('.2.gz', older)}",
        f"shipped {host.root}/access.log.1 to s3://{BUCKET}/{host.key('.1', newer)}",
        "2 file(s) shipped, 2 rotated file(s) seen",
    ]
    assert host.shipped() == [hashlib.sha256(c).hexdigest() for c in (older, newer)]


@pytest.mark.slow
@needs_curl
def test_second_run_uploads_nothing_even_after_logrotate_renames_and_compresses(s3, host):
    now = time.time()
    content = host.rotated(".1", 30, now - 3600)
    assert host.ship(s3.url, **keys_of(s3)).returncode == 0
    first = s3.objects(host.instance_id)

    again = host.ship(s3.url, **keys_of(s3))
    # logrotate's next day: .1 becomes .2.gz (same content, compressed, new name).
    (host.root / "access.log.1").unlink()
    (host.root / "access.log.2.gz").write_bytes(gzip.compress(content))
    renamed = host.ship(s3.url, **keys_of(s3))

    assert again.returncode == renamed.returncode == 0
    assert again.stdout == "0 file(s) shipped, 1 rotated file(s) seen\n"
    assert renamed.stdout == "0 file(s) shipped, 1 rotated file(s) seen\n"
    assert s3.objects(host.instance_id).keys() == first.keys()


@pytest.mark.slow
@needs_curl
def test_unreachable_endpoint_fails_marks_nothing_and_the_next_run_ships(s3, host):
    host.rotated(".1", 20, time.time() - 3600)
    stopped = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    failed = host.ship(stopped, **keys_of(s3))

    assert failed.returncode == 1
    assert "access.log.1 not shipped" in failed.stderr
    assert "curl exit status 7" in failed.stderr  # couldn't connect
    assert host.shipped() == []
    retried = host.ship(s3.url, **keys_of(s3))
    assert retried.returncode == 0, retried.stderr
    assert len(s3.objects(host.instance_id)) == 1


@pytest.mark.slow
@needs_curl
def test_missing_bucket_fails_with_http_404_and_s3s_reason(s3, host):
    host.rotated(".1", 20, time.time() - 3600)

    run = host.ship(s3.url, **keys_of(s3), SHIP_BUCKET="no-such-bucket-here")

    assert run.returncode == 1
    assert "HTTP 404" in run.stderr and "NoSuchBucket" in run.stderr, run.stderr
    assert host.shipped() == []


@pytest.mark.slow
@needs_curl
def test_wrong_secret_key_is_refused_by_the_signature_check(s3, host):
    host.rotated(".1", 20, time.time() - 3600)

    run = host.ship(s3.url, AWS_ACCESS_KEY_ID=s3.key_id, AWS_SECRET_ACCESS_KEY="wrong" + s3.secret)

    assert run.returncode == 1
    assert "HTTP 403" in run.stderr and "SignatureDoesNotMatch" in run.stderr, run.stderr
    assert host.shipped() == []
    assert s3.objects(host.instance_id) == {}


@pytest.mark.slow
@needs_curl
def test_session_token_from_the_environment_is_signed_and_checked(s3, host):
    host.rotated(".1", 20, time.time() - 3600)
    role = {
        "AWS_ACCESS_KEY_ID": s3.role_creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": s3.role_creds["SecretAccessKey"],
    }

    refused = host.ship(s3.url, **role, AWS_SESSION_TOKEN="not-the-token")
    accepted = host.ship(s3.url, **role, AWS_SESSION_TOKEN=s3.role_creds["SessionToken"])

    assert refused.returncode == 1 and "InvalidToken" in refused.stderr, refused.stderr
    assert accepted.returncode == 0, accepted.stderr
    assert len(s3.objects(host.instance_id)) == 1


@pytest.mark.slow
@needs_curl
def test_instance_role_credentials_come_from_imdsv2(s3, host, imds):
    host.rotated(".1", 20, time.time() - 3600)

    run = host.ship(s3.url, AWS_EC2_METADATA_DISABLED=None, AWS_EC2_METADATA_SERVICE_ENDPOINT=imds)

    assert run.returncode == 0, run.stderr
    assert len(s3.objects(host.instance_id)) == 1


@pytest.mark.slow
@needs_curl
def test_no_credentials_anywhere_fails_clearly(s3, host):
    host.rotated(".1", 20, time.time() - 3600)

    run = host.ship(
        s3.url,
        AWS_EC2_METADATA_DISABLED=None,
        AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{free_port()}",
    )

    assert run.returncode == 1
    assert "no AWS credentials" in run.stderr, run.stderr
    assert host.shipped() == []


def test_nothing_new_asks_for_no_credentials(host):
    """A run with nothing to upload touches neither IMDS nor S3 (the hourly no-op)."""
    run = host.ship("http://127.0.0.1:9", AWS_EC2_METADATA_DISABLED=None)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "0 file(s) shipped, 0 rotated file(s) seen\n"


@pytest.mark.slow
@needs_curl
def test_upload_over_a_mebibyte_is_signed_and_stored_whole(s3, host):
    """curl sends `Expect: 100-continue` above 1 MiB: the signed upload must still go through."""
    path = host.root / "access.log.1"
    content = b"".join(
        json.dumps({"path": "/big", "id": hashlib.sha256(str(n).encode()).hexdigest()}).encode()
        + b"\n"
        for n in range(40000)
    )
    path.write_bytes(content)
    assert len(gzip.compress(content)) > 1024 * 1024

    run = host.ship(s3.url, **keys_of(s3))

    assert run.returncode == 0, run.stderr
    (stored,) = s3.objects(host.instance_id).values()
    assert gzip.decompress(stored["Body"]) == content


AUDIT_PREFIX = "proxy-audit-logs"
AUDIT_RECORD = (
    b"type=SYSCALL msg=audit(1764409200.123:42): arch=c000003e syscall=257 success=yes exit=3 "
    b'comm="vi" exe="/usr/bin/vim.basic" key="sshd_config"\n'
)


@pytest.mark.slow
@needs_curl
def test_rotated_audit_logs_ship_under_their_own_prefix_as_text(s3, host):
    """Audit records are not JSON: never under the access logs' prefix, which is read as JSON."""
    audit_dir = host.root / "audit"
    audit_dir.mkdir()
    (audit_dir / "audit.log").write_bytes(AUDIT_RECORD)  # live: not shipped
    (audit_dir / "audit.log.1").write_bytes(AUDIT_RECORD * 3)
    host.rotated(".1", 5, time.time() - 3600)
    audit = {"SHIP_AUDIT_LOG_FILE": str(audit_dir / "audit.log"), "SHIP_AUDIT_PREFIX": AUDIT_PREFIX}

    run = host.ship(s3.url, **keys_of(s3), **audit)
    again = host.ship(s3.url, **keys_of(s3), **audit)

    assert run.returncode == 0, run.stderr
    assert run.stdout.endswith("2 file(s) shipped, 2 rotated file(s) seen\n")
    ((key, stored),) = s3.objects(host.instance_id, AUDIT_PREFIX).items()
    assert key.startswith(f"{AUDIT_PREFIX}/{host.instance_id}/") and "/audit.log-" in key
    assert gzip.decompress(stored["Body"]) == AUDIT_RECORD * 3
    assert stored["ContentType"] == "text/plain"
    assert all("audit.log" not in k for k in s3.objects(host.instance_id))
    assert again.stdout == "0 file(s) shipped, 2 rotated file(s) seen\n"


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_unreadable_audit_directory_fails_instead_of_finding_nothing(tmp_path_factory):
    """glob finds nothing in a directory it may not read: that must not pass for "all shipped".

    Run as nobody (setpriv), since root reads every directory: like the sandboxed shipper outside
    group adm, the case of an auditd.conf whose log_group is root.
    """
    root = Path(tempfile.mkdtemp(prefix="ship-logs-"))
    try:
        root.chmod(0o755)
        audit_dir = root / "audit"
        audit_dir.mkdir(mode=0o700)
        (audit_dir / "audit.log.1").write_bytes(AUDIT_RECORD)
        (root / "state").mkdir(mode=0o777)
        env = {
            "PATH": os.environ["PATH"],
            "SHIP_BUCKET": BUCKET,
            "SHIP_PREFIX": PREFIX,
            "SHIP_INSTANCE_ID": "i-0123",
            "SHIP_LOG_FILE": str(root / "access.log"),
            "SHIP_STATE_FILE": str(root / "state" / "log-shipping.json"),
            "SHIP_AUDIT_LOG_FILE": str(audit_dir / "audit.log"),
            "SHIP_AUDIT_PREFIX": AUDIT_PREFIX,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        shutil.copy(SCRIPT, root / "ship-logs")
        nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        run = subprocess.run(
            [*nobody, PYTHON, "-S", str(root / "ship-logs")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(root)
    assert run.returncode == 1, run.stdout
    assert f"cannot read {audit_dir}: permission denied" in run.stderr


def _load_script():
    spec = importlib.util.spec_from_file_location("ship_logs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_secrets_reach_curl_through_its_config_never_its_command_line():
    ship = _load_script()
    creds = ("AKIDEXAMPLE", 'se"cr\\et', "session-token")
    body = b"payload"

    argv = ship.curl_command("http://s3.test/b/k", body, 7)
    config = ship.curl_config(creds).decode()

    assert not any(secret in arg for arg in argv for secret in creds[1:])
    assert argv[:4] == ["curl", "-q", "--config", "/dev/fd/7"]
    assert f"x-amz-content-sha256: {hashlib.sha256(body).hexdigest()}" in argv
    assert config.splitlines() == [
        'user = "AKIDEXAMPLE:se\\"cr\\\\et"',
        'header = "x-amz-security-token: session-token"',
    ]


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "https://logs.s3.eu-west-1.amazonaws.com/p/i-1/a.log.gz"),
        (
            {"AWS_ENDPOINT_URL": "http://10.77.0.1:5077"},
            "http://10.77.0.1:5077/logs/p/i-1/a.log.gz",
        ),
        (
            {"AWS_ENDPOINT_URL": "http://a:1/", "AWS_ENDPOINT_URL_S3": "http://s3:2/"},
            "http://s3:2/logs/p/i-1/a.log.gz",
        ),
    ],
)
def test_object_url_is_virtual_hosted_on_aws_and_path_style_on_an_endpoint(monkeypatch, env, url):
    ship = _load_script()
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert ship.object_url("logs", "p/i-1/a.log.gz") == url


def test_dotted_bucket_on_aws_is_addressed_path_style(monkeypatch):
    ship = _load_script()
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-2")
    assert (
        ship.object_url("logs.example", "k") == "https://s3.us-east-2.amazonaws.com/logs.example/k"
    )
