"""Who is connected: per-tenant and per-user connection counts, kept as connections come and go.

The hub counts a connection when it joins (after its ``hello``) and uncounts it when it leaves,
so a question costs a dictionary lookup (a user), or a walk over one tenant's users (a tenant),
never a scan of every connection. The admin API (``GET /api/admin/presence``) asks every gateway
over NATS (:data:`PRESENCE_SUBJECT`) and sums the answers (:func:`merge`).

This module imports nothing of the gateway: the hub (the hot path's membership) feeds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PRESENCE_SUBJECT = "tidings.gateway.presence"
# At most this many users (or tenants) in one gateway's answer: a NATS message stays far below
# the 1 MB payload limit (64-character ids); beyond it the answer says `truncated`.
MAX_LISTED = 5000


class Presence:
    """Connections per tenant and per (tenant, user) on this gateway."""

    __slots__ = ("tenants",)

    def __init__(self) -> None:
        self.tenants: dict[str, dict[str, int]] = {}  # tenant -> user -> connections

    def joined(self, tenant: str, user: str) -> None:
        users = self.tenants.get(tenant)
        if users is None:
            users = self.tenants[tenant] = {}
        users[user] = users.get(user, 0) + 1

    def left(self, tenant: str, user: str) -> None:
        users = self.tenants.get(tenant)
        if users is None or user not in users:
            return
        left = users[user] - 1
        if left:
            users[user] = left
            return
        del users[user]
        if not users:
            del self.tenants[tenant]

    def user(self, tenant: str, user: str) -> int:
        return self.tenants.get(tenant, {}).get(user, 0)

    def answer(
        self, tenant: str | None, user: str | None, limit: int = MAX_LISTED
    ) -> dict[str, Any]:
        """This gateway's part of a presence question (what :func:`merge` sums).

        A user: its connections here. A tenant: its connections and users here (``limit`` at
        most). Neither: the connections of every tenant here.
        """
        if tenant is not None and user is not None:
            return {"connections": self.user(tenant, user)}
        if tenant is not None:
            users = self.tenants.get(tenant, {})
            listed = _first(users.items(), limit)
            return {
                "connections": sum(users.values()),
                "users": listed,
                "truncated": len(listed) < len(users),
            }
        counts = _first(((t, sum(u.values())) for t, u in self.tenants.items()), limit)
        return {
            "connections": sum(counts.values()),
            "tenants": counts,
            "truncated": len(counts) < len(self.tenants),
        }


def _first(pairs: Iterable[tuple[str, int]], limit: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in pairs:
        if len(out) >= limit:
            break
        out[key] = value
    return out


def merge(
    tenant: str | None, user: str | None, replies: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """The cluster's answer: every gateway's counts summed, users/tenants sorted by count."""
    connections = 0
    gateways: set[str] = set()
    by_name: dict[str, int] = {}
    truncated = False
    kind = "users" if user is None and tenant is not None else "tenants"
    for reply in replies:
        gateways.add(str(reply.get("gateway")))
        connections += _count(reply.get("connections"))
        truncated = truncated or reply.get("truncated") is True
        listed = reply.get(kind)
        if isinstance(listed, Mapping):
            for name, count in listed.items():
                by_name[str(name)] = by_name.get(str(name), 0) + _count(count)
    answer: dict[str, Any] = {"connections": connections, "gateways": len(gateways)}
    if tenant is not None:
        answer["tenant"] = tenant
    if user is not None:
        answer["user"] = user
        return answer
    ranked = sorted(by_name.items(), key=lambda kv: (-kv[1], kv[0]))
    key = "user" if kind == "users" else "tenant"
    answer[kind] = [{key: name, "connections": count} for name, count in ranked]
    answer["truncated"] = truncated
    return answer


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
