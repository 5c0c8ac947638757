#!/usr/bin/python3
"""Ship the rotated nginx JSON access logs of this proxy to S3.

Managed by the deploy (tasks/log_shipping.py); run hourly by proxy-log-shipping.timer.

Every rotated file next to SHIP_LOG_FILE (access.log.1, access.log.2.gz, ...) is uploaded once,
gzip-compressed, to s3://SHIP_BUCKET/SHIP_PREFIX/SHIP_INSTANCE_ID/YYYY/MM/DD/NAME. A file is
known by the SHA-256 of its (uncompressed) content, so the same period is not uploaded twice when
logrotate renames and compresses it. The list of shipped digests is written only after an
upload succeeded: when S3 cannot be reached, nothing is marked and the next run tries again
(logrotate keeps 14 days). Credentials: boto3's chain (the instance role on EC2).
"""

import datetime
import glob
import gzip
import hashlib
import json
import os
import sys

import boto3

STATE = "/var/lib/proxy-deploy/log-shipping.json"
KEEP_DIGESTS = 500


def read_plain(path):
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
    os.makedirs(os.path.dirname(STATE), exist_ok=True)
    tmp = STATE + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(state, handle)
    os.replace(tmp, STATE)


def object_key(path, digest):
    day = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.UTC)
    base = os.path.basename(os.environ["SHIP_LOG_FILE"])
    return "{}/{}/{:%Y/%m/%d}/{}-{:%Y%m%dT%H%M%SZ}-{}.log.gz".format(
        os.environ["SHIP_PREFIX"], os.environ["SHIP_INSTANCE_ID"], day, base, day, digest[:12]
    )


def main():
    log_file = os.environ["SHIP_LOG_FILE"]
    rotated = sorted(glob.glob(log_file + ".[0-9]*"), key=os.path.getmtime)
    state = load_state()
    shipped = set(state["shipped"])
    s3 = boto3.client("s3")
    uploaded = 0
    for path in rotated:
        content = read_plain(path)
        digest = hashlib.sha256(content).hexdigest()
        if digest in shipped or not content:
            continue
        key = object_key(path, digest)
        s3.put_object(
            Bucket=os.environ["SHIP_BUCKET"],
            Key=key,
            Body=gzip.compress(content),
            ContentType="application/json",
            ContentEncoding="gzip",
        )
        state["shipped"] = (state["shipped"] + [digest])[-KEEP_DIGESTS:]
        save_state(state)
        shipped.add(digest)
        uploaded += 1
        print("shipped {} to s3://{}/{}".format(path, os.environ["SHIP_BUCKET"], key))
    print(f"{uploaded} file(s) shipped, {len(rotated)} rotated file(s) seen")
    return 0


if __name__ == "__main__":
    sys.exit(main())
