"""A real PostgreSQL server for tests: Debian's `postgresql` package, started in a temp dir on a
free loopback port, stopped and removed afterwards (and stoppable mid-test for outage tests).

PostgreSQL refuses to run as root. As root (this machine, CI) every server command runs as the
unprivileged `postgres` user the Debian package creates, through `runuser -u postgres --`;
its data directory is a fresh ``mkdtemp`` handed to that user (pytest's tmp_path sits under a
root-only directory it could not enter). As any other user the commands run directly.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tidings.ports import free_port

SERVER_USER = "postgres"
SUPERUSER = "tidings"


def bin_dir() -> Path:
    """The newest installed /usr/lib/postgresql/<version>/bin (Debian's layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    return Path(found[-1]).parent


def _version(path: str) -> int:
    return int(Path(path).parts[-3].split(".")[0])


class PostgresServer:
    """One PostgreSQL cluster: ``start`` (initdb on first start), ``stop``, ``url``, ``remove``."""

    def __init__(self) -> None:
        self.bin = bin_dir()
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="tidings-pg-"))
        self.data = self.root / "data"
        self.log_file = self.root / "server.log"
        if self.as_root:
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._initialised = False

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", SERVER_USER, "--"] if self.as_root else []
        done = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        if not self._initialised:
            self._run(
                str(self.bin / "initdb"),
                "-D", str(self.data),
                "-U", SUPERUSER,
                "-A", "trust",
                "-E", "UTF8",
                "--no-sync",
            )  # fmt: skip
            self._initialised = True
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D", str(self.data),
            "-o", options,
            "-l", str(self.log_file),
            "-w", "-t", "60",
            "start",
        )  # fmt: skip
        return self

    def psql(self, sql: str) -> None:
        """Run one statement as the superuser (CREATE/DROP DATABASE cannot run in a block)."""
        self._run(
            str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER,
            "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql,
        )  # fmt: skip

    def create_database(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop now (fast shutdown: clients are disconnected); ``start`` brings it back."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return ""
