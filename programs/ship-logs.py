#!/usr/bin/python3
"""Ship the rotated nginx JSON access logs of this proxy to S3.

Managed by the deploy (tasks/log_shipping.py); run hourly by proxy-log-shipping.timer.

Every rotated file next to SHIP_LOG_FILE (access.log.1, access.log.2.gz, ...) is uploaded once,
gzip-compressed, to s3://SHIP_BUCKET/SHIP_PREFIX/SHIP_INSTANCE_ID/YYYY/MM/DD/NAME. When
SHIP_AUDIT_LOG_FILE and SHIP_AUDIT_PREFIX are set, the audit log's rotated files (audit.log.1,
...; auditd rotates them itself) go the same way under SHIP_AUDIT_PREFIX: a prefix of their own,
because everything under SHIP_PREFIX is read as JSON access logs (the report, Athena). A file is
known by the SHA-256 of its (uncompressed) content, so the same period is not uploaded twice when
logrotate renames and compresses it. The list of shipped digests (SHIP_STATE_FILE, default
/var/lib/proxy-deploy/log-shipping.json) is written only after an upload succeeded: when S3
cannot be reached or refuses, the script says why, exits 1, and nothing is marked, so the next
run tries again (logrotate keeps 14 days).

Python 3 standard library and curl only (no boto3 on the proxies): curl signs each PUT with
AWS Signature V4 (`--aws-sigv4`, curl 7.75+; Debian 12 has 7.88, Debian 13 8.14).
Credentials, first found: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN) from
the environment, else the instance role through IMDSv2. Region: AWS_DEFAULT_REGION (or
AWS_REGION). Endpoint: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL when set (an S3-compatible
server, the lab's fake S3), path-style; else https://BUCKET.s3.REGION.amazonaws.com.
"""

import datetime
import glob
import gzip
import hashlib
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request

STATE = os.environ.get("SHIP_STATE_FILE") or "/var/lib/proxy-deploy/log-shipping.json"
KEEP_DIGESTS = 500

# IMDSv2. AWS_EC2_METADATA_SERVICE_ENDPOINT and AWS_EC2_METADATA_DISABLED are the AWS SDKs' own
# variables for the same thing; honoured so the role path can be tested off EC2.
IMDS_ENDPOINT = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or "http://169.254.169.254"
IMDS_TIMEOUT = 2  # seconds; the service is link-local: when it is slow, it is not there
IMDS_TOKEN_TTL = 300  # seconds; one run needs the token for a few requests only

CONNECT_TIMEOUT = 10  # seconds, for curl
MAX_TIME = 300  # seconds per upload: a day of gzip-compressed log at a slow link


class ShipError(Exception):
    """An upload or credentials problem: printed as one line, exit status 1."""


def read_plain(path):
    """The uncompressed content of a rotated file (logrotate compresses the older ones)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        return handle.read()


def load_state():
    try:
        with open(STATE) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {"shipped": []}


def save_state(state):
    """Write the state atomically: a run killed half-way leaves the previous list intact."""
    os.makedirs(os.path.dirname(os.path.abspath(STATE)), exist_ok=True)
    tmp = STATE + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(state, handle)
    os.replace(tmp, STATE)


class Log:
    """One log this host ships: the live file's path, the key prefix, the content type."""

    def __init__(self, path, prefix, content_type):
        self.path = path
        self.prefix = prefix
        self.content_type = content_type

    def rotated(self):
        """Its rotated files (PATH.1, PATH.2.gz, ...), oldest first."""
        directory = os.path.dirname(self.path) or "."
        if os.path.isdir(directory) and not os.access(directory, os.R_OK | os.X_OK):
            # glob would silently find nothing: a log never shipped must not look shipped.
            raise ShipError(f"cannot read {directory}: permission denied")
        return sorted(glob.glob(self.path + ".[0-9]*"), key=os.path.getmtime)


def logs():
    """The access log, and the audit log when its shipping is configured."""
    found = [Log(os.environ["SHIP_LOG_FILE"], os.environ["SHIP_PREFIX"], "application/json")]
    audit, audit_prefix = os.environ.get("SHIP_AUDIT_LOG_FILE"), os.environ.get("SHIP_AUDIT_PREFIX")
    if audit and audit_prefix:
        found.append(Log(audit, audit_prefix, "text/plain"))
    return found


def object_key(path, digest, log=None):
    """PREFIX/INSTANCE_ID/YYYY/MM/DD/NAME-STAMP-DIGEST.log.gz, dated by the file's mtime."""
    log = log or logs()[0]
    day = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.UTC)
    base = os.path.basename(log.path)
    return "{}/{}/{:%Y/%m/%d}/{}-{:%Y%m%dT%H%M%SZ}-{}.log.gz".format(
        log.prefix, os.environ["SHIP_INSTANCE_ID"], day, base, day, digest[:12]
    )


def region():
    return os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"


def object_url(bucket, key):
    """The URL to PUT the object to.

    The key is percent-encoded once, with the same unreserved set SigV4 uses (quote keeps
    A-Z a-z 0-9 - _ . ~ and /): curl signs the path as sent for service s3 (7.88 always,
    8.9+ skips its own encoding for s3), so the signed path and S3's canonical path agree.
    """
    path = urllib.parse.quote(key, safe="/")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        # An S3-compatible server (moto in the lab) is addressed by IP or a plain name: the
        # bucket goes in the path, as boto3 does for custom endpoints.
        return "{}/{}/{}".format(endpoint.rstrip("/"), bucket, path)
    if "." in bucket:
        # A dotted bucket as a subdomain breaks the *.s3.REGION.amazonaws.com certificate.
        return f"https://s3.{region()}.amazonaws.com/{bucket}/{path}"
    return f"https://{bucket}.s3.{region()}.amazonaws.com/{path}"


def imds(path, token=None, method="GET"):
    """One IMDSv2 request; its body as text. No proxy: the service is link-local."""
    headers = {"X-aws-ec2-metadata-token": token} if token else {}
    if method == "PUT":
        headers["X-aws-ec2-metadata-token-ttl-seconds"] = str(IMDS_TOKEN_TTL)
    request = urllib.request.Request(
        IMDS_ENDPOINT.rstrip("/") + path, method=method, headers=headers
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=IMDS_TIMEOUT) as response:
        return response.read().decode()


def role_credentials():
    """The instance role's temporary credentials, from the instance metadata service."""
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        raise ShipError("no AWS credentials: none in the environment, and IMDS is disabled")
    try:
        token = imds("/latest/api/token", method="PUT")
        roles = imds("/latest/meta-data/iam/security-credentials/", token).split()
        if not roles:
            raise ShipError("no AWS credentials: this instance has no instance role")
        document = json.loads(imds("/latest/meta-data/iam/security-credentials/" + roles[0], token))
        return document["AccessKeyId"], document["SecretAccessKey"], document["Token"]
    except (OSError, ValueError, KeyError) as error:  # URLError and timeouts are OSErrors
        raise ShipError(
            "no AWS credentials: none in the environment, and the instance metadata service "
            f"({IMDS_ENDPOINT}) gave none: {error}"
        ) from error


def credentials():
    """(access key id, secret key, session token or ""): the environment first, else the role."""
    key_id = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key_id and secret:
        return key_id, secret, os.environ.get("AWS_SESSION_TOKEN", "")
    return role_credentials()


def config_value(text):
    """A value for curl's config file syntax: double-quoted, with \\ and " escaped."""
    if any(c in text for c in "\r\n"):
        raise ShipError("an AWS credential contains a line break")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def curl_config(creds):
    """The secret part of the curl command, as a curl config file.

    It reaches curl through a pipe (`--config /dev/fd/N`), never on its command line, which
    every local user can read in `ps`. curl has no option for a session token: it goes as the
    x-amz-security-token header, which curl signs like every header it is given.
    """
    key_id, secret, token = creds
    lines = ["user = " + config_value(key_id + ":" + secret)]
    if token:
        lines.append("header = " + config_value("x-amz-security-token: " + token))
    return ("\n".join(lines) + "\n").encode()


def curl_command(url, body, config_fd, content_type="application/json"):
    """curl's arguments for one signed PUT of `body` (read from stdin) to `url`."""
    return [
        "curl",
        "-q",  # first: ignore ~/.curlrc, whose options could change what gets signed
        "--config",
        f"/dev/fd/{config_fd}",
        "--aws-sigv4",
        f"aws:amz:{region()}:s3",
        "--request",
        "PUT",
        # --data-binary reads the whole body first, so curl sends a Content-Length
        # (S3 refuses a chunked PUT) and knows the payload.
        "--data-binary",
        "@-",
        # S3 requires an x-amz-content-sha256 header: curl 7.88 (Debian 12) never sends one
        # (8.0+ does for service s3). Given explicitly, every version signs this value as the
        # payload hash instead of computing its own, and S3 checks the body against it.
        "--header",
        "x-amz-content-sha256: " + hashlib.sha256(body).hexdigest(),
        "--header",
        "Content-Type: " + content_type,
        "--header",
        "Content-Encoding: gzip",
        "--silent",
        "--show-error",
        "--connect-timeout",
        str(CONNECT_TIMEOUT),
        "--max-time",
        str(MAX_TIME),
        # The response body, then the status on a line of its own: S3's error document
        # (<Code>NoSuchBucket</Code>...) is the useful part of a failure.
        "--output",
        "-",
        "--write-out",
        "\\n%{http_code}",
        url,
    ]


def snippet(data, limit=300):
    """Up to `limit` characters of a response or error output, on one line."""
    return " ".join(data.decode("utf-8", "replace").split())[:limit]


def put_object(url, body, creds, content_type="application/json"):
    """PUT `body` to `url`, signed by curl; raise ShipError unless S3 answered 2xx."""
    config = curl_config(creds)
    read_end, write_end = os.pipe()
    try:
        # A few hundred bytes: the pipe's buffer (64 KiB) takes it all, nothing blocks.
        os.write(write_end, config)
        os.close(write_end)
        write_end = None
        result = subprocess.run(
            curl_command(url, body, read_end, content_type),
            input=body,
            capture_output=True,
            pass_fds=(read_end,),
            check=False,
        )
    except OSError as error:  # no curl at all
        raise ShipError(f"PUT {url} failed: cannot run curl: {error}") from error
    finally:
        os.close(read_end)
        if write_end is not None:
            os.close(write_end)
    response, _, status = result.stdout.rpartition(b"\n")
    if result.returncode != 0:
        detail = snippet(result.stderr) or snippet(response)
        raise ShipError(f"PUT {url} failed: curl exit status {result.returncode}: {detail}")
    if not status.strip().isdigit() or not 200 <= int(status) < 300:
        raise ShipError(
            "PUT {} failed: HTTP {}: {}".format(
                url, status.decode(errors="replace").strip(), snippet(response) or "(no body)"
            )
        )


def main():
    bucket = os.environ["SHIP_BUCKET"]
    state = load_state()
    shipped = set(state["shipped"])
    creds = None  # asked for only when there is something to upload
    uploaded = seen = 0
    for log in logs():
        try:
            rotated = log.rotated()
        except ShipError as error:
            print(f"error: {log.path} not shipped: {error}", file=sys.stderr)
            return 1
        seen += len(rotated)
        for path in rotated:
            try:
                content = read_plain(path)
                digest = hashlib.sha256(content).hexdigest()
                if digest in shipped or not content:
                    continue
                key = object_key(path, digest, log)
                creds = creds or credentials()
                put_object(object_url(bucket, key), gzip.compress(content), creds, log.content_type)
            except (ShipError, OSError) as error:  # OSError: a rotated file we may not read
                print(f"error: {path} not shipped: {error}", file=sys.stderr)
                print(
                    f"{uploaded} file(s) shipped before the error; "
                    "the rest is tried again next run",
                    file=sys.stderr,
                )
                return 1
            state["shipped"] = (state["shipped"] + [digest])[-KEEP_DIGESTS:]
            save_state(state)
            shipped.add(digest)
            uploaded += 1
            print(f"shipped {path} to s3://{bucket}/{key}")
    print(f"{uploaded} file(s) shipped, {seen} rotated file(s) seen")
    return 0


if __name__ == "__main__":
    sys.exit(main())
