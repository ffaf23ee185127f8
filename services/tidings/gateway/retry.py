"""What a JetStream call answers while the cluster is electing a leader, and waiting that out.

A node lost (killed, frozen, cut off) costs a stream leader election (~5 s measured) and, when
it led the JetStream meta group, a meta election: meanwhile requests time out, find no responder
or are refused as unavailable. The gateway's heal, its resumes and its start retry those within
a bound instead of failing (a start that raised sent a gateway into a crash loop for the length
of an election).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from nats.errors import ConnectionReconnectingError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

from tidings.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

PAUSE = 0.5  # seconds between tries

# What a leader election, a lagging replica or a reconnect answers for a while: worth another try.
TRANSIENT: tuple[type[BaseException], ...] = (
    TimeoutError,
    NatsTimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
    ConnectionReconnectingError,
    Unavailable,
)


async def until_answered(
    step: Callable[[], Awaitable[T]],
    *,
    within: float,
    what: str,
    about: Mapping[str, object] | None = None,
) -> T:
    """``step()``, tried again PAUSE seconds after a :data:`TRANSIENT` error until
    ``within`` seconds have passed; then the last error rises. ``what`` names it in the log
    line of each retry ("<what>; retrying"), ``about`` adds fields to that line."""
    deadline = time.monotonic() + within
    tries = 0
    while True:
        tries += 1
        try:
            return await step()
        except TRANSIENT as exc:
            if time.monotonic() + PAUSE >= deadline:
                raise
            log.warning(
                "%s; retrying", what, extra={**(about or {}), "try": tries, "error": repr(exc)}
            )
        await asyncio.sleep(PAUSE)
