"""One module per fault scenario: ``NAME``, ``FAULT`` (one line: what is done to the stack)
and ``async def run(directory, *, clients, tenants, rate, ...) -> (row, problems)``; the row
holds the report's figures (:meth:`tests.support.fault_load.Load.finish`), ``problems`` what
went wrong (empty when every client's view is exact). ``SCENARIOS`` lists them in run order."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, cast

from benchmarks.faults.scenarios import freeze, gateway_kill, leader_kill, partition, rolling, storm


class Scenario(Protocol):
    NAME: str
    FAULT: str

    async def run(self, directory: Path, /, **size: Any) -> tuple[dict[str, Any], list[str]]: ...


def _as_scenario(module: ModuleType) -> Scenario:
    return cast(Scenario, module)


SCENARIOS: dict[str, Scenario] = {
    m.NAME: _as_scenario(m) for m in (leader_kill, freeze, partition, gateway_kill, rolling, storm)
}
