"""Cluster status: connection counts of a tenant and a user, summed over every gateway.

The asking gateway publishes one question on ``STATUS_SUBJECT``; every gateway (itself
included) answers with its own counts, collected by ``scatter.gather`` (until a quiet interval
passes without a new answer, never beyond the status timeout).
"""

from __future__ import annotations

from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from tidings.gateway.fanout import Hub
from tidings.gateway.scatter import gather

STATUS_SUBJECT = "tidings.gateway.status"


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
        replies = await gather(nc, STATUS_SUBJECT, {"tenant": tenant, "user": user}, self.timeout)
        gateways = {r.get("gateway") for r in replies}
        return {
            "tenant": tenant,
            "user": user,
            "tenant_connections": sum(int(r.get("tenant", 0)) for r in replies),
            "user_connections": sum(int(r.get("user", 0)) for r in replies),
            "gateways": len(gateways),
        }
