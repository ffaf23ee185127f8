"""The async publish SDK: the sidecar's validation and envelope code, without the HTTP hop.

Services that already hold a NATS connection publish with this; every request goes through
``publishing.prepare`` exactly as a sidecar request does, so both entry points accept and
refuse the same things.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from tidings.catalogue import Catalogue
from tidings.errors import Unavailable
from tidings.lifecycle import Supervisor
from tidings.nats import connect
from tidings.publishing import (
    OutgoingMessage,
    PublishPolicy,
    PublishResult,
    prepare,
    prepare_batch,
    publish,
    publish_many,
)
from tidings.quotas.keeper import QuotaKeeper, build_quotas
from tidings.quotas.meter import Meter
from tidings.settings import (
    EventsSettings,
    NatsSettings,
    QuotaSettings,
    Settings,
    StreamSettings,
)


class Publisher:
    """Publish notifications to JetStream and wait for each PubAck.

    Broadcasts (every tenant's users) need ``allow_broadcast=True``, as the sidecar needs
    ``TIDINGS_PUBLISHER_ALLOW_BROADCAST``: a tenant's service that sends one by mistake is
    refused with ``forbidden`` before anything is sent. NATS permissions (``broadcast.>``)
    remain the enforcement a hostile producer cannot bypass.

    With quotas on (``quota=QuotaSettings(enabled=True)`` or ``TIDINGS_QUOTA_ENABLED``), a
    publish beyond the tenant's limits raises :class:`~tidings.errors.PublishRateLimited` or
    :class:`~tidings.errors.DailyQuotaExceeded` (``retry_after`` seconds) before anything is
    sent; ``metrics`` holds the quota counters.
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        policy: PublishPolicy | None = None,
        stream: str = "TIDINGS",
        timeout: float = 5.0,
        nc: NATS | None = None,
        allow_broadcast: bool = False,
        attempt: float | None = 1.0,
    ) -> None:
        self._js = js
        self._nc = nc
        self.policy = policy or PublishPolicy(allow_broadcast=allow_broadcast)
        self.stream = stream
        self.timeout = timeout
        self.meter: Meter | None = None
        self.keeper: QuotaKeeper | None = None
        self.metrics = CollectorRegistry()
        self._supervisor: Supervisor | None = None
        # One try's wait for the PubAck; tries repeat with the same Nats-Msg-Id within
        # ``timeout`` (an election: lands ~``attempt`` after the new leader). None: one try.
        self.attempt = attempt

    @classmethod
    async def connect(
        cls,
        nats: NatsSettings | None = None,
        *,
        stream: StreamSettings | None = None,
        events: EventsSettings | None = None,
        source: str = "",
        allow_broadcast: bool = False,
        within: float | None = None,
        quota: QuotaSettings | None = None,
    ) -> Publisher:
        """Open a NATS connection of its own (closed by :meth:`close`); ``within`` bounds the
        first connect (see :func:`tidings.nats.connect`). ``quota``: default from the
        environment (``TIDINGS_QUOTA_*``, off unless ``TIDINGS_QUOTA_ENABLED``)."""
        nats = nats or NatsSettings()
        events = events or EventsSettings()
        quota = quota or QuotaSettings()
        holder: list[Publisher] = []

        async def reconnected() -> None:
            keeper = holder[0].keeper if holder else None
            if keeper is not None:
                keeper.reconnected()

        nc = await connect(nats, within=within, service="publisher", reconnected_cb=reconnected)
        policy = PublishPolicy(
            catalogue=Catalogue.build(extra=events.extra, allow_unknown=events.allow_unknown),
            allow_broadcast=allow_broadcast,
            source=source,
        )
        stream = stream or StreamSettings()
        publisher = cls(
            nc.jetstream(),
            policy=policy,
            stream=stream.name,
            timeout=nats.request_timeout,
            nc=nc,
            attempt=nats.publish_try,
        )
        holder.append(publisher)
        if quota.enabled:
            publisher.use_quotas(Settings(nats=nats, stream=stream, quota=quota))
        return publisher

    def use_quotas(self, settings: Settings) -> None:
        """Enforce ``settings.quota`` from now on (its part runs until :meth:`close`)."""
        nc = self._nc

        def js() -> Any:
            if nc is not None and not nc.is_connected:
                raise Unavailable("NATS is not connected")
            return self._js

        async def send(msg: OutgoingMessage) -> PublishResult:
            return await publish(self._js, msg, stream=self.stream, timeout=self.timeout)

        self.meter, self.keeper = build_quotas(
            settings, registry=self.metrics, js=js, send=send, policy=self.policy
        )
        self._supervisor = Supervisor()
        self._supervisor.start(self.keeper)

    async def close(self) -> None:
        """Stop the quotas' part; flush and close the connection this publisher opened."""
        if self._supervisor is not None:
            await self._supervisor.stop()
            self._supervisor = None
        if self._nc is not None:
            await self._nc.drain()

    async def __aenter__(self) -> Publisher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def publish(self, body: Mapping[str, Any]) -> PublishResult:
        """Publish one request in the sidecar's JSON shape (``tenant``, ``event``, ...)."""
        msg = prepare(dict(body), self.policy)
        if self.meter is not None:
            await self.meter.admit_messages([msg])
        return await publish(
            self._js, msg, stream=self.stream, timeout=self.timeout, attempt=self.attempt
        )

    async def publish_batch(self, bodies: Sequence[Mapping[str, Any]]) -> list[PublishResult]:
        """Validate all, then publish in order, pipelined."""
        msgs = prepare_batch([dict(b) for b in bodies], self.policy, max_items=max(1, len(bodies)))
        if self.meter is not None:
            await self.meter.admit_messages(msgs)
        return await publish_many(
            self._js, msgs, stream=self.stream, timeout=self.timeout, attempt=self.attempt
        )

    async def to_tenant(
        self, tenant: str, event: str, *, title: str, message: str, **extra: Any
    ) -> PublishResult:
        """Every connection of ``tenant``. ``extra``: severity, data, id, source."""
        return await self.publish(
            {"tenant": tenant, "event": event, "title": title, "message": message, **extra}
        )

    async def to_user(
        self, tenant: str, user: str, event: str, *, title: str, message: str, **extra: Any
    ) -> PublishResult:
        return await self._to(tenant, {"user": user}, event, title, message, extra)

    async def to_role(
        self, tenant: str, role: str, event: str, *, title: str, message: str, **extra: Any
    ) -> PublishResult:
        return await self._to(tenant, {"role": role}, event, title, message, extra)

    async def to_room(
        self, tenant: str, room: str, event: str, *, title: str, message: str, **extra: Any
    ) -> PublishResult:
        return await self._to(tenant, {"room": room}, event, title, message, extra)

    async def broadcast(
        self, event: str, *, title: str, message: str, **extra: Any
    ) -> PublishResult:
        """Every connection of every tenant (needs the NATS right to publish ``broadcast.>``)."""
        return await self.publish(
            {
                "event": event,
                "audience": {"broadcast": True},
                "title": title,
                "message": message,
                **extra,
            }
        )

    async def _to(
        self,
        tenant: str,
        audience: dict[str, str],
        event: str,
        title: str,
        message: str,
        extra: dict[str, Any],
    ) -> PublishResult:
        body = {
            "tenant": tenant,
            "audience": audience,
            "event": event,
            "title": title,
            "message": message,
            **extra,
        }
        return await self.publish(body)
