"""Counting the JetStream reads a fault causes, from the outside.

Every JetStream API call is a NATS request on ``$JS.API.…`` in the account, so a plain
subscriber sees each one the gateways make without any help from them. A gateway's backfill
(``tidings.gateway.replay.fetch_range``) creates one ephemeral consumer with a subject filter;
the request's reply subject carries the requesting connection's inbox prefix, so the reads can
be counted per gateway connection and per tenant: the bound a reconnect storm must respect is
one backfill per tenant per gateway, not one per client.
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

from tidings.subjects import BROADCAST_PREFIX, TENANT_PREFIX

API = "$JS.API.>"
CREATE = "$JS.API.CONSUMER.CREATE."


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
    backfills: Counter[tuple[str, str]] = field(default_factory=Counter)  # (requester, tenant)
    nc: NATS | None = None
    sub: Subscription | None = None

    async def start(self, urls: list[str]) -> JetStreamReads:
        self.nc = await nats.connect(
            urls, reconnect_time_wait=0.2, max_reconnect_attempts=-1, ping_interval=1
        )
        self.sub = await self.nc.subscribe(API, cb=self._on_request)
        await self.nc.flush()
        return self

    async def _on_request(self, msg: Msg) -> None:
        verb = msg.subject.removeprefix("$JS.API.").split(".")
        self.calls[".".join(verb[:2])] += 1
        if not msg.subject.startswith(CREATE):
            return
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            config = orjson.loads(msg.data).get("config", {})
            filters = config.get("filter_subjects") or (
                [config["filter_subject"]] if config.get("filter_subject") else []
            )
            if filters and not config.get("durable_name"):
                requester = ".".join((msg.reply or "").split(".")[:2])  # _INBOX.<connection>
                self.backfills[(requester, _tenant_of(filters))] += 1

    @property
    def consumers_created(self) -> int:
        return self.calls["CONSUMER.CREATE"]

    @property
    def backfill_reads(self) -> int:
        """Filtered ephemeral consumers created: the gateways' range reads."""
        return sum(self.backfills.values())

    def most_per_tenant_and_gateway(self) -> int:
        return max(self.backfills.values(), default=0)

    def reset(self) -> None:
        self.calls.clear()
        self.backfills.clear()

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()
