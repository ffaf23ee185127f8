"""Counting the JetStream reads a fault causes, from the outside.

Every JetStream API call is a NATS request on ``$JS.API.…`` in the account, so a plain
subscriber sees each one the gateways make without any help from them. A gateway's backfill
(``tidings.gateway.replay.read_reach``) is a series of direct gets
(``$JS.API.DIRECT.GET.<stream>``) whose reply subject ``_INBOX.<gateway>.<read>.<try>`` names
the gateway's live side and the read; the filtered ones name the tenant (``next_by_subj``). So
the reads can be counted per gateway and per tenant: the bound a reconnect storm must respect
is one backfill per tenant per gateway, not one per client. An ephemeral consumer with a
subject filter (what backfills were before) is counted as a backfill too.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field

import nats
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from tests.support.waiting import at_server
from tidings.subjects import BROADCAST_PREFIX, TENANT_PREFIX

API = "$JS.API.>"
CREATE = "$JS.API.CONSUMER.CREATE."
DIRECT = "$JS.API.DIRECT.GET."
NOTIFICATIONS = "TIDINGS"  # the stream's name (TIDINGS_STREAM_NAME's default, as the tests use)


def _tenant_of(filters: list[str]) -> str:
    """``tenant.acme.>`` → ``acme``; ``broadcast.>`` → ``broadcast`` (tidings.subjects)."""
    for f in filters:
        parts = f.split(".")
        if parts[0] == TENANT_PREFIX and len(parts) >= 2:
            return parts[1]
        if parts[0] == BROADCAST_PREFIX:
            return BROADCAST_PREFIX
    return ",".join(filters)


@dataclass(slots=True)
class JetStreamReads:
    """JetStream API requests seen since :meth:`start` (or the last :meth:`reset`)."""

    calls: Counter[str] = field(default_factory=Counter)  # by API verb: STREAM.INFO, ...
    # consumers created on the notification stream (a gateway's revocation bucket, KV, has its own)
    notification_consumers: int = 0
    backfills: Counter[tuple[str, str]] = field(default_factory=Counter)  # (requester, tenant)
    direct_gets: int = 0  # requests, a backfill's several included
    _reads: set[str] = field(default_factory=set)  # direct-get reads seen: _INBOX.<gw>.<read>
    nc: NATS | None = None
    sub: Subscription | None = None

    async def start(self, urls: list[str]) -> JetStreamReads:
        self.nc = await nats.connect(
            urls, reconnect_time_wait=0.2, max_reconnect_attempts=-1, ping_interval=1
        )
        self.sub = await self.nc.subscribe(API, cb=self._on_request)
        await at_server(self.nc)
        return self

    async def _on_request(self, msg: Msg) -> None:
        verb = msg.subject.removeprefix("$JS.API.").split(".")
        self.calls[".".join(verb[:2])] += 1
        if msg.subject.startswith(DIRECT):
            self._on_direct_get(msg)
            return
        if not msg.subject.startswith(CREATE):
            return
        if msg.subject.removeprefix(CREATE).split(".")[0] != NOTIFICATIONS:
            return  # e.g. the gateways' revocation bucket (KV) followed by an ordered consumer
        self.notification_consumers += 1
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            config = orjson.loads(msg.data).get("config", {})
            filters = config.get("filter_subjects") or (
                [config["filter_subject"]] if config.get("filter_subject") else []
            )
            if filters and not config.get("durable_name"):
                requester = ".".join((msg.reply or "").split(".")[:2])  # _INBOX.<connection>
                self.backfills[(requester, _tenant_of(filters))] += 1

    def _on_direct_get(self, msg: Msg) -> None:
        self.direct_gets += 1
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            subject = orjson.loads(msg.data).get("next_by_subj") or ""
            parts = (msg.reply or "").split(".")
            if subject == ">" or len(parts) < 4:
                return  # the proof that the replica holds the range: no tenant
            read = ".".join(parts[:3])  # _INBOX.<gateway>.<read>; its tries are one read
            if read not in self._reads:
                self._reads.add(read)
                self.backfills[(".".join(parts[:2]), _tenant_of([subject]))] += 1

    @property
    def consumers_created(self) -> int:
        """Consumers created on the notification stream (backfills used to be such)."""
        return self.notification_consumers

    @property
    def backfill_reads(self) -> int:
        """The gateways' range reads (each one direct-get read, or one filtered consumer)."""
        return sum(self.backfills.values())

    def most_per_tenant_and_gateway(self) -> int:
        return max(self.backfills.values(), default=0)

    def reset(self) -> None:
        self.calls.clear()
        self.backfills.clear()
        self.direct_gets = 0
        self.notification_consumers = 0

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()
