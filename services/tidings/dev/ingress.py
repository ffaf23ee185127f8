"""A real nginx in front of the gateways: the chart's Ingress on one machine.

``tidings dev --gateways 3`` and the cluster tests run it. It routes the same paths as
charts/tidings/templates/ingress-gateway.yaml (``/`` — the WebSocket at ``/ws`` — to the data
ports, ``/api/notifications`` to the API ports), round robin with no sticky sessions (a client
resumes on any gateway), and carries the settings the chart's ``nginxWebSocket`` annotations set:
HTTP/1.1 with the Upgrade/Connection headers, a read timeout far above the gateway's 25 s ping,
no buffering either way. nginx runs as our child with its prefix, config, pid, logs and temp
files under its own directory (never the system's ``/etc/nginx`` or ``/var``). A development
tool: production never imports it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tidings.errors import StartFailed
from tidings.ports import free_port, port_in_use

# Same figure as the chart's proxy-read/send-timeout annotations: a WebSocket lives for hours
# and is idle between the gateway's pings (25 s by default), so this must stay far above them.
TIMEOUT_SECONDS = 3600
API_PATH = "/api/notifications"
MAX_DESCRIPTORS = 65536
BACKLOG = 4096  # nginx's default on Linux is 511: a reconnect storm overflows it


def _descriptors() -> tuple[int, int]:
    """(worker_rlimit_nofile, worker_connections) within this process's hard limit, which
    nginx cannot raise without CAP_SYS_RESOURCE (here even root cannot: 20,000). A proxied
    WebSocket holds two connections (client side and upstream side)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = min(hard if hard != resource.RLIM_INFINITY else MAX_DESCRIPTORS, MAX_DESCRIPTORS)
    return nofile, max(512, nofile - 64)


def worker_count() -> int:
    """At least two workers: the descriptor limit is per process, so two workers carry twice
    the WebSockets (20,000 descriptors each here: ~19,900 connections, ~9,950 WebSockets)."""
    return max(2, os.cpu_count() or 1)


def nginx_binary() -> Path:
    """Debian's nginx (``apt-get install nginx``), or one on PATH."""
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise StartFailed("nginx not found; install it (Debian: apt-get install -y nginx)")


@dataclass(frozen=True, slots=True)
class Upstream:
    """One gateway as nginx sees it: its data port and its API port on ``host``."""

    port: int
    api_port: int
    host: str = "127.0.0.1"


def render_config(directory: Path, *, host: str, port: int, upstreams: Sequence[Upstream]) -> str:
    """nginx.conf for a proxy on ``host:port`` in front of ``upstreams`` (files under
    ``directory``)."""
    if not upstreams:
        raise StartFailed("the ingress needs at least one gateway")
    d = directory
    # max_fails=0 on the WebSocket side: nginx keeps no "failed" state, every new connection
    # tries the next gateway at once when one refuses (killed) or answers 503 (draining;
    # proxy_next_upstream). With max_fails=1 fail_timeout=5s a rolling upgrade marked the drained
    # gateways failed one after another, and nginx then answered "no live upstreams" (502) to
    # every reconnect for 36 s though two gateways were up (found by test_cluster_rolling).
    data = "\n".join(f"    server {u.host}:{u.port} max_fails=0;" for u in upstreams)
    api = "\n".join(
        f"    server {u.host}:{u.api_port} max_fails=1 fail_timeout=5s;" for u in upstreams
    )
    nofile, connections = _descriptors()
    proxy = f"""
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_connect_timeout 2s;
      proxy_read_timeout {TIMEOUT_SECONDS}s;
      proxy_send_timeout {TIMEOUT_SECONDS}s;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_next_upstream error timeout http_502 http_503;
      proxy_next_upstream_tries 0;"""
    return f"""# Written by tidings (tidings.dev.ingress); rewritten at every start.
worker_processes {worker_count()};
pid {d / "nginx.pid"};
error_log {d / "error.log"} warn;
worker_rlimit_nofile {nofile};

events {{
  worker_connections {connections};
  multi_accept on;  # a reconnect storm: take every queued connection at each wakeup
}}

http {{
  # When each request began and what its steps took (a storm's reconnects read from here):
  # request_time counts from nginx's first read of the request, upstream_connect_time the TCP
  # connect to the gateway, upstream_header_time until the gateway's 101 (or other answer).
  log_format timed '$remote_addr [$time_local] $msec "$request" $status $bytes_sent '
                   'rt=$request_time uc=$upstream_connect_time uh=$upstream_header_time '
                   'ua=$upstream_addr';
  access_log {d / "access.log"} timed;
  client_body_temp_path {d / "tmp" / "body"};
  proxy_temp_path {d / "tmp" / "proxy"};
  fastcgi_temp_path {d / "tmp" / "fastcgi"};
  uwsgi_temp_path {d / "tmp" / "uwsgi"};
  scgi_temp_path {d / "tmp" / "scgi"};

  map $http_upgrade $connection_upgrade {{
    default upgrade;
    '' close;
  }}

  upstream tidings_data {{
{data}
  }}

  upstream tidings_api {{
{api}
  }}

  server {{
    # reuseport: one accept queue per worker, so the kernel spreads connections evenly and no
    # worker runs out of descriptors while the other has room.
    listen {host}:{port} reuseport backlog={BACKLOG};
    location / {{
      proxy_pass http://tidings_data;{proxy}
    }}
    location {API_PATH} {{
      proxy_pass http://tidings_api;{proxy}
    }}
  }}
}}
"""


def _die_with_parent() -> None:
    """Runs in nginx's master before exec: if its owner is killed outright, SIGTERM it."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (nginx's workers), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


class Nginx:
    """One nginx master (and its worker) proxying to gateways; start, stop, restart."""

    def __init__(
        self,
        directory: Path,
        upstreams: Sequence[Upstream],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.dir = directory
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.upstreams = list(upstreams)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def api_url(self) -> str:
        return self.url + API_PATH

    @property
    def config_path(self) -> Path:
        return self.dir / "nginx.conf"

    @property
    def log_path(self) -> Path:
        return self.dir / "error.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def pids(self) -> list[int]:
        """The master and its workers (to check that all are gone after :meth:`stop`)."""
        return [] if self.pid is None else [self.pid, *children_of(self.pid)]

    def start(self, *, timeout: float = 10.0) -> Nginx:
        if self.running:
            return self
        if port_in_use(self.port, self.host):
            raise StartFailed(f"port {self.port} is already in use; choose another ingress port")
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            render_config(self.dir, host=self.host, port=self.port, upstreams=self.upstreams)
        )
        cmd = [
            str(nginx_binary()),
            "-p", f"{self.dir}/", "-c", str(self.config_path),
            "-e", str(self.log_path),  # else nginx first opens the system's error log
            "-g", "daemon off;",
        ]  # fmt: skip
        with (self.dir / "nginx.out").open("ab") as out:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches the owner only
                preexec_fn=_die_with_parent,
            )
        self._wait_listening(timeout)
        return self

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not port_in_use(self.port, self.host):
            code = self.process.poll() if self.process is not None else -1
            if code is not None or time.monotonic() > deadline:
                self.stop()
                raise StartFailed(
                    f"nginx did not start on {self.host}:{self.port}"
                    f" (exit code {code}); end of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def log_tail(self, limit: int = 2000) -> str:
        text = ""
        for path in (self.dir / "nginx.out", self.log_path):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return text[-limit:]

    def stop(self, *, timeout: float = 10.0) -> None:
        """SIGTERM (nginx's fast shutdown: it does not wait for WebSockets to end), then wait
        for the workers too; SIGKILL whatever outlives ``timeout``."""
        proc, self.process = self.process, None
        if proc is None:
            return
        workers = children_of(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        deadline = time.monotonic() + timeout
        for pid in workers:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
