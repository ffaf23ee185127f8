"""The cyclic garbage collector, kept away from the gateway's long-lived objects.

A full collection walks every object the collector tracks. A gateway holding 19,000
connections has hundreds of thousands, and one full collection stopped it for 610 to 746 ms
(measured under `tidings bench --scenario idle`): a pause every client sees. So the objects
that are meant to live long are moved out of the collector's sight with ``gc.freeze()``: once
at start-up, and again after each wave of new connections. That is safe because a closed
connection leaves no reference cycle behind (``Session.on_ws_disconnected``; a test checks it):
refcounting frees it whether frozen or not. Cycles that die after being frozen would never be
collected, so once in a long while everything is thawed and collected in full.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

CHECK_EVERY = 2.0  # seconds between looks at the number of new connections
FREEZE_AFTER = 500  # new connections since the last freeze that trigger the next one
FULL_EVERY = 3600.0  # seconds between full collections (thaw, collect, freeze again)


def freeze() -> None:
    """Collect what is garbage now, then hide every surviving object from the collector."""
    gc.collect()
    gc.freeze()


class Collector:
    """Freezes after every ``FREEZE_AFTER`` new connections; a full collection every hour."""

    name = "collector"

    def __init__(self, accepted: Callable[[], int]) -> None:
        self._accepted = accepted
        self._frozen_at = 0
        self._full_at = time.monotonic()

    def start(self) -> None:
        freeze()
        self._frozen_at = self._accepted()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY)
            self.step(time.monotonic())

    def step(self, now: float) -> None:
        accepted = self._accepted()
        if now - self._full_at >= FULL_EVERY:
            began = time.perf_counter()
            gc.unfreeze()
            freeze()
            self._full_at, self._frozen_at = now, accepted
            log.info(
                "full garbage collection",
                extra={"ms": round((time.perf_counter() - began) * 1000, 1)},
            )
        elif accepted - self._frozen_at >= FREEZE_AFTER:
            # Only what arrived since the last freeze is walked here: a short pause.
            freeze()
            self._frozen_at = accepted
