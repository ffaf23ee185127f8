"""New connections per second, per client address and per tenant: token buckets, bounded.

A connect costs a gateway a token check, a resume and memory; a client (or a tenant's
misbehaving page) reconnecting in a tight loop must not take that from everyone else (issue 14
item 3). Each key (an IP, a tenant) has a bucket of ``burst`` connects refilled at ``rate`` per
second. The buckets are kept in insertion order and at most :data:`MAX_KEYS` of them: a full
bucket carries no information, so when the table is full the oldest are dropped, which at worst
gives a dropped key a fresh burst. Memory stays bounded whatever the addresses are.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_KEYS = 100_000  # ~100 bytes each: ~10 MB at most


class ConnectRate:
    """Token buckets by key; :meth:`take` answers 0.0 (allowed) or the seconds to wait."""

    __slots__ = ("_buckets", "_clock", "burst", "rate", "refused")

    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate  # connects per second per key; 0: no limit
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self.refused = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Spend one connect of ``key``: 0.0 when allowed, else seconds until one is."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now)
            return 0.0
        self._store(key, tokens, now)
        self.refused += 1
        return (1.0 - tokens) / self.rate

    def _store(self, key: str, tokens: float, now: float) -> None:
        buckets = self._buckets
        if len(buckets) >= MAX_KEYS:
            for old in list(buckets)[: MAX_KEYS // 10]:  # the least recently used tenth
                del buckets[old]
        buckets[key] = (tokens, now)  # re-inserted: most recently used last
