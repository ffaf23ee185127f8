"""How a :class:`~tidings.client.subscriber.Subscriber` connects, resumes, retries and buffers.

One frozen object instead of a long keyword list: it is checked once when built, can be shared
by many subscribers and changed with ``dataclasses.replace``. The token is not an option: it is
passed to the subscriber itself (``token`` or ``get_token``).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tidings import protocol as p
from tidings.client.backoff import Backoff
from tidings.client.subscriber_events import Event
from tidings.errors import InvalidField

GetToken = Callable[[], Awaitable[str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriberOptions:
    """Every field has a default; ``SubscriberOptions()`` suits a long-lived application."""

    rooms: tuple[str, ...] = ()
    """Named rooms (``room:<name>``) to join in every ``hello``, besides the token's own."""
    since: int | None = None
    """Resume after this ``seq`` (a ``position`` saved earlier); needs ``epoch``."""
    epoch: str | None = None
    """The stream epoch ``since`` belongs to; a different one is answered with a reset."""
    backoff: Backoff = field(default_factory=Backoff)
    """Reconnect delays: 0.5 s doubling to 30 s, full jitter."""
    max_attempts: int | None = None
    """Give up (:class:`~tidings.client.errors.GaveUp`) after this many failed attempts in a
    row; ``None`` retries for ever."""
    on_event: Callable[[Event], None] | None = None
    """Called with every connection event as it happens (besides ``Subscriber.events()``)."""
    max_pending: int = 4096
    """Notifications queued for a slow reader before the socket stops being read."""
    max_events: int = 256
    """Events kept for ``Subscriber.events()``; the oldest are dropped beyond."""
    max_frame_bytes: int = 64 << 20
    """The largest server frame accepted (the protocol asks for at least 4 MiB)."""
    open_timeout: float = 10.0
    """Seconds for the TCP, TLS and WebSocket handshake."""
    ping_interval: float = 20.0
    """Seconds between WebSocket pings; a ping unanswered as long drops the connection."""
    request_timeout: float = 10.0
    """Seconds a request (subscribe, ping, refresh) waits for its answer by default."""
    refresh_lead: float = 30.0
    """At most this many seconds before ``exp`` a fresh token is sent (with ``get_token``)."""
    max_auth_retries: int = 1
    """Fresh tokens tried after a 4001/4401 refusal before giving up (protocol.md §12)."""
    rng: random.Random | None = None
    """The jitter's random source; give a seeded one for reproducible delays in tests."""

    def __post_init__(self) -> None:
        if (self.since is None) != (self.epoch is None):
            raise InvalidField("since and epoch go together", field="since")
        if self.max_pending < 1 or self.max_events < 1:
            raise InvalidField("queues need room for at least one item", field="max_pending")
        rooms = tuple(dict.fromkeys(p.check_named_room(r, field="rooms") for r in self.rooms))
        object.__setattr__(self, "rooms", rooms)  # frozen: normalised once, here
