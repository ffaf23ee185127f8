"""The inbox API's NATS side: ``changed`` after every write, and answers to ``session``.

- **changed** (core NATS, ``tidings.inbox.changed.<tenant>.<user>``): after a state change,
  mark-all, erase or preference change, the new counts and what changed, for the gateways to
  push to every connection of that user (docs/inbox.md). Best effort: the HTTP answer never
  waits for NATS, and while NATS is down the message is dropped and counted
  (``tidings_inbox_api_changed_dropped_total``); the user's other devices catch up at their
  next ``welcome`` or ``changed``.
- **changed** for a whole tenant (``tidings.inbox.changed.<tenant>``, ``{"reason":
  "defaults"}``): after a change of the tenant's preference defaults, which concerns every user
  of it; each gateway asks again for the counts and muted set of each user of it it holds.
- **session** (request/reply on ``tidings.inbox.session``, queue group ``tidings-inbox-api``
  so replicas share it): a gateway asks at ``hello`` with the token's claims and gets
  ``{"counts", "muted"}``, or an error body.

The subscription is an ``on_up`` step of the process's :class:`~tidings.nats_link.NatsLink`,
so it is made again on the new client after the link started over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from sqlalchemy.exc import SQLAlchemyError

from tidings.auth.claims import Claims
from tidings.errors import InvalidField, Malformed, TidingsError, Unavailable, error_body
from tidings.inbox.api_metrics import ApiMetrics
from tidings.nats_link import NatsLink

log = logging.getLogger(__name__)

CHANGED_PREFIX = "tidings.inbox.changed"
SESSION_SUBJECT = "tidings.inbox.session"
QUEUE_GROUP = "tidings-inbox-api"
MAX_SESSION_BYTES = 64 * 1024
_SESSION_KEYS = frozenset({"tenant", "user", "roles", "rooms"})

# (claims) -> {"counts": ..., "muted": [...]} read from the database.
Bell = Callable[[Claims], Awaitable[dict[str, Any]]]


def changed_subject(tenant: str, user: str) -> str:
    return f"{CHANGED_PREFIX}.{tenant}.{user}"


def tenant_subject(tenant: str) -> str:
    return f"{CHANGED_PREFIX}.{tenant}"


class Announcer:
    """Publishes ``changed``; never raises (a lost message is counted, not an error)."""

    def __init__(self, link: NatsLink, metrics: ApiMetrics) -> None:
        self.link = link
        self.metrics = metrics

    async def changed(self, tenant: str, user: str, body: dict[str, Any]) -> bool:
        return await self._publish(changed_subject(tenant, user), body)

    async def tenant_changed(self, tenant: str, reason: str) -> bool:
        """Every user of ``tenant`` is concerned (its defaults changed): the gateways ask
        again for each user of it they hold."""
        return await self._publish(tenant_subject(tenant), {"reason": reason})

    async def _publish(self, subject: str, body: dict[str, Any]) -> bool:
        if not self.link.connected:
            self.metrics.changed_dropped.inc()
            return False
        try:
            payload = orjson.dumps(body)
            await self.link.client.publish(subject, payload)
        except Exception as exc:  # NATS went away between the check and the write
            log.warning("inbox changed not published", extra={"error": repr(exc)})
            self.metrics.changed_dropped.inc()
            return False
        self.metrics.changed_published.inc()
        return True


def session_claims(payload: bytes) -> Claims:
    """The claims a gateway forwards, checked like a token's (ids, room patterns)."""
    if len(payload) > MAX_SESSION_BYTES:
        raise Malformed(f"the request is over {MAX_SESSION_BYTES} bytes", field="body")
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"not valid JSON: {exc}", field="body") from None
    if not isinstance(body, dict):
        raise Malformed("expected a JSON object", field="body")
    extra = sorted(set(body) - _SESSION_KEYS)
    if extra:
        raise InvalidField("unknown field", field=str(extra[0])[:64])
    for name in ("roles", "rooms"):
        value = body.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidField("must be an array of strings", field=name)
    try:
        return Claims(
            body.get("tenant"),  # type: ignore[arg-type]  # checked by Claims
            body.get("user"),  # type: ignore[arg-type]
            frozenset(body.get("roles", [])),
            tuple(body.get("rooms", [])),
        )
    except TidingsError:
        raise
    except TypeError as exc:
        raise InvalidField(str(exc), field="body") from None


class SessionResponder:
    """Answers ``session`` requests; each is a short task, at most ``concurrency`` at once (a
    reconnect storm of thousands of hellos must not open thousands of database connections)."""

    def __init__(
        self, link: NatsLink, bell: Bell, metrics: ApiMetrics, *, concurrency: int = 16
    ) -> None:
        self.link = link
        self.bell = bell
        self.metrics = metrics
        self._gate = asyncio.Semaphore(concurrency)
        self._sub: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def armed(self) -> bool:
        """Whether the current NATS client carries the subscription."""
        sub = self._sub
        return sub is not None and self.link.connected and sub._conn is self.link.client

    async def arm(self) -> None:
        """The ``on_up`` step: subscribe on the current client (again after a fresh one)."""
        client = self.link.client
        if self._sub is not None and self._sub._conn is client:
            return  # nats-py re-subscribes on its own after a reconnect of the same client
        self._sub = await client.subscribe(SESSION_SUBJECT, queue=QUEUE_GROUP, cb=self._received)
        await client.flush()

    async def _received(self, msg: Msg) -> None:
        task = asyncio.ensure_future(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Msg) -> None:
        async with self._gate:
            try:
                claims = session_claims(msg.data)
                body = orjson.dumps(await self.bell(claims))
                outcome = "answered"
            except TidingsError as exc:
                body, outcome = error_body(exc), exc.code.value
            except (OSError, SQLAlchemyError) as exc:
                log.warning("inbox session not answered", extra={"error": repr(exc)})
                body = error_body(Unavailable("the inbox database did not answer"))
                outcome = "unavailable"
            except Exception:
                log.exception("inbox session failed")
                body = error_body(TidingsError("internal error; see the inbox API's log"))
                outcome = "internal"
        self.metrics.sessions.labels(outcome).inc()
        if msg.reply:
            try:
                await msg.respond(body)
            except Exception as exc:  # NATS went away: the gateway times out and goes on
                log.warning("inbox session reply lost", extra={"error": repr(exc)})

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
