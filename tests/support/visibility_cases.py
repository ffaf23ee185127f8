"""One table of who receives what: (claims, stored tenant, audience) → delivered or not.

The inbox's store test checks its query against it; the gateway's live delivery is checked
against the same rows (so the bell's history and its live feed can never disagree). Broadcasts
are stored under tenant '' (they belong to no tenant).
"""

from __future__ import annotations

from typing import NamedTuple

from tidings.auth.claims import Claims
from tidings.subjects import BROADCAST_AUDIENCE, TENANT_AUDIENCE, Audience, AudienceKind


class Case(NamedTuple):
    name: str
    claims: Claims
    tenant: str
    audience: Audience
    delivered: bool


ALICE = Claims("acme", "alice", roles=frozenset({"ops"}), room_patterns=("site-*", "hq"))
BOB = Claims("acme", "bob")
EVE = Claims("evil", "alice", roles=frozenset({"ops"}), room_patterns=("*",))


def _room(name: str) -> Audience:
    return Audience(AudienceKind.ROOM, name)


CASES: list[Case] = [
    Case("tenant-wide reaches everyone in the tenant", BOB, "acme", TENANT_AUDIENCE, True),
    Case("another tenant's tenant-wide never", EVE, "acme", TENANT_AUDIENCE, False),
    Case("a broadcast reaches every tenant", EVE, "", BROADCAST_AUDIENCE, True),
    Case("own user", ALICE, "acme", Audience(AudienceKind.USER, "alice"), True),
    Case("another user", BOB, "acme", Audience(AudienceKind.USER, "alice"), False),
    Case("same user id, other tenant", EVE, "acme", Audience(AudienceKind.USER, "alice"), False),
    Case("own role", ALICE, "acme", Audience(AudienceKind.ROLE, "ops"), True),
    Case("role not held", BOB, "acme", Audience(AudienceKind.ROLE, "ops"), False),
    Case("role is case-sensitive", ALICE, "acme", Audience(AudienceKind.ROLE, "OPS"), False),
    Case("room by pattern", ALICE, "acme", _room("site-berlin"), True),
    Case("pattern needs its prefix", ALICE, "acme", _room("berlin"), False),
    Case("'-' is not '_'", ALICE, "acme", _room("site_berlin"), False),
    Case("room pattern is case-sensitive", ALICE, "acme", _room("Site-berlin"), False),
    Case("'*' may match nothing", ALICE, "acme", _room("site-"), True),
    Case("exact room", ALICE, "acme", _room("hq"), True),
    Case("exact room is not a prefix", ALICE, "acme", _room("hq2"), False),
    Case("no patterns, no rooms", BOB, "acme", _room("hq"), False),
    Case("'*' stays within the tenant", EVE, "acme", _room("hq"), False),
    Case("'*' matches any room of its own tenant", EVE, "evil", _room("hq"), True),
]
