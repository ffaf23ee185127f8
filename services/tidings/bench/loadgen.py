"""The load generator: several ``wsload`` C processes holding the clients, on their own core.

``wsload.c`` (and ``jspub.c``, the JetStream publisher) ship in this package and are compiled on
first use (``cc -O2``) into a cache directory keyed by the source's hash. One process holds at
most ``per_process`` connections (a process may open 20,000 descriptors here), so big runs
spread over several.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tidings.bench.procs import Child
from tidings.errors import BenchFailed

SOURCE = Path(__file__).with_name("wsload.c")
JSPUB_SOURCE = Path(__file__).with_name("jspub.c")
BUCKET_MS = 0.02  # wsload's histogram resolution


def build(cache: Path | None = None, source: Path = SOURCE) -> Path:
    """Compile one of the package's C programs once per source version; returns the binary."""
    src = source.read_bytes()
    tag = hashlib.sha256(src).hexdigest()[:12]
    base = cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tidings"
    binary = base / f"{source.stem}-{tag}"
    if binary.exists():
        return binary
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise BenchFailed(f"a C compiler (cc) is needed to build the benchmark's {source.name}")
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f"{binary.name}.{os.getpid()}.tmp"  # two builds at once must not share it
    subprocess.run([cc, "-O2", "-o", str(tmp), str(source)], check=True)
    tmp.replace(binary)
    return binary


class Fleet:
    """All load-client processes of one sweep; counters and histograms summed over them.

    ``command`` starts one process (``wsload``, or ``node recv.js``, the cross-check receiver
    built on the peers' official clients); both take ``PROTO PORT SPECFILE TIMEOUT`` and
    answer the same JSON lines."""

    def __init__(
        self,
        command: Sequence[str],
        proto: str,
        port: int,
        specs: Sequence[str],
        *,
        workdir: Path,
        core: int | None,
        nice: int,
        per_process: int,
        connect_timeout: float,
    ) -> None:
        self.specs = list(specs)
        self.procs: list[Child] = []
        chunks = max(1, -(-len(specs) // per_process))
        size = -(-len(specs) // chunks)
        for i in range(chunks):
            part = self.specs[i * size : (i + 1) * size]
            spec_file = workdir / f"{proto}-clients-{i}.txt"
            spec_file.write_text("\n".join(part) + "\n")
            argv = [*command, proto, str(port), str(spec_file), str(connect_timeout)]
            self.procs.append(Child(argv, core=core, nice=nice, log=workdir / f"wsload-{i}.log"))
        self.connect_timeout = connect_timeout

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def wait_connected(self) -> dict[str, Any]:
        """Wait until every process says its connections are ready (or gave up)."""
        started = time.monotonic()
        totals: dict[str, Any] = {"conns": 0, "ready": 0, "failed": 0, "closed": 0, "errors": 0}
        for p in self.procs:
            left = self.connect_timeout + 30 - (time.monotonic() - started)
            hello = p.read(max(1.0, left))
            for k in totals:
                totals[k] += int(hello.get(k, 0))
        totals["seconds"] = round(time.monotonic() - started, 2)
        return totals

    def report(self) -> dict[str, Any]:
        """Counters of every process, summed; per step under ``steps``."""
        total: dict[str, Any] = {"steps": {}}
        for p in self.procs:
            r = p.ask("report", timeout=30)
            for k, v in r.items():
                if isinstance(v, int):
                    total[k] = total.get(k, 0) + v
            for s in r["steps"]:
                acc = total["steps"].setdefault(
                    s["step"],
                    {
                        "received": 0,
                        "dups": 0,
                        "out_of_order": 0,
                        "gaps": 0,
                        "max_ns": 0,
                        "sum_us": 0,
                    },
                )
                for k in ("received", "dups", "out_of_order", "gaps", "sum_us"):
                    acc[k] += s[k]
                acc["max_ns"] = max(acc["max_ns"], s["max_ns"])
        return total

    def histogram(self, step: int) -> dict[int, int]:
        merged: dict[int, int] = {}
        for p in self.procs:
            for bucket, count in p.ask(f"hist {step}", timeout=30)["hist"]:
                merged[bucket] = merged.get(bucket, 0) + count
        return merged

    def stop(self) -> None:
        for p in self.procs:
            p.stop("quit")


def percentiles(hist: dict[int, int], qs: Sequence[float]) -> list[float]:
    """Upper bucket edges (ms) at each quantile of a merged histogram."""
    total = sum(hist.values())
    if not total:
        return [0.0 for _ in qs]
    out: list[float] = []
    items = sorted(hist.items())
    for q in qs:
        target = min(total - 1, int(q * total))
        acc = 0
        for bucket, count in items:
            acc += count
            if acc > target:
                out.append(round((bucket + 1) * BUCKET_MS, 3))
                break
    return out
