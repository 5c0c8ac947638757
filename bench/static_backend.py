"""A fast backend for the overhead bench only: the machine's nginx (Debian's package, `make deps`)
answering every request with 200 "ok", one worker, in lab member app-1's network namespace on its
own port, pinned to given CPUs. Its configuration, pid file, logs and temp files live in a
temporary directory; it is stopped by the PID recorded when it was started.

    with StaticBackend("plab-app-1", "10.77.0.10", 8081, cpus={1}) as backend:
        ...
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BODY = "ok\n"  # 3 bytes: body_bytes_sent in the proxy's log tells this backend's answers apart

CONFIG = """\
# The overhead bench's backend (bench/static_backend.py): as little work per request as nginx does.
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # Connections stay open as long as the client wants (the default closes one every 1000
    # requests): the proxy's upstream keepalive and wrk's connections are reused the same way.
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {{
        listen {address}:{port} reuseport backlog=4096;
        default_type text/plain;
        location / {{
            return 200 "{body}";
        }}
    }}
}}
"""


def render_config(directory: str, address: str, port: int) -> str:
    """The backend's nginx.conf (every path inside DIRECTORY)."""
    body = BODY.replace("\n", "\\n")
    return CONFIG.format(dir=directory, address=address, port=port, body=body)


class StaticBackend:
    """nginx `return 200` in network namespace NETNS on ADDRESS:PORT, pinned to CPUS."""

    def __init__(self, netns: str, address: str, port: int, cpus: set[int]) -> None:
        self.netns, self.address, self.port, self.cpus = netns, address, port, cpus
        self.pid: int | None = None
        self.directory: Path | None = None
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> StaticBackend:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        nginx = shutil.which("nginx")
        if nginx is None:
            raise SystemExit("the overhead bench needs nginx on the machine: run `make deps`")
        self.directory = Path(tempfile.mkdtemp(prefix="overhead-backend-"))
        self.directory.chmod(0o755)  # the worker runs as nobody: it must reach its temp paths
        conf = self.directory / "nginx.conf"
        conf.write_text(render_config(str(self.directory), self.address, self.port))
        cpu_list = ",".join(map(str, sorted(self.cpus)))
        # taskset and `ip netns exec` both exec: the PID recorded here is nginx's master.
        command = ["taskset", "-c", cpu_list, "ip", "netns", "exec", self.netns, nginx]
        command += ["-c", str(conf), "-p", str(self.directory), "-g", "daemon off;"]
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.directory / "stderr.log", "wb"),  # noqa: SIM115 (the child keeps it)
            start_new_session=True,
        )
        self.pid = self._proc.pid
        self._wait_listening()

    def _wait_listening(self, seconds: float = 10.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = (self.directory / "stderr.log").read_text(errors="replace")
                raise SystemExit(f"the bench's backend (nginx) exited: {log.strip()}")
            try:
                with socket.create_connection((self.address, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit(f"the bench's backend did not listen on {self.address}:{self.port}")

    def stop(self) -> None:
        """Stop nginx by its recorded PID (graceful quit, then kill), remove its directory."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGQUIT)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._proc = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
