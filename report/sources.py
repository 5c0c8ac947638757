"""Where the access log lines come from: local files, an S3 prefix, the proxies over SSH.

Each source yields raw lines (bytes) and raises `SourceError` naming what could not be read;
gzip is recognised by its magic bytes, whatever the name. Bad settings (an unreadable
DEPLOY_SSH_KEY, an s3:// URL without a bucket) raise `UsageError` before anything is read.

- files: `--file PATH` (plain or gzip; "-" is standard input).
- S3: every object under `s3://bucket/prefix`, in key order, paginated. boto3's default
  credential chain; AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (moto, the lab's fake AWS) honoured.
- SSH: the `proxies` of the EC2 inventory, loaded as `inventories/aws.py` loads it for pyinfra
  (inventories.loader.load_inventory, same EC2_INVENTORY_* settings and cache). Each proxy is
  reached as pyinfra reaches it (group_data/all.py): `ssh_user`@`ssh_hostname`, key
  $DEPLOY_SSH_KEY (unset: agent and default keys), host keys from $DEPLOY_SSH_KNOWN_HOSTS (unset:
  ~/.ssh/known_hosts), through EC2_INVENTORY_BASTION when set. Unlike pyinfra, an unknown host
  key is refused rather than accepted and written: a report never changes known_hosts.

Leaves alone: what the lines mean (parse, analyze).
"""

from __future__ import annotations

import gzip
import io
import os
import shlex
import socket
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import paramiko

GZIP_MAGIC = b"\x1f\x8b"
SSH_TIMEOUT = 10.0  # seconds to connect and log in
SSH_READ_TIMEOUT = 60.0  # seconds without a byte from `cat` before giving up on a host


class SourceError(Exception):
    """A source could not be read (completely); the message says which and why."""


class UsageError(Exception):
    """A bad option or environment variable; the message names it."""


# --- lines out of byte streams --------------------------------------------------------------------


class _ReadAdapter(io.RawIOBase):
    """Any object with read(n) (botocore's StreamingBody) as a raw stream, for io.BufferedReader."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def lines_of(stream: io.BufferedReader) -> Iterator[bytes]:
    """The lines of a plain or gzip stream (decided by the first two bytes)."""
    reader: IO[bytes] = stream
    if stream.peek(2)[:2] == GZIP_MAGIC:
        reader = gzip.GzipFile(fileobj=stream, mode="rb")
    yield from reader


def _read_errors(lines: Iterator[bytes]) -> Iterator[bytes]:
    """Turn the errors of reading and decompressing into a `SourceError`."""
    count = 0
    try:
        for line in lines:
            count += 1
            yield line
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise SourceError(f"damaged or truncated gzip after {count} lines ({e})") from None
    except OSError as e:
        raise SourceError(f"read failed after {count} lines ({e.strerror or e})") from None


def file_lines(path: str, stdin: IO[bytes] | None = None) -> Iterator[bytes]:
    """Lines of a local file, plain or gzip; "-" reads `stdin` (default: standard input)."""
    if path == "-":
        raw = stdin if stdin is not None else os.fdopen(os.dup(0), "rb")
        stream = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type]
        yield from _read_errors(lines_of(stream))
        return
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below, after the generator is done
    except OSError as e:
        raise SourceError(e.strerror or str(e)) from None
    with stream:
        yield from _read_errors(lines_of(stream))


# --- S3 -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_s3_url(url: str) -> S3Location:
    """ "s3://bucket/some/prefix" -> S3Location("bucket", "some/prefix"); the prefix may be ""."""
    scheme, sep, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme != "s3" or not sep or not bucket:
        raise UsageError(f"--s3 {url!r}: expected s3://BUCKET[/PREFIX]")
    return S3Location(bucket, prefix)


def s3_endpoint(environ: Mapping[str, str]) -> str | None:
    """The endpoint boto3 itself would use from the environment (service-specific first)."""
    return environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None


def s3_client(environ: Mapping[str, str]) -> Any:
    import boto3
    from botocore.config import Config

    endpoint = s3_endpoint(environ)
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
        # An endpoint such as http://127.0.0.1:5077 has no bucket sub-domains.
        s3={"addressing_style": "path"} if endpoint else None,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def _s3_failure(error: Exception, endpoint: str | None) -> SourceError:
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
    )

    where = endpoint or "AWS"
    if isinstance(error, NoCredentialsError):
        return SourceError("no AWS credentials (boto3's default chain found none)")
    if isinstance(error, NoRegionError):
        return SourceError("no AWS region; set AWS_DEFAULT_REGION")
    if isinstance(error, EndpointConnectionError):
        return SourceError(f"cannot reach {where} ({error})")
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        code = info.get("Code", "error")
        return SourceError(f"{code}: {info.get('Message') or error} (from {where})")
    return SourceError(str(error))


def list_s3_keys(
    client: Any, location: S3Location, endpoint: str | None = None, page_size: int = 1000
) -> list[str]:
    """Every object key under the prefix, in key order (all pages); "folder/" markers skipped.

    An empty listing is an error: a report of nothing usually means a wrong bucket or prefix."""
    from botocore.exceptions import BotoCoreError, ClientError

    keys: list[str] = []
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=location.bucket,
            Prefix=location.prefix,
            PaginationConfig={"PageSize": page_size},
        )
        for page in pages:
            keys.extend(o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/"))
    except (BotoCoreError, ClientError) as e:
        raise _s3_failure(e, endpoint) from None
    if not keys:
        raise SourceError("no object under this prefix")
    return sorted(keys)


def s3_object_lines(
    client: Any, bucket: str, key: str, endpoint: str | None = None
) -> Iterator[bytes]:
    """Lines of one object, plain or gzip (by content, not by name or Content-Encoding)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        with body:
            stream = io.BufferedReader(_ReadAdapter(body.read), 1 << 16)
            yield from _read_errors(lines_of(stream))
    except (BotoCoreError, ClientError) as e:
        raise _s3_failure(e, endpoint) from None


# --- SSH ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JumpHost:
    host: str
    port: int
    user: str
    key_file: str | None


@dataclass(frozen=True)
class SshTarget:
    name: str  # inventory host name
    hostname: str  # ssh_hostname
    port: int
    user: str | None
    jump: JumpHost | None = None


@dataclass(frozen=True)
class SshAuth:
    key: paramiko.PKey | None  # from DEPLOY_SSH_KEY; None: agent and default keys
    known_hosts: Path | None  # DEPLOY_SSH_KNOWN_HOSTS; None: ~/.ssh/known_hosts


def ssh_auth_from_env(environ: Mapping[str, str]) -> SshAuth:
    """Read DEPLOY_SSH_KEY and DEPLOY_SSH_KNOWN_HOSTS as group_data/all.py does; an unreadable
    or unusable file is a `UsageError` naming the variable, before any host is contacted."""
    import paramiko

    key = None
    key_path = environ.get("DEPLOY_SSH_KEY", "")
    if key_path:
        try:
            key = paramiko.PKey.from_path(key_path)
        except OSError as e:
            raise UsageError(
                f"DEPLOY_SSH_KEY={key_path!r}: cannot read the key ({e.strerror or e})"
            ) from None
        except (ValueError, TypeError, paramiko.SSHException) as e:
            raise UsageError(
                f"DEPLOY_SSH_KEY={key_path!r}: not a usable private key ({e}); a key with a "
                "passphrase must come from ssh-agent (unset DEPLOY_SSH_KEY)"
            ) from None
    known_hosts = None
    known_path = environ.get("DEPLOY_SSH_KNOWN_HOSTS", "")
    if known_path:
        try:
            paramiko.HostKeys(known_path)
        except OSError as e:
            raise UsageError(
                f"DEPLOY_SSH_KNOWN_HOSTS={known_path!r}: cannot read it ({e.strerror or e})"
            ) from None
        known_hosts = Path(known_path)
    return SshAuth(key=key, known_hosts=known_hosts)


def proxy_targets(
    hosts: Sequence[Any],
    *,
    group: str,
    jump: JumpHost | None = None,
    limit: Sequence[str] = (),
) -> list[SshTarget]:
    """The hosts of `group` (inventory hosts: .name, .groups, .data) as SSH targets, in
    inventory order; `limit` keeps the named ones (an unknown name is a `UsageError`)."""
    members = [h for h in hosts if group in h.groups]
    if limit:
        names = {h.name for h in members}
        unknown = [name for name in limit if name not in names]
        if unknown:
            raise UsageError(
                f"--limit {', '.join(unknown)}: not in group {group!r} of the inventory "
                f"({', '.join(sorted(names)) or 'empty'})"
            )
        members = [h for h in members if h.name in limit]
    return [
        SshTarget(
            name=h.name,
            hostname=str(h.data["ssh_hostname"]),
            port=int(h.data.get("ssh_port") or 22),
            user=h.data.get("ssh_user") or None,
            jump=jump,
        )
        for h in members
    ]


def load_proxy_targets(
    environ: Mapping[str, str], limit: Sequence[str] = ()
) -> tuple[list[SshTarget], list[str]]:
    """The `proxies` of the EC2 inventory, as pyinfra's `inventories/aws.py` would load them,
    and the inventory's warnings."""
    from inventories.errors import InventoryError
    from inventories.loader import load_inventory
    from inventories.settings import PROXY_GROUP, InventorySettings

    try:
        settings = InventorySettings.from_environ(environ)
        inventory = load_inventory(settings)
    except InventoryError as e:
        raise SourceError(str(e)) from None
    jump = None
    if settings.bastion is not None:
        b = settings.bastion
        jump = JumpHost(b.host, b.port, b.user, settings.bastion_key)
    targets = proxy_targets(inventory.hosts, group=PROXY_GROUP, jump=jump, limit=limit)
    if not targets:
        raise SourceError(
            f"no host in group {PROXY_GROUP!r} (check ENVIRONMENT, EC2_INVENTORY_REGIONS and "
            "the instances' tags)"
        )
    return targets, list(inventory.warnings)


def remote_command(log_path: str) -> str:
    """The command run on each proxy (with sudo: the login user is not meant to read the log;
    -n: fail at once rather than wait for a password)."""
    return f"sudo -n cat -- {shlex.quote(log_path)}"


def _host_keys_client(known_hosts: Path | None, *, system_too: bool = False) -> paramiko.SSHClient:
    import paramiko

    client = paramiko.SSHClient()
    if known_hosts is None or system_too:
        client.load_system_host_keys()
    if known_hosts is not None:
        client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def _ssh_failure(
    where: str, error: Exception, *, user: str | None, key: str, known: str
) -> SourceError:
    """One line saying why a connection to `where` (logging in as `user` with `key`, host keys
    from `known`) failed."""
    import paramiko

    if isinstance(error, paramiko.BadHostKeyException):
        why = f"host key of {where} does not match {known}: refused"
    elif isinstance(error, paramiko.AuthenticationException):
        why = f"login to {where} as {user or 'the current user'} refused with {key}"
    elif isinstance(error, paramiko.SSHException) and "known_hosts" in str(error):
        why = (
            f"host key of {where} is not in {known}: refused (a deploy records it on first "
            "contact; or add it with ssh-keyscan after checking it)"
        )
    elif isinstance(error, TimeoutError | socket.timeout):
        why = f"no answer from {where} within the timeout"
    elif isinstance(error, OSError | paramiko.SSHException):
        why = f"cannot connect to {where} ({error})"
    else:
        why = f"{where}: {error}"
    return SourceError(why)


def ssh_log_lines(
    target: SshTarget,
    auth: SshAuth,
    log_path: str,
    *,
    timeout: float = SSH_TIMEOUT,
    read_timeout: float = SSH_READ_TIMEOUT,
) -> Iterator[bytes]:
    """Stream `sudo -n cat LOG` from one proxy, line by line; a non-zero exit is a SourceError."""
    client, jump_client = connect_proxy(target, auth, timeout=timeout)
    try:
        channel = _start_cat(
            client, target, auth, log_path, timeout=timeout, read_timeout=read_timeout
        )
        yield from _cat_output(channel, f"{target.hostname}:{target.port}", log_path)
    finally:
        # Also when the caller stops early: a generator closed mid-stream lands here too.
        client.close()
        if jump_client is not None:
            jump_client.close()


def connect_proxy(
    target: SshTarget, auth: SshAuth, *, timeout: float = SSH_TIMEOUT
) -> tuple[paramiko.SSHClient, paramiko.SSHClient | None]:
    """Log in to one proxy, through the bastion when there is one (EC2_INVENTORY_BASTION),
    unknown host keys refused: (the proxy's client, the bastion's or None), for the caller to
    close. A failure is a SourceError saying why, and leaves nothing open."""
    known = _known_hosts_label(auth)
    client = _host_keys_client(auth.known_hosts)
    jump_client = None
    try:
        sock = None
        if target.jump is not None:
            jump_client = _host_keys_client(auth.known_hosts, system_too=True)
            sock = _bastion_channel(jump_client, target, auth, known=known, timeout=timeout)
        _login(client, target, auth, sock=sock, known=known, timeout=timeout)
    except BaseException:
        client.close()
        if jump_client is not None:
            jump_client.close()
        raise
    return client, jump_client


def _known_hosts_label(auth: SshAuth) -> str:
    """Where the proxies' host keys are read from, as the error messages name it."""
    return str(auth.known_hosts) if auth.known_hosts else "~/.ssh/known_hosts"


def _bastion_channel(
    jump_client: paramiko.SSHClient,
    target: SshTarget,
    auth: SshAuth,
    *,
    known: str,
    timeout: float,
) -> paramiko.Channel:
    """Log in to the bastion (EC2_INVENTORY_BASTION) and open a TCP channel from it to the
    proxy's SSH port, for the proxy's own login to run over."""
    import paramiko

    jump = target.jump
    assert jump is not None
    try:
        jump_client.connect(
            jump.host,
            jump.port,
            username=jump.user,
            key_filename=jump.key_file,
            look_for_keys=jump.key_file is None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
        transport = jump_client.get_transport()
        assert transport is not None
        return transport.open_channel(
            "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0), timeout
        )
    except (OSError, paramiko.SSHException) as e:
        raise _ssh_failure(
            f"bastion {jump.host}:{jump.port}",
            e,
            user=jump.user,
            key="EC2_INVENTORY_BASTION_KEY" if jump.key_file else "the SSH agent and default keys",
            # The bastion's client reads ~/.ssh/known_hosts as well (_host_keys_client).
            known=f"{known} or ~/.ssh/known_hosts" if auth.known_hosts else known,
        ) from None


def _login(
    client: paramiko.SSHClient,
    target: SshTarget,
    auth: SshAuth,
    *,
    sock: paramiko.Channel | None,
    known: str,
    timeout: float,
) -> None:
    """Log in to the proxy (over `sock` when a bastion carries the connection)."""
    import paramiko

    try:
        client.connect(
            target.hostname,
            target.port,
            username=target.user,
            pkey=auth.key,
            allow_agent=auth.key is None,
            look_for_keys=auth.key is None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            sock=sock,
        )
    except (OSError, paramiko.SSHException) as e:
        raise _proxy_failure(target, auth, e, known) from None


def _start_cat(
    client: paramiko.SSHClient,
    target: SshTarget,
    auth: SshAuth,
    log_path: str,
    *,
    timeout: float,
    read_timeout: float,
) -> paramiko.Channel:
    """Start `remote_command` on the proxy `client` is logged in to; the channel its output
    comes on."""
    import paramiko

    try:
        transport = client.get_transport()
        assert transport is not None
        channel = transport.open_session(timeout=timeout)
        channel.settimeout(read_timeout)
        channel.exec_command(remote_command(log_path))
    except (OSError, paramiko.SSHException) as e:
        raise _proxy_failure(target, auth, e, _known_hosts_label(auth)) from None
    return channel


def _proxy_failure(target: SshTarget, auth: SshAuth, error: Exception, known: str) -> SourceError:
    return _ssh_failure(
        f"{target.hostname}:{target.port}",
        error,
        user=target.user,
        key="DEPLOY_SSH_KEY" if auth.key else "the SSH agent and default keys",
        known=known,
    )


def _cat_output(channel: paramiko.Channel, where: str, log_path: str) -> Iterator[bytes]:
    """The lines `remote_command` prints, then its exit status: a non-zero exit is a
    SourceError with the last line it wrote to standard error."""
    import paramiko

    count = 0
    try:
        for line in channel.makefile("rb"):
            count += 1
            yield line
        status = channel.recv_exit_status()
        errors = channel.makefile_stderr("rb").read().decode("utf-8", "replace").strip()
    except (OSError, paramiko.SSHException) as e:
        raise SourceError(f"{where}: reading stopped after {count} lines ({e})") from None
    if status != 0:
        detail = errors.splitlines()[-1] if errors else "no message"
        command = remote_command(log_path)
        raise SourceError(f"`{command}` on {where} failed (exit {status}): {detail}")
