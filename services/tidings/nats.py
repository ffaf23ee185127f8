"""NATS connection and stream provisioning, shared by every Tidings process.

``connect`` turns :class:`NatsSettings` into a nats-py connection (several URLs, user/password,
token, NKey seed, ``.creds``, TLS). ``ensure_stream`` makes the ``TIDINGS`` stream match the
settings, idempotently, and reports what it could not change in place; ``provision`` is the
whole step for a command (connect, ensure, close).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    DeliverPolicy,
    DiscardPolicy,
    RePublish,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.errors import BadRequestError, NotFoundError

from tidings.errors import Unavailable
from tidings.settings import NatsSettings, StreamSettings
from tidings.subjects import BROADCAST_PREFIX, LIVE_PREFIX, TENANT_PREFIX

log = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[None]]


def tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    """An SSL context when any URL is ``tls://`` or a TLS file is configured."""
    wants_tls = any(u.startswith(("tls://", "wss://")) for u in settings.urls)
    if not (wants_tls or settings.tls_ca_file or settings.tls_cert_file):
        return None
    ctx = ssl.create_default_context(
        cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
    )
    if settings.tls_cert_file and settings.tls_key_file:
        ctx.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
    return ctx


def inbox_prefix(settings: NatsSettings, service: str | None) -> str | None:
    """Where this connection's replies arrive: ``_INBOX_<service>`` unless the settings say
    otherwise (nats-py's shared ``_INBOX`` when neither does). A reply subject under another
    user's prefix is not subscribable with the chart's permissions: a producer's credentials
    cannot read the gateways' JetStream replays of every tenant (issue 14 item 1)."""
    if settings.inbox_prefix:
        return settings.inbox_prefix
    return f"_INBOX_{service}" if service else None


def connect_options(settings: NatsSettings, *, service: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect`` derived from the settings; ``service`` names the
    reply prefix (:func:`inbox_prefix`)."""
    opts: dict[str, Any] = {
        "servers": list(settings.urls),
        "name": settings.name,
        "connect_timeout": settings.connect_timeout,
        "reconnect_time_wait": settings.reconnect_wait,
        "max_reconnect_attempts": -1,
        "allow_reconnect": True,
        "ping_interval": settings.ping_interval,
        "max_outstanding_pings": settings.max_outstanding_pings,
    }
    prefix = inbox_prefix(settings, service)
    if prefix is not None:
        opts["inbox_prefix"] = prefix
    if settings.user is not None:
        opts["user"], opts["password"] = settings.user, settings.password
    if settings.token is not None:
        opts["token"] = settings.token
    if settings.nkey_seed_file is not None:
        opts["nkeys_seed"] = str(settings.nkey_seed_file)
    if settings.creds_file is not None:
        opts["user_credentials"] = str(settings.creds_file)
    ctx = tls_context(settings)
    if ctx is not None:
        opts["tls"] = ctx
        if settings.tls_hostname:
            opts["tls_hostname"] = settings.tls_hostname
    return opts


async def connect(
    settings: NatsSettings,
    *,
    within: float | None = None,
    service: str | None = None,
    disconnected_cb: Callback | None = None,
    reconnected_cb: Callback | None = None,
    closed_cb: Callback | None = None,
) -> NATS:
    """Connect, then reconnect forever once connected.

    nats-py retries a *first* connect forever too (reconnect is on), which is right for a
    server waiting for NATS; ``within`` bounds it for commands and tests, raising
    :class:`Unavailable` with the last error the servers gave (e.g. an authorization violation).
    """
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc) or type(exc).__name__)
        if within is None:
            log.warning("nats error: %s", exc)

    opening = nats.connect(
        **connect_options(settings, service=service),
        error_cb=on_error,
        disconnected_cb=disconnected_cb,
        reconnected_cb=reconnected_cb,
        closed_cb=closed_cb,
    )
    if within is None:
        return await opening
    try:
        return await asyncio.wait_for(opening, within)
    except (TimeoutError, OSError) as exc:
        seen = "; ".join(dict.fromkeys(errors[-6:])) or str(exc) or "no answer"
        raise Unavailable(
            f"cannot reach NATS at {', '.join(settings.urls)} within {within:g}s: {seen}"
        ) from None


def desired_config(settings: StreamSettings) -> StreamConfig:
    """The stream as the settings describe it; live delivery is RePublish of ``>`` to ``live.>``."""
    return StreamConfig(
        name=settings.name,
        description="Tidings notifications",
        subjects=[f"{TENANT_PREFIX}.>", f"{BROADCAST_PREFIX}.>"],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        storage=StorageType(settings.storage),
        num_replicas=settings.replicas,
        max_age=settings.max_age,
        max_bytes=settings.max_bytes,
        max_msg_size=settings.max_msg_size,
        duplicate_window=settings.duplicate_window,
        allow_direct=True,
        republish=RePublish(src=">", dest=f"{LIVE_PREFIX}.>", headers_only=False),
    )


# Fields compared with the live stream; the first group JetStream refuses to change in place.
_FIXED = ("storage", "retention")
_UPDATABLE = (
    "subjects",
    "discard",
    "num_replicas",
    "max_age",
    "max_bytes",
    "max_msg_size",
    "duplicate_window",
    "allow_direct",
    "republish",
)


@dataclass(slots=True)
class ProvisionReport:
    """What ``ensure_stream`` did: created, changed fields, and fields it could not change."""

    stream: str
    created: bool = False
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    conflicts: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    epoch: str = ""

    @property
    def unchanged(self) -> bool:
        return not (self.created or self.changed or self.conflicts)


def _normalise(name: str, value: Any) -> Any:
    if name == "subjects":
        return sorted(value or [])
    if name == "republish":
        if value is None:
            return None
        return (value.src, value.dest, bool(value.headers_only))
    if name in ("max_age", "duplicate_window"):
        return round(float(value or 0), 3)
    if isinstance(value, StorageType | RetentionPolicy | DiscardPolicy):
        return value.value
    return value


def stream_epoch(info: StreamInfo) -> str:
    """An identity of the stream that changes when it is recreated (its creation time, in µs)."""
    created = info.created
    if created is None:
        return ""
    return format(int(created.timestamp() * 1_000_000), "x")


async def ensure_stream(js: JetStreamContext, settings: StreamSettings) -> ProvisionReport:
    """Create the stream or bring it to ``settings``; idempotent."""
    want = desired_config(settings)
    report = ProvisionReport(stream=settings.name)
    try:
        info = await js.stream_info(settings.name)
    except NotFoundError:
        info = await js.add_stream(want)
        report.created = True
        report.epoch = stream_epoch(info)
        return report
    have = info.config
    for name in _FIXED + _UPDATABLE:
        old, new = _normalise(name, getattr(have, name)), _normalise(name, getattr(want, name))
        if old != new:
            (report.conflicts if name in _FIXED else report.changed)[name] = (old, new)
    if report.changed:
        # Fixed fields keep their live values so the update itself is accepted.
        for name in _FIXED:
            setattr(want, name, getattr(have, name))
        info = await js.update_stream(want)
    report.epoch = stream_epoch(info)
    return report


NO_PLACEMENT = 10005  # "no suitable peers for placement": the cluster is still forming


async def ensure_stream_placed(
    js: JetStreamContext, settings: StreamSettings, *, within: float = 30.0
) -> ProvisionReport:
    """:func:`ensure_stream`, asked again while the cluster cannot place the replicas yet.

    A cluster answers JetStream as soon as it has a meta leader, but that leader may not know
    every peer for a moment (seen under load: ``no suitable peers for placement`` for an R3
    stream on a cluster of three that had just answered); that passes by itself within seconds.
    """
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await ensure_stream(js, settings)
        except BadRequestError as exc:
            if exc.err_code != NO_PLACEMENT or asyncio.get_running_loop().time() > deadline:
                raise
            log.info("stream replicas cannot be placed yet; asking again: %s", exc.description)
        await asyncio.sleep(0.25)


async def provision(
    nats_settings: NatsSettings, stream_settings: StreamSettings
) -> ProvisionReport:
    """Connect, ensure the stream, disconnect: what `tidings nats init` and `tidings dev` do."""
    nc = await connect(
        nats_settings, within=max(3.0, 2 * nats_settings.connect_timeout), service="admin"
    )
    try:
        return await ensure_stream_placed(nc.jetstream(), stream_settings)
    finally:
        await nc.close()


async def follow_keys(
    js: JetStreamContext, *, stream: str, subject: str, cb: Callable[[Msg], Awaitable[None]]
) -> JetStreamContext.PushSubscription:
    """The last value of every key of a KV bucket under ``subject``, then each change, in order
    (an ordered consumer: it survives reconnects and never needs acks)."""
    return await js.subscribe(
        subject,
        stream=stream,
        cb=cb,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        inactive_threshold=300.0,
    )


async def keys_loaded(
    sub: JetStreamContext.PushSubscription, loaded: asyncio.Event, timeout: float
) -> None:
    """Wait until ``cb`` of :func:`follow_keys` set ``loaded`` at the message with nothing
    pending — at once if there were no keys."""
    info = await sub.consumer_info()
    if info.num_pending == 0 and sub.delivered == 0:
        loaded.set()
    await asyncio.wait_for(loaded.wait(), timeout)
