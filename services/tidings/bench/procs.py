"""Child processes of a benchmark run: pinned to a core, weighted over noise, measured, stopped.

Everything here is started by the run itself and stopped by its own PID; nothing else on the
machine is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from tidings.errors import BenchFailed


def cores() -> int:
    return os.cpu_count() or 1


def pin(pid: int, core: int | None) -> None:
    """Keep ``pid`` on one core (no-op on a one-core machine or without a core)."""
    if core is not None and cores() > core:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {core})


def prioritize(pid: int, nice: int) -> None:
    """Give one of our children more CPU weight than other work on a shared machine.

    With autogroup scheduling CPU is shared per session, so the child runs in its own session
    and that group's nice is set (negative values need root; failures are ignored)."""
    if not nice:
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    with contextlib.suppress(OSError), open(f"/proc/{pid}/autogroup", "w") as f:
        f.write(str(nice))


class Child:
    """One child process; JSON lines on stdin/stdout when ``talk`` is set, else a log file."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        core: int | None,
        nice: int = 0,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log: Path | None = None,
        talk: bool = True,
    ) -> None:
        self.argv = list(argv)
        self.log = log
        self._logf: IO[bytes] | None = log.open("ab") if log is not None else None
        if not talk and self._logf is None:
            raise BenchFailed("a silent child needs a log file")
        # taskset at exec: every thread a runtime starts (Go, Node, libuv) inherits the core,
        # and a Go runtime sizes GOMAXPROCS to it; pinning a PID later moves one thread only.
        prefix = (
            ["taskset", "-c", str(core)] if core is not None and shutil.which("taskset") else []
        )
        self.p = subprocess.Popen(
            [*prefix, *self.argv],
            stdin=subprocess.PIPE if talk else subprocess.DEVNULL,
            stdout=subprocess.PIPE if talk else self._logf,
            stderr=subprocess.STDOUT if not talk else self._logf,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,  # its own scheduler group; a terminal's Ctrl-C is ours
        )
        pin(self.p.pid, core)
        prioritize(self.p.pid, nice)
        self.ps = psutil.Process(self.p.pid)
        self._buf = b""

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def send(self, obj: Mapping[str, Any] | str) -> None:
        assert self.p.stdin is not None
        line = obj if isinstance(obj, str) else json.dumps(obj)
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def read(self, timeout: float) -> dict[str, Any]:
        """The next JSON line on stdout, within ``timeout`` seconds."""
        assert self.p.stdout is not None
        fd = self.p.stdout.fileno()
        while b"\n" not in self._buf:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise BenchFailed(f"no answer from {self.argv[0]} within {timeout:g}s")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise BenchFailed(
                    f"{' '.join(self.argv[:3])} exited ({self.p.poll()}){self.tail()}"
                )
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        obj: dict[str, Any] = json.loads(line)
        return obj

    def ask(self, obj: Mapping[str, Any] | str, timeout: float = 10.0) -> dict[str, Any]:
        self.send(obj)
        return self.read(timeout)

    def tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return ":\n" + self.log.read_text(errors="replace")[-1500:]

    def stop(self, quit_line: str | None = None, timeout: float = 5.0) -> None:
        """Ask politely (a quit line, else SIGTERM), then SIGKILL this PID only."""
        if self.alive():
            try:
                if quit_line is not None and self.p.stdin is not None:
                    self.send(quit_line)
                else:
                    self.p.send_signal(signal.SIGTERM)
                self.p.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait(timeout)
        for f in (self.p.stdin, self.p.stdout, self._logf):
            with contextlib.suppress(OSError):
                if f is not None:
                    f.close()


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU seconds of a group of processes and jiffies of every core, at one instant."""

    cpu: dict[str, float]
    cores: list[list[float]]
    wall: float


def cpu_seconds(pids: Iterable[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


def rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += int(psutil.Process(pid).memory_info().rss)
    return total


def core_jiffies() -> list[list[float]]:
    """Per core: user nice system idle iowait irq softirq steal."""
    out: list[list[float]] = []
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                out.append([float(x) for x in line.split()[1:9]])
    return out


def sample(groups: Mapping[str, Iterable[int]], wall: float) -> CpuSample:
    return CpuSample({k: cpu_seconds(v) for k, v in groups.items()}, core_jiffies(), wall)


def busy(a: CpuSample, b: CpuSample) -> dict[str, Any]:
    """CPU% of each group and busy/softirq % of each core between two samples."""
    span = max(1e-6, b.wall - a.wall)
    out: dict[str, Any] = {
        f"{k}_cpu_pct": round(100 * (b.cpu[k] - a.cpu[k]) / span, 1) for k in a.cpu
    }
    for i, (x, y) in enumerate(zip(a.cores, b.cores, strict=False)):
        d = [q - p for p, q in zip(x, y, strict=True)]
        total = max(1.0, sum(d))
        out[f"core{i}_busy_pct"] = round(100 * (total - d[3] - d[4]) / total, 1)
        out[f"core{i}_softirq_pct"] = round(100 * d[6] / total, 1)
    return out
