"""Turning a publish request into a stored notification: the one path for sidecar and SDK.

:func:`prepare` validates a JSON-shaped request, once, into the NATS message (subject,
``Nats-Msg-Id``, trace headers, envelope) with errors that name the field; ``publish`` /
``publish_many`` send it and wait for the PubAck.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from nats.errors import ConnectionClosedError, NoRespondersError, OutboundBufferLimitError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import APIError, NoStreamResponseError
from opentelemetry import propagate, trace

from tidings.catalogue import DEFAULT_CATALOGUE, Catalogue
from tidings.envelope import Notification, Severity, new_id
from tidings.errors import Conflict, Forbidden, InvalidField, Malformed, TidingsError, Unavailable
from tidings.jsondata import encode_data
from tidings.subjects import (
    BROADCAST_AUDIENCE,
    TENANT_AUDIENCE,
    Audience,
    AudienceKind,
    Route,
    check_id,
)

MAX_TITLE = 200
MAX_MESSAGE = 4000
MAX_SOURCE = 128
FIELDS = frozenset(
    {"id", "tenant", "event", "audience", "title", "message", "severity", "data", "source"}
)
_SEVERITIES = ", ".join(s.value for s in Severity)

# Errors that mean "NATS did not take it (now)": the outbox keeps the message and retries.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncio.TimeoutError,
    NatsTimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    ConnectionClosedError,
    OutboundBufferLimitError,
    ConnectionError,
    OSError,
)


@dataclass(frozen=True, slots=True)
class PublishPolicy:
    """What a publishing entry point allows: the catalogue, broadcasts, a default source."""

    catalogue: Catalogue = DEFAULT_CATALOGUE
    allow_broadcast: bool = False
    source: str = ""


def _text(body: Mapping[str, Any], name: str, *, limit: int, required: bool) -> str:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidField("is required", field=name)
        return ""
    if not isinstance(value, str):
        raise InvalidField(f"must be a string, not {type(value).__name__}", field=name)
    if required and not value.strip():
        raise InvalidField("must not be blank", field=name)
    if len(value) > limit:
        raise InvalidField(f"is {len(value)} characters long; at most {limit}", field=name)
    return value


def _audience(value: Any, policy: PublishPolicy) -> Audience:
    if value is None:
        return TENANT_AUDIENCE
    if not isinstance(value, dict) or len(value) != 1:
        raise InvalidField(
            'must be one of {"user": id}, {"role": id}, {"room": name}, {"broadcast": true}',
            field="audience",
        )
    ((key, name),) = value.items()
    if key == "broadcast":
        if name is not True:
            raise InvalidField("must be true", field="audience.broadcast")
        if not policy.allow_broadcast:
            raise Forbidden(
                "this publisher may not broadcast: a sidecar needs"
                " TIDINGS_PUBLISHER_ALLOW_BROADCAST=true, the SDK allow_broadcast=True",
                field="audience.broadcast",
            )
        return BROADCAST_AUDIENCE
    if key not in ("user", "role", "room"):
        raise InvalidField(f"unknown audience kind {key!r}", field="audience")
    return Audience(AudienceKind(key), name)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A notification as NATS will store it; what the outbox keeps and replays verbatim.

    Built by :func:`prepare` (or read back from the outbox): nothing downstream checks it again.
    """

    id: str
    subject: str
    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)


def prepare(body: Any, policy: PublishPolicy, *, now: datetime | None = None) -> OutgoingMessage:
    """Validate one publish request (already JSON-decoded) into its NATS message.

    The one entry for the sidecar and the SDK. The message carries the trace context of the
    current span, so call it inside the span the notification belongs to.
    """
    if not isinstance(body, dict):
        raise Malformed(f"expected a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidField("unknown field", field=unknown[0])
    audience = _audience(body.get("audience"), policy)
    event: Any = body.get("event")  # the Route checks it, as it checks the tenant
    route = Route(body.get("tenant"), audience, event)
    policy.catalogue.check(route.event)
    ident = body.get("id")
    ident = new_id() if ident is None else check_id(ident, field="id")
    severity_text = body.get("severity", "info")
    try:
        severity = Severity(severity_text)
    except (ValueError, TypeError):
        raise InvalidField(f"must be one of {_SEVERITIES}", field="severity") from None
    data = body.get("data")
    if data is None:
        data_bytes = b"{}"
    elif isinstance(data, dict):
        data_bytes = encode_data(data)
    else:
        raise InvalidField(f"must be a JSON object, not {type(data).__name__}", field="data")
    title = _text(body, "title", limit=MAX_TITLE, required=True)
    message = _text(body, "message", limit=MAX_MESSAGE, required=True)
    source = _text(body, "source", limit=MAX_SOURCE, required=False) or policy.source
    headers: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(headers)  # W3C trace context of the current span
    notification = Notification(
        id=ident,
        tenant=route.tenant,
        event=route.event,
        audience=route.audience,
        time=now or datetime.now(UTC),
        title=title,
        message=message,
        severity=severity,
        source=source,
        data=data_bytes,
        traceparent=headers.get("traceparent", ""),
        tracestate=headers.get("tracestate", ""),
    )
    headers["Nats-Msg-Id"] = msg_id(route.tenant, ident)
    return OutgoingMessage(ident, route.subject, notification.to_bytes(), headers)


def msg_id(tenant: str | None, ident: str) -> str:
    """The stream's duplicate key: the id within its tenant (``:<id>`` for a broadcast).

    The duplicate window is stream-wide, so a bare id would let one tenant's key swallow
    another tenant's notification (both use natural keys such as ``inc-7-created``).
    """
    return f"{tenant or ''}:{ident}"


def _same_notification(sent: bytes, stored: bytes) -> bool:
    """Whether a duplicate is a retry: the same notification apart from when and where from
    (the time and trace context of each attempt differ)."""
    a, b = Notification.from_bytes(sent), Notification.from_bytes(stored)
    return (a.tenant, a.event, a.audience, a.title, a.message, a.severity, a.source) == (
        b.tenant,
        b.event,
        b.audience,
        b.title,
        b.message,
        b.severity,
        b.source,
    ) and orjson.loads(a.data) == orjson.loads(b.data)


def prepare_batch(items: Any, policy: PublishPolicy, *, max_items: int) -> list[OutgoingMessage]:
    """Validate every request of a batch; the first error names its index."""
    if not isinstance(items, list):
        raise InvalidField("must be a list of notifications", field="notifications")
    if not items:
        raise InvalidField("must not be empty", field="notifications")
    if len(items) > max_items:
        raise InvalidField(
            f"has {len(items)} items; at most {max_items} per batch", field="notifications"
        )
    now = datetime.now(UTC)
    out: list[OutgoingMessage] = []
    for i, item in enumerate(items):
        try:
            out.append(prepare(item, policy, now=now))
        except TidingsError as exc:
            raise exc.at(f"notifications[{i}]") from None
    return out


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The answer to a publish: ``seq`` is ``None`` while the message waits in the outbox."""

    id: str
    seq: int | None
    duplicate: bool = False
    queued: bool = False

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "seq": self.seq, "duplicate": self.duplicate}
        if self.queued:
            body["queued"] = True
        return body


async def _result(
    js: JetStreamContext, msg: OutgoingMessage, ack: Any, stream: str
) -> PublishResult:
    """The PubAck as an answer; a duplicate is checked against what the stream holds."""
    if ack.duplicate:
        stored = await js.get_msg(stream, seq=int(ack.seq), direct=True)
        if not _same_notification(msg.payload, stored.data or b""):
            raise Conflict(
                f"id {msg.id!r} was used for another notification (seq {ack.seq}); "
                "use a new id for a new notification",
                field="id",
            )
    return PublishResult(msg.id, int(ack.seq), bool(ack.duplicate))


RETRY_PAUSE = 0.25  # after an immediate "not now" (no responders, 503) before the next try


def _again(error: BaseException) -> bool:
    """Whether a try's failure is worth another try of the same message within the timeout:
    no answer (no stream leader during an election), no responders, a 503 or "this id is
    still being stored"."""
    if isinstance(error, APIError):
        return isinstance(_api_error(error), Unavailable)
    return isinstance(error, (TimeoutError, NoStreamResponseError))


async def publish(
    js: JetStreamContext,
    msg: OutgoingMessage,
    *,
    stream: str,
    timeout: float,
    attempt: float | None = None,
) -> PublishResult:
    """Publish one message and wait for its PubAck, at most ``timeout`` seconds.

    With ``attempt``, a try unanswered after that long (or answered "not now") is sent again
    with the same ``Nats-Msg-Id`` until ``timeout``: while a stream leader is elected nothing
    answers and what was sent is dropped, so the message lands within about ``attempt`` of the
    new leader instead of when a whole ``timeout`` ends. The stream stores it once whatever
    the tries (a PubAck may then say ``duplicate`` for a copy an earlier try stored).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        try:
            ack = await js.publish(
                msg.subject,
                msg.payload,
                timeout=max(0.001, min(attempt or left, left)),
                stream=stream,
                headers=dict(msg.headers),
            )
        except (TimeoutError, APIError, NoStreamResponseError) as exc:
            waited = isinstance(exc, TimeoutError)
            if attempt is None or not _again(exc) or not await _pause(waited, deadline):
                if isinstance(exc, APIError):
                    raise _api_error(exc) from exc
                raise
            continue
        return await _result(js, msg, ack, stream)


async def _pause(waited: bool, deadline: float) -> bool:
    """Before another try: a try that timed out has waited already, an immediate refusal
    waits a little. False when the time is up."""
    loop = asyncio.get_running_loop()
    if not waited:
        await asyncio.sleep(max(0.0, min(RETRY_PAUSE, deadline - loop.time())))
    return deadline - loop.time() > 0.01


async def publish_many(
    js: JetStreamContext,
    msgs: Sequence[OutgoingMessage],
    *,
    stream: str,
    timeout: float,
    attempt: float | None = None,
) -> list[PublishResult]:
    """Publish in order without waiting between messages; return once every PubAck is in.

    With ``attempt``, what is unanswered (or answered "not now") after that long is sent
    again, in order, with the same ``Nats-Msg-Id`` s, until ``timeout`` (see :func:`publish`).
    nats-py 2.16 never resolves a pipelined publish that JetStream refused (nats.py#985), so a
    message still unanswered at the end is asked again on its own: that either returns its
    PubAck (a duplicate if it was stored) or raises the refusal, instead of reporting a
    timeout for a message JetStream will never take.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    results: dict[int, PublishResult] = {}
    waiting = list(range(len(msgs)))
    while waiting:
        futures = [
            await js.publish_async(
                msgs[i].subject, msgs[i].payload, stream=stream, headers=dict(msgs[i].headers)
            )
            for i in waiting
        ]
        left = max(0.001, deadline - loop.time())
        done, pending = await asyncio.wait(futures, timeout=min(attempt or left, left))
        for f in pending:
            f.cancel()
        failures = {f: f.exception() for f in done}  # read all: none is logged as never retrieved
        again: list[int] = []
        for i, f in zip(waiting, futures, strict=True):
            error = failures.get(f)
            if f in done and error is None:
                results[i] = await _result(js, msgs[i], f.result(), stream)
            elif error is None or (attempt is not None and _again(error)):
                again.append(i)
            elif isinstance(error, APIError):
                raise _api_error(error) from error
            else:
                raise error
        waiting = again
        if waiting and (attempt is None or not await _pause(bool(pending), deadline)):
            break
    for i in waiting:  # the time is up: each on its own (nats.py#985)
        results[i] = await publish(js, msgs[i], stream=stream, timeout=timeout, attempt=attempt)
    return [results[i] for i in range(len(msgs))]


DUPLICATE_IN_PROCESS = 10158  # JSStreamDuplicateMessageConflictErr


def _api_error(exc: APIError) -> TidingsError:
    # 503 = JetStream temporarily unavailable (leader election, no quorum): transient.
    if exc.code == 503:
        return Unavailable(f"JetStream unavailable: {exc.description}")
    # 409/10158 "duplicate message id is in process": a retry met the first try of the same
    # Nats-Msg-Id still being proposed (an election): ask again later; the stream's duplicate
    # window keeps it at one copy. Seen in a quorum loss (tests/integration/test_cluster_heal.py).
    if exc.err_code == DUPLICATE_IN_PROCESS:
        return Unavailable(f"JetStream is still storing this message id: {exc.description}")
    return TidingsError(f"JetStream refused the message: {exc.description} (code {exc.code})")
