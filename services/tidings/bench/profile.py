"""py-spy on the server under test during one step: where its core goes, for the report.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``); the summary
keeps the top functions by own (leaf) samples and by inclusive samples, in percent.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from tidings.bench.procs import Child


def start(pid: int, seconds: float, out: Path, *, core: int | None) -> Child | None:
    """Sample ``pid`` for ``seconds`` (None when py-spy is not installed)."""
    spy = shutil.which("py-spy")
    if spy is None:
        return None
    argv = [spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds)))]
    argv += ["--rate", "200", "--format", "raw", "--function", "--nonblocking"]
    argv += ["--output", str(out)]
    return Child(argv, core=core, log=out.with_suffix(".log"), talk=False)


def summarize(raw: Path, top: int = 15) -> dict[str, Any]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        own[_short(frames[-1])] += n
        for f in {_short(f) for f in frames}:
            inclusive[f] += n
    pct = 100 / max(1, total)
    root = max(inclusive.values(), default=0)  # the start-up chain every sample shares
    return {
        "samples": total,
        "own_pct": [[f, round(c * pct, 1)] for f, c in own.most_common(top)],
        "inclusive_pct": [
            [f, round(c * pct, 1)] for f, c in inclusive.most_common(top + 40) if c < root
        ][:top],
    }


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py:123)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1]}" if where else name
