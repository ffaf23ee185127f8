"""Per-user connection limit across gateways (``TIDINGS_GATEWAY_USER_CONNECTIONS``).

Every gateway shares how many connections each (tenant, user) holds on it, so that a ``hello``
is admitted against the sum over every gateway without asking anyone at that moment: admission
is one dictionary lookup here (this gateway's count, from presence) plus one in the table of the
others' counts, never a network round trip.

What goes over NATS (core, :data:`USERS_SUBJECT`), from one task per gateway:

- every :data:`TICK` seconds, the *absolute* counts here of the users whose count changed since
  the last message (absolute, not deltas: a message applied twice or late-but-in-order is
  harmless);
- at least every :data:`HEARTBEAT` seconds a message even without changes (an empty one): a
  gateway that has not been heard from for :data:`EXPIRE` seconds is taken to be gone and its
  counts stop counting (a crashed or partitioned gateway's share expires by itself);
- every :data:`FULL_EVERY` seconds, and whenever another gateway asks (:data:`SYNC_SUBJECT`: it
  started, reconnected, or saw a gap), the full table in parts of at most :data:`CHUNK` users,
  which replaces what the others hold of this gateway once its last part arrived.

Every message carries a sequence number; core NATS keeps one publisher's order, so a gap means a
lost message (a reconnect, a slow consumer): the receiver asks that gateway for its full table
and uses what it has meanwhile. A gateway stopping cleanly says ``bye`` and its counts go at once.

The sum is eventually consistent: a connection opened on another gateway counts here within
about ``TICK`` plus the NATS latency; concurrent ``hello``s of one user on different gateways
within that window can each be admitted (the limit can be exceeded by the number of such races,
never by more). Docs: docs/security.md.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from tidings.errors import UserConnectionsFull
from tidings.gateway.presence import Presence

log = logging.getLogger(__name__)

USERS_SUBJECT = "tidings.gateway.users"  # counts, from every gateway to every gateway
SYNC_SUBJECT = "tidings.gateway.users.sync"  # "send me your full table" (a gateway id or all)
TICK = 0.25  # seconds between two messages with changes
HEARTBEAT = 1.0  # a message at least this often, changes or not
EXPIRE = 3.0  # a gateway not heard from for this long no longer counts
FULL_EVERY = 10.0  # the full table this often (repairs what a lost message missed)
CHUNK = 2000  # users per message (64-character ids: far below NATS's 1 MB payload limit)
_SYNC_ASK_EVERY = 1.0  # seconds between two requests for one gateway's full table
_MAX_COUNT = 1 << 20  # a count beyond this is not a gateway's

Key = tuple[str, str]


@dataclass(slots=True)
class _Peer:
    """What this gateway knows of another one."""

    boot: str
    seq: int
    seen: float  # monotonic time of its latest message
    counts: dict[Key, int] = field(default_factory=dict)
    pending: dict[Key, int] | None = None  # a full table being received
    asked: float = -_SYNC_ASK_EVERY  # when its full table was last asked for


class UserLimit:
    """The limit, this gateway's shared counts, and the others' (a ``lifecycle.Part``)."""

    name = "user-limit"

    def __init__(
        self,
        gateway_id: str,
        presence: Presence,
        *,
        limit: int,
        tick: float = TICK,
        expire: float = EXPIRE,
    ) -> None:
        self.id = gateway_id
        self.boot = secrets.token_hex(6)  # tells a restarted gateway (same id) from its past
        self.presence = presence
        self.limit = limit
        self.tick = tick
        self.expire = expire
        self._nc: NATS | None = None
        self._dirty: set[Key] = set()
        self._seq = 0
        self._sent_at = 0.0
        self._full_at = 0.0
        self._full_wanted = True
        self._peers: dict[str, _Peer] = {}
        self._remote: dict[Key, int] = {}  # the sum over every live peer

    # -- admission (the only question on a connection's path) ----------------------------------

    def count(self, tenant: str, user: str) -> int:
        """Connections of ``(tenant, user)`` over every gateway, as known here now."""
        return self.presence.user(tenant, user) + self._remote.get((tenant, user), 0)

    def admit(self, tenant: str, user: str) -> None:
        """Raise :class:`UserConnectionsFull` when the user holds ``limit`` connections."""
        held = self.count(tenant, user)
        if held >= self.limit:
            raise UserConnectionsFull(
                f"user {user} of tenant {tenant} holds {held} connections (limit {self.limit})"
            )

    def changed(self, tenant: str, user: str) -> None:
        """A connection of ``(tenant, user)`` joined or left here: share it at the next tick."""
        self._dirty.add((tenant, user))

    @property
    def gateways(self) -> int:
        """The other gateways counted now."""
        return len(self._peers)

    # -- NATS ----------------------------------------------------------------------------------

    async def listen(self, nc: NATS) -> None:
        """Follow the other gateways (again, on a new client) and ask for their full tables."""
        self._nc = nc
        await nc.subscribe(USERS_SUBJECT, cb=self._on_counts)
        await nc.subscribe(SYNC_SUBJECT, cb=self._on_sync)
        await self.resync()

    async def resync(self) -> None:
        """After a (re)connect: every gateway sends its full table, and so does this one."""
        self._full_wanted = True
        await self._ask(None)

    async def close(self) -> None:
        """Say ``bye``: the others stop counting this gateway at once."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        try:
            await nc.publish(USERS_SUBJECT, orjson.dumps({"g": self.id, "b": self.boot, "bye": 1}))
            await nc.flush(timeout=1)
        except (NatsError, TimeoutError):
            log.debug("user counts: bye not sent")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            self.expire_peers(time.monotonic())
            await self._send()

    async def _send(self) -> None:
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        now = time.monotonic()
        try:
            if self._full_wanted or now - self._full_at >= FULL_EVERY:
                self._full_wanted = False
                self._full_at = now
                await self._send_full()
            elif self._dirty or now - self._sent_at >= HEARTBEAT:
                dirty, self._dirty = self._dirty, set()
                entries = [[t, u, self.presence.user(t, u)] for t, u in dirty]
                for i in range(0, max(len(entries), 1), CHUNK):
                    await self._publish({"c": entries[i : i + CHUNK]})
        except NatsError as exc:
            # Lost while sending: the others see the gap and ask for the full table.
            log.debug("user counts not sent: %s", exc)

    async def _send_full(self) -> None:
        self._dirty.clear()  # the table below holds them; later changes go in the next tick
        entries = [
            [tenant, user, n]
            for tenant, users in self.presence.tenants.items()
            for user, n in users.items()
        ]
        parts = max(1, -(-len(entries) // CHUNK))
        for part in range(parts):
            chunk = entries[part * CHUNK : (part + 1) * CHUNK]
            await self._publish({"c": chunk, "part": part, "last": part == parts - 1})

    async def _publish(self, body: dict[str, Any]) -> None:
        assert self._nc is not None
        self._seq += 1
        await self._nc.publish(
            USERS_SUBJECT, orjson.dumps({"g": self.id, "b": self.boot, "s": self._seq, **body})
        )
        self._sent_at = time.monotonic()

    async def _ask(self, gateway: str | None) -> None:
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        try:
            await nc.publish(SYNC_SUBJECT, orjson.dumps({"g": gateway}))
        except NatsError as exc:
            log.debug("full table not asked for: %s", exc)

    async def _on_sync(self, msg: Msg) -> None:
        try:
            body = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            return
        if isinstance(body, dict) and body.get("g") in (None, self.id):
            self._full_wanted = True  # coalesced: one full table at the next tick

    # -- the others' counts --------------------------------------------------------------------

    async def _on_counts(self, msg: Msg) -> None:
        try:
            body = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(body, dict):
            return
        gateway, boot = body.get("g"), body.get("b")
        if not isinstance(gateway, str) or not isinstance(boot, str) or gateway == self.id:
            return
        if body.get("bye"):
            self._drop(gateway)
            return
        ask = self.receive(gateway, boot, body, time.monotonic())
        if ask:
            await self._ask(gateway)

    def receive(self, gateway: str, boot: str, body: dict[str, Any], now: float) -> bool:
        """Apply one message of ``gateway``; True when its full table should be asked for."""
        seq, entries = body.get("s"), _entries(body.get("c"))
        if isinstance(seq, bool) or not isinstance(seq, int) or entries is None:
            return False
        part, last = body.get("part"), body.get("last") is True
        peer = self._peers.get(gateway)
        fresh = peer is None or peer.boot != boot
        if peer is None or peer.boot != boot:
            self._drop(gateway)  # a restarted gateway: what it held before is gone
            peer = self._peers[gateway] = _Peer(boot=boot, seq=seq - 1, seen=now)
        gap = seq != peer.seq + 1
        peer.seq, peer.seen = seq, now
        if gap:
            peer.pending = None  # a full table with a hole in it is no full table
        if part == 0:
            peer.pending = {}
        orphan = part is not None and peer.pending is None  # a table's part without its first
        if peer.pending is not None:
            for key, n in entries:
                peer.pending[key] = n
        if part is None or peer.pending is None:
            for key, n in entries:
                self._set(peer, key, n)
        if last and peer.pending is not None:
            self._replace(peer, peer.pending)
            peer.pending = None
        # Something was missed (a gap, an orphan part, a newcomer's change): what is held may be
        # wrong until its next full table, which is asked for (not too often).
        missed = gap or orphan or (fresh and part != 0)
        if missed and now - peer.asked >= _SYNC_ASK_EVERY:
            peer.asked = now
            return True
        return False

    def expire_peers(self, now: float) -> None:
        """Forget the gateways not heard from for ``expire`` seconds."""
        for gateway in [g for g, p in self._peers.items() if now - p.seen > self.expire]:
            log.info("user counts: gateway %s expired", gateway)
            self._drop(gateway)

    def _set(self, peer: _Peer, key: Key, n: int) -> None:
        old = peer.counts.pop(key, 0)
        if n:
            peer.counts[key] = n
        self._add(key, n - old)

    def _replace(self, peer: _Peer, counts: dict[Key, int]) -> None:
        for key, n in peer.counts.items():
            self._add(key, -n)
        peer.counts = {k: n for k, n in counts.items() if n}
        for key, n in peer.counts.items():
            self._add(key, n)

    def _drop(self, gateway: str) -> None:
        peer = self._peers.pop(gateway, None)
        if peer is not None:
            for key, n in peer.counts.items():
                self._add(key, -n)

    def _add(self, key: Key, delta: int) -> None:
        if not delta:
            return
        total = self._remote.get(key, 0) + delta
        if total > 0:
            self._remote[key] = total
        else:
            self._remote.pop(key, None)


def _entries(value: object) -> list[tuple[Key, int]] | None:
    """``[[tenant, user, count], ...]`` checked; None when anything in it is not."""
    if not isinstance(value, list) or len(value) > CHUNK:
        return None
    out: list[tuple[Key, int]] = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 3):
            return None
        tenant, user, n = item
        if not (isinstance(tenant, str) and isinstance(user, str)):
            return None
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= _MAX_COUNT:
            return None
        out.append(((tenant, user), n))
    return out
