"""Bringing a connection up to date: the resume after a hello, and the heal after NATS returns.

A connection resumes from ``since`` (the last seq it saw) when the epoch matches: what the
tenant's and the broadcast windows hold after it is written first (backfilled from JetStream
when the window does not reach back far enough), then what arrived live meanwhile, without
what was already written. When that is impossible the client gets a ``reset``.

Live messages are at-most-once: a NATS loss makes everything held untrusted (:meth:`lost`),
and every connection waits, syncing, for the heal (:meth:`heal`) once NATS is back.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter

from tidings import protocol as p
from tidings.auth import Claims
from tidings.codes import CloseCode, ErrorCode
from tidings.errors import Unavailable
from tidings.gateway.connection import Connection, State
from tidings.gateway.fanout import Hub
from tidings.gateway.heal import close_all, send_away
from tidings.gateway.live import Live
from tidings.gateway.registry import Registry
from tidings.gateway.retry import TRANSIENT
from tidings.lifecycle import spawn
from tidings.subjects import BROADCAST_TENANT

log = logging.getLogger(__name__)


class Resume:
    """The resume step of one gateway (its live side, hub, registry and stream epoch)."""

    def __init__(
        self,
        live: Live,
        hub: Hub,
        registry: Registry,
        *,
        epoch: str,
        outcomes: Counter,
        heal_timeout: float = 15.0,
    ) -> None:
        self.live = live
        self.hub = hub
        self.registry = registry
        self.epoch = epoch
        self.outcomes = outcomes  # resumes by outcome: memory, jetstream, not_recovered
        self.heal_timeout = heal_timeout  # how long a resume waits for the heal
        self._resyncing: set[Connection] = set()

    async def resync(
        self,
        conn: Connection,
        *,
        since: int | None,
        epoch: str | None,
        claims: Claims,
        first: bool,
        inbox: dict[str, Any] | None = None,
    ) -> bool:
        """Bring a SYNCING connection up to date and make it LIVE; True when nothing is missing.

        Live frames for it are buffered meanwhile; what JetStream or the window holds after
        ``since`` is written first, then the buffer without what was already written. One
        resync per connection at a time: a heal leaves alone a connection whose resync (a
        hello waiting for that heal) is under way, and that resync runs again when NATS
        dropped during it and a heal has passed meanwhile.
        """
        if conn in self._resyncing:
            return False  # the resync under way brings it up to date
        self._resyncing.add(conn)
        try:
            while True:
                result = await self._resync_once(
                    conn, since=since, epoch=epoch, claims=claims, first=first, inbox=inbox
                )
                if result is not None:
                    return result
                if first:
                    raise Unavailable("NATS connection lost during the resume; retry")
                if not (self.registry.healed and conn.state is State.SYNCING):
                    return False  # stays syncing: the next heal resumes it
                since = conn.last_seq  # a heal passed by it meanwhile: from where it is
        finally:
            self._resyncing.discard(conn)

    async def _resync_once(
        self,
        conn: Connection,
        *,
        since: int | None,
        epoch: str | None,
        claims: Claims,
        first: bool,
        inbox: dict[str, Any] | None = None,
    ) -> bool | None:
        """One try of :meth:`resync`; None when NATS dropped while it ran (nothing written)."""
        live, registry = self.live, self.registry
        if not await registry.wait_healed(self.heal_timeout):
            # Disarmed windows would answer a resume point well inside the bound with a reset:
            # a transient state must never become a loss. Try again (here or elsewhere).
            if first:
                raise Unavailable("the gateway is healing its NATS connection; retry")
            return False  # stays syncing: the heal resumes it
        generation = registry.generation
        recovered = False
        reason = p.ResetReason.OUT_OF_RANGE
        try:
            await live.ensure(conn.tenant)
            if since is not None and epoch == self.epoch and await self._past_the_end(since):
                # A point the stream never reached (a forged or corrupted one): answering it
                # `recovered` would make the client skip everything up to it (issue 14).
                self.outcomes.labels("not_recovered").inc()
            elif since is not None and epoch == self.epoch:
                had_memory = live.windows[conn.tenant].covers(since) and live.windows[
                    BROADCAST_TENANT
                ].covers(since)
                recovered = await live.cover(conn.tenant, since) and await live.cover(
                    BROADCAST_TENANT, since
                )
                self.outcomes.labels(
                    "not_recovered" if not recovered else "memory" if had_memory else "jetstream"
                ).inc()
            elif since is not None:
                reason = p.ResetReason.EPOCH_CHANGED
                self.outcomes.labels("not_recovered").inc()
        except TRANSIENT as exc:
            if first:
                # Retried for the whole bound already; a retry later costs the client nothing,
                # a reset would cost it what it missed.
                log.warning("resume refused: %r", exc, extra={"connection": conn.id})
                raise Unavailable("JetStream did not answer the resume in time; retry") from None
            # JetStream stayed unavailable for the whole bound (no quorum): the client resumes
            # from its own last seq later, here or elsewhere, instead of a reset (a loss).
            log.warning("heal resume failed, sent away: %r", exc, extra={"connection": conn.id})
            self._send_away(conn)
            return False
        except Exception:
            log.exception("resume failed", extra={"connection": conn.id})
            reason = p.ResetReason.REPLAY_FAILED
            recovered = False
        if conn.state is not State.SYNCING:
            return False  # closed or draining meanwhile
        if generation != registry.generation or not registry.nats_connected:
            # NATS dropped while this ran: what it read may have a hole. The connection stays
            # syncing and is resumed from where it really is.
            return None
        # What the fan-out still holds in its batch is in the windows already: let it reach
        # `pending` now, or it would be written again once the connection is live.
        self.hub.flush()
        head = live.head
        if first:
            conn.write_control(
                p.encode(
                    p.Welcome(
                        connection=conn.id,
                        tenant=conn.tenant,
                        user=conn.user,
                        roles=tuple(sorted(claims.roles)),
                        rooms=tuple(sorted(conn.rooms)),
                        seq=head,
                        epoch=self.epoch,
                        recovered=recovered,
                        expires_at=claims.expires_at,
                        inbox=inbox,
                    )
                )
            )
        if recovered:
            assert since is not None
            conn.last_seq = since
            muted = conn.muted
            items = live.windows[conn.tenant].after(since, conn.rooms, muted) + live.windows[
                BROADCAST_TENANT
            ].after(since, conn.rooms, muted)
            items.sort()
            conn.write_items(items)
        elif since is not None or not first:
            conn.write_control(p.encode(p.Reset(seq=head, epoch=self.epoch, reason=reason)))
            conn.last_seq = max(conn.last_seq, head)
        else:
            conn.last_seq = head
        pending, conn.pending = conn.pending, []
        conn.write_items(pending)
        synced = head
        if recovered:
            # Only as far as both of its windows are complete: `head` may be ahead of messages
            # of this tenant still queued in the NATS client, and a client trusts `synced`.
            tenant, everyone = live.windows[conn.tenant], live.windows[BROADCAST_TENANT]
            synced = min(tenant.last_seq, everyone.last_seq)
        conn.write_control(p.encode(p.Synced(seq=max(synced, conn.last_seq))))
        conn.move(State.LIVE)
        return recovered

    async def _past_the_end(self, since: int) -> bool:
        """True when ``since`` is beyond the stream's last seq. ``head`` is a lower bound of
        it (a message may still be on its way here), so only a point above it costs a read."""
        return since > self.live.head and since > await self.live.last_seq()

    def _send_away(self, conn: Connection) -> None:
        member = self.registry.sessions.get(conn)
        if member is not None:
            send_away([member], spread=0.0, reason="nats_unavailable")
            close_all([member], code=CloseCode.TRY_AGAIN_LATER, error=ErrorCode.UNAVAILABLE)

    # -- NATS loss and heal ----------------------------------------------------------------------

    def lost(self) -> None:
        """Live messages are at-most-once: from now on nothing held is trusted."""
        registry = self.registry
        registry.nats_connected = False
        registry.set_healed(False)
        if registry.stopping:
            return
        registry.generation += 1  # resyncs started before this point must not go live
        self.live.disarm_all()
        for conn in list(registry.sessions):
            if conn.state is State.LIVE:
                conn.move(State.SYNCING)
        log.warning("NATS disconnected; connections wait for the heal")

    def heal(self) -> None:
        """The re-arm is done: the gateway is healed; resume every syncing connection from
        where it really is."""
        self.registry.set_healed(True)
        for conn, session in list(self.registry.sessions.items()):
            if conn.state is State.SYNCING and session.claims is not None:
                spawn(
                    self.resync(
                        conn,
                        since=conn.last_seq,
                        epoch=self.epoch,
                        claims=session.claims,
                        first=False,
                    )
                )
