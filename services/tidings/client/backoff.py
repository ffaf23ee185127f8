"""How long to wait before trying again: exponential backoff with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tidings.errors import InvalidField

_rng = random.Random()  # noqa: S311 -- jitter spreads reconnects; it protects no secret


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits ``uniform(0, min(max, base·2ⁿ))``.

    Full jitter spreads a reconnect storm (every client of a dead gateway at once) evenly over
    the window instead of in waves; ``healthy_after`` seconds connected resets the attempt count.
    """

    base: float = 0.5
    max: float = 30.0
    factor: float = 2.0
    healthy_after: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.max:
            raise InvalidField("need 0 < base <= max", field="backoff")
        if self.factor < 1:
            raise InvalidField("factor must be at least 1", field="backoff.factor")

    def cap(self, attempt: int) -> float:
        """The upper bound of the delay before retry number ``attempt`` (0-based)."""
        return min(self.max, self.base * self.factor ** min(max(attempt, 0), 64))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        return (rng or _rng).uniform(0.0, self.cap(attempt))
