"""Run the inbox's processes as an operator does: ``python -m tidings inbox migrate``, then
``inbox writer`` and ``inbox api`` as real children configured only through ``TIDINGS_*``.

:class:`InboxStack` owns both children (stopped by PID, SIGTERM then SIGKILL), their logs, and
the API's base URL; waits poll ``/readyz`` without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.tokens import JWT_SECRET
from tidings.ports import free_port


class InboxStack:
    """The inbox writer and API on one database, fed by one nats-server."""

    def __init__(self, nats_url: str, database_url: str, tmp: Path) -> None:
        self.api_port = free_port()
        self.writer_port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        self.env = {
            **base,
            "TIDINGS_NATS_URLS": nats_url,
            "TIDINGS_NATS_RECONNECT_WAIT": "0.2",
            "TIDINGS_AUTH_JWT_SECRET": JWT_SECRET,
            "TIDINGS_INBOX_DATABASE_URL": database_url,
            "TIDINGS_INBOX_PORT": str(self.writer_port),
            "TIDINGS_INBOX_API_HOST": "127.0.0.1",
            "TIDINGS_INBOX_API_PORT": str(self.api_port),
            "TIDINGS_INBOX_FETCH_TIMEOUT": "0.2",
            "TIDINGS_LOG_FORMAT": "json",
        }
        self.logs = {name: tmp / f"inbox-{name}.log" for name in ("migrate", "writer", "api")}
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def log(self) -> str:
        return "\n".join(
            f"--- {name}\n{path.read_text(errors='replace')}"
            for name, path in self.logs.items()
            if path.is_file()
        )

    def _spawn(self, command: str) -> subprocess.Popen[bytes]:
        with self.logs[command].open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "tidings", "inbox", command],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def start(self, *, timeout: float = 30.0) -> InboxStack:
        migrate = self._spawn("migrate")
        deadline = time.monotonic() + timeout
        while migrate.poll() is None:
            if time.monotonic() > deadline:
                migrate.kill()
                raise AssertionError(f"`tidings inbox migrate` hung:\n{self.log()}")
            await asyncio.sleep(0.05)
        if migrate.returncode != 0:
            raise AssertionError(f"`tidings inbox migrate` failed:\n{self.log()}")
        for name in ("writer", "api"):
            self.children[name] = self._spawn(name)
        ports = {"writer": self.writer_port, "api": self.api_port}
        async with httpx.AsyncClient(timeout=1.0) as http:
            for name, port in ports.items():
                while True:
                    if self.children[name].poll() is not None:
                        raise AssertionError(f"inbox {name} exited:\n{self.log()}")
                    with contextlib.suppress(httpx.TransportError):
                        answer = await http.get(f"http://127.0.0.1:{port}/readyz")
                        if answer.status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise AssertionError(f"inbox {name} not ready in time:\n{self.log()}")
                    await asyncio.sleep(0.05)
        return self

    def stop(self) -> None:
        """SIGTERM each child this stack started, SIGKILL what is left after 10 s."""
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children.values():
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
