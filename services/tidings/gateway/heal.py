"""Sending connections away: the drain's path, and the heal bound that reuses it.

After a NATS loss the gateway heals (the NATS link's ``on_up`` step re-arms every hosted tenant,
retried until it succeeds). Until then its connections wait, syncing, and receive nothing. A
heal that cannot finish (JetStream unavailable for longer than ``TIDINGS_GATEWAY_HEAL_TIMEOUT``)
must not hold them silent: :class:`HealWatch` tells each to reconnect, spread over a short
period, as a drain does, and closes whoever is still there (1013); readiness is already false,
so the ingress sends them to a gateway that can deliver.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from tidings import protocol as p
from tidings.codes import CloseCode, ErrorCode
from tidings.gateway.connection import State
from tidings.gateway.registry import Member, Registry

log = logging.getLogger(__name__)


def send_away(members: Sequence[Member], *, spread: float, reason: str) -> int:
    """Tell every live or syncing connection to reconnect, the delays spread evenly over
    ``spread`` seconds so they do not all land elsewhere at once; how many were told."""
    told = 0
    for i, session in enumerate(members):
        conn = session.conn
        if conn.state in (State.LIVE, State.SYNCING):
            delay_ms = int(spread * 1000 * i / max(1, len(members)))
            conn.write_control(p.encode(p.ReconnectFrame(delay_ms=delay_ms, reason=reason)))
            told += 1
    return told


def close_all(members: Sequence[Member], *, code: CloseCode, error: ErrorCode) -> None:
    """Close whoever is still connected (the end of a drain, or of a failed heal)."""
    for session in members:
        if session.conn.state is not State.CLOSED:
            session.conn.move(State.DRAINING)
            session.close(int(code), error.value)


class HealWatch:
    """A supervised part: once a NATS loss stays unhealed for ``timeout`` seconds, the gateway's
    connections are sent away (``reconnect`` frames over ``spread`` seconds, then closed)."""

    name = "heal-watch"

    def __init__(
        self, registry: Registry, *, timeout: float, spread: float = 1.0, every: float = 0.25
    ) -> None:
        self.registry = registry
        self.timeout = timeout
        self.spread = spread
        self.every = every
        self.sent_away = 0  # connections told to go, over the process's life
        self._handled: float | None = None  # the loss (its lost_at) already acted on

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self.step(time.monotonic())

    async def step(self, now: float) -> None:
        registry = self.registry
        lost_at = registry.lost_at
        if lost_at is None or registry.healed or registry.draining or registry.stopping:
            return
        if now - lost_at < self.timeout or self._handled == lost_at:
            return
        self._handled = lost_at
        members = registry.members()
        told = send_away(members, spread=self.spread, reason="nats_unavailable")
        self.sent_away += told
        log.warning(
            "NATS not healed in time; connections sent away",
            extra={"seconds": round(now - lost_at, 1), "connections": told},
        )
        await asyncio.sleep(self.spread + 0.5)  # the last one told has had its moment
        close_all(members, code=CloseCode.TRY_AGAIN_LATER, error=ErrorCode.UNAVAILABLE)
