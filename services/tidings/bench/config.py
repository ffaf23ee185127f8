"""What one ``tidings bench`` run is asked to do: the scenario, sizes, rates, cores and budget."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tidings.bench.layout import Layout


@dataclass
class BenchConfig:
    """Everything a run needs; defaults are the issue's one-room scenario."""

    scenario: str = "one-room"
    clients: int = 1000
    rooms: int = 1
    rates: list[float] = field(default_factory=lambda: [100, 200, 500, 1000, 2000])
    seconds: float = 5.0
    systems: list[str] = field(default_factory=lambda: ["tidings", "nats", "socketio-node"])
    rounds: int = 1
    p99_bound_ms: float = 50.0
    user_share: float = 0.0
    publishers: int = 2
    per_process: int = 5000
    server_core: int | None = 0
    gen_core: int | None = 1
    nice: int = -10
    storage: str = "file"
    window: float | None = None
    publisher: str = "c"  # Tidings' publishers: "c" (jspub) or "python" (publish_many)
    idle_clients: int = 0
    idle_only: bool = False
    connect_timeout: float = 120.0
    max_minutes: float = 30.0
    profile_rate: float | None = None  # py-spy the Tidings gateway during this step
    out: Path = Path("benchmarks/results")

    @property
    def layout(self) -> Layout:
        return Layout(self.clients, self.rooms, self.user_share)


def config_dict(cfg: BenchConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["out"] = str(cfg.out)
    return d
