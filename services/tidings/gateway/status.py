"""Cluster status: connection counts of a tenant and a user, summed over every gateway.

The asking gateway publishes one question on ``STATUS_SUBJECT`` with a reply inbox; every
gateway (itself included) answers with its own counts. No gateway knows how many there are,
so the asker collects answers until a quiet interval passes without a new one: the longer of
``QUIET`` and the time the last answer took (a slow cluster gets a longer wait), and never
beyond the status timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from tidings.gateway.fanout import Hub

STATUS_SUBJECT = "tidings.gateway.status"
QUIET = 0.05  # seconds without a new answer after which every gateway is taken to have answered


class ClusterStatus:
    """Answers status questions for this gateway and asks the others."""

    def __init__(self, gateway_id: str, hub: Hub, *, timeout: float) -> None:
        self.gateway_id = gateway_id
        self.hub = hub
        self.timeout = timeout

    def local_counts(self, tenant: str, user: str) -> dict[str, int]:
        conns = self.hub.rooms.get((tenant, f"user:{user}"), {})
        return {"tenant": self.hub.tenants.get(tenant, 0), "user": len(conns)}

    async def listen(self, nc: NATS) -> None:
        """Answer the questions of every gateway (again, on a new client)."""
        await nc.subscribe(STATUS_SUBJECT, cb=self._on_request)

    async def _on_request(self, msg: Msg) -> None:
        try:
            ask = orjson.loads(msg.data)
            counts = self.local_counts(str(ask["tenant"]), str(ask["user"]))
        except Exception:
            return
        await msg.respond(orjson.dumps({"gateway": self.gateway_id, **counts}))

    async def ask(self, nc: NATS, tenant: str, user: str) -> dict[str, Any]:
        """Counts of ``tenant`` and ``user`` summed over every gateway that answered."""
        inbox = nc.new_inbox()
        replies: list[dict[str, Any]] = []
        answered = asyncio.Event()
        began = time.monotonic()
        last = 0.0  # seconds from the question to the latest answer

        async def on_reply(msg: Msg) -> None:
            nonlocal last
            with contextlib.suppress(Exception):
                replies.append(orjson.loads(msg.data))
                last = time.monotonic() - began
                answered.set()

        sub = await nc.subscribe(inbox, cb=on_reply)
        try:
            await nc.publish(
                STATUS_SUBJECT, orjson.dumps({"tenant": tenant, "user": user}), reply=inbox
            )
            deadline = began + self.timeout
            while (left := deadline - time.monotonic()) > 0:
                wait = left if not replies else min(left, max(QUIET, last))
                answered.clear()
                try:
                    await asyncio.wait_for(answered.wait(), wait)
                except TimeoutError:
                    if replies:
                        break  # quiet since the last answer: every gateway has answered
        finally:
            await sub.unsubscribe()
        gateways = {r.get("gateway") for r in replies}
        return {
            "tenant": tenant,
            "user": user,
            "tenant_connections": sum(int(r.get("tenant", 0)) for r in replies),
            "user_connections": sum(int(r.get("user", 0)) for r in replies),
            "gateways": len(gateways),
        }
