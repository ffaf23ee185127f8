"""The routing grammar: notification subjects, rooms, and the ids that become subject tokens.

This module is the one place that turns user-supplied ids into NATS subjects. Every id is
checked against ``[A-Za-z0-9_-]{1,64}`` first: a tenant id holding ``.``, ``*``, ``>`` or a space
would otherwise let one tenant publish into, or read from, another.

=========================================== ============== ===================================
subject                                     room           who receives
=========================================== ============== ===================================
``tenant.<t>.<domain>.<action>``            ``tenant``     every connection of tenant t
``tenant.<t>.user.<u>.<domain>.<action>``   ``user:<u>``   connections of user u in tenant t
``tenant.<t>.role.<r>.<domain>.<action>``   ``role:<r>``   connections of t with role r
``tenant.<t>.room.<n>.<domain>.<action>``   ``room:<n>``   subscribers of n in t, if allowed
``broadcast.<domain>.<action>``             ``broadcast``  every connection
=========================================== ============== ===================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from tidings.catalogue import DEFAULT_CATALOGUE, Catalogue
from tidings.errors import InvalidField

ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
ID_RE = re.compile(ID_PATTERN)

TENANT_PREFIX = "tenant"
BROADCAST_PREFIX = "broadcast"
LIVE_PREFIX = "live"


def check_id(value: object, *, field: str) -> str:
    """Return ``value`` if it may become one subject token, else raise naming ``field``."""
    if not isinstance(value, str):
        raise InvalidField("must be a string", field=field)
    if not ID_RE.fullmatch(value):
        if not value:
            reason = "must not be empty"
        elif len(value) > 64:
            reason = f"is {len(value)} characters long; at most 64 are allowed"
        else:
            bad = sorted({c for c in value if not re.fullmatch(r"[A-Za-z0-9_-]", c)})
            shown = ", ".join(repr(c) for c in bad)
            reason = f"contains {shown}; only letters, digits, '_' and '-' are allowed"
        raise InvalidField(reason, field=field)
    return value


class AudienceKind(StrEnum):
    TENANT = "tenant"
    USER = "user"
    ROLE = "role"
    ROOM = "room"
    BROADCAST = "broadcast"


_NAMED = (AudienceKind.USER, AudienceKind.ROLE, AudienceKind.ROOM)


@dataclass(frozen=True, slots=True)
class Audience:
    """Who inside a tenant receives a notification; ``name`` is set for user, role and room."""

    kind: AudienceKind = AudienceKind.TENANT
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind in _NAMED:
            check_id(self.name, field=f"audience.{self.kind.value}")
        elif self.name:
            raise InvalidField(f"a {self.kind.value} audience takes no name", field="audience")

    @property
    def room(self) -> str:
        """The room this audience is delivered to, as clients name it (``user:alice``)."""
        return f"{self.kind.value}:{self.name}" if self.kind in _NAMED else self.kind.value

    @classmethod
    def from_room(cls, room: object, *, field: str = "room") -> Audience:
        """Parse a room name as clients write it: ``tenant``, ``user:u``, ``room:n``, ..."""
        if not isinstance(room, str):
            raise InvalidField("must be a string", field=field)
        kind_text, sep, name = room.partition(":")
        try:
            kind = AudienceKind(kind_text)
        except ValueError:
            raise InvalidField(
                f"{room!r} is not a room; expected tenant, broadcast, user:<id>, role:<id> "
                "or room:<name>",
                field=field,
            ) from None
        if (kind in _NAMED) != bool(sep):
            raise InvalidField(f"{room!r} is not a room of kind {kind.value}", field=field)
        if kind in _NAMED:
            check_id(name, field=field)
        return cls(kind, name)


TENANT_AUDIENCE = Audience()
BROADCAST_AUDIENCE = Audience(AudienceKind.BROADCAST)


@dataclass(frozen=True, slots=True)
class Route:
    """Everything a subject encodes: tenant (``None`` for broadcast), audience and event."""

    tenant: str | None
    audience: Audience
    event: str

    @property
    def subject(self) -> str:
        return build_subject(self)


def build_subject(route: Route, *, catalogue: Catalogue = DEFAULT_CATALOGUE) -> str:
    """The JetStream subject for ``route``; every token is validated first."""
    event = catalogue.check(route.event)
    if route.audience.kind is AudienceKind.BROADCAST:
        if route.tenant is not None:
            raise InvalidField("a broadcast belongs to no tenant", field="tenant")
        return f"{BROADCAST_PREFIX}.{event}"
    tenant = check_id(route.tenant, field="tenant")
    audience = route.audience
    if audience.kind is AudienceKind.TENANT:
        return f"{TENANT_PREFIX}.{tenant}.{event}"
    name = check_id(audience.name, field=f"audience.{audience.kind.value}")
    return f"{TENANT_PREFIX}.{tenant}.{audience.kind.value}.{name}.{event}"


def parse_subject(subject: str, *, catalogue: Catalogue = DEFAULT_CATALOGUE) -> Route:
    """Inverse of :func:`build_subject`; accepts a ``live.`` prefix; raises on anything else."""
    tokens = subject.split(".")
    if tokens[0] == LIVE_PREFIX:
        tokens = tokens[1:]
    n = len(tokens)
    if n == 3 and tokens[0] == BROADCAST_PREFIX:
        return Route(None, BROADCAST_AUDIENCE, catalogue.check(f"{tokens[1]}.{tokens[2]}"))
    if tokens[0] != TENANT_PREFIX or n not in (4, 6):
        raise InvalidField(f"{subject!r} is not a notification subject", field="subject")
    tenant = check_id(tokens[1], field="tenant")
    event = catalogue.check(f"{tokens[-2]}.{tokens[-1]}")
    if n == 4:
        return Route(tenant, TENANT_AUDIENCE, event)
    try:
        kind = AudienceKind(tokens[2])
    except ValueError:
        kind = AudienceKind.TENANT  # not a named kind: rejected just below
    if kind not in _NAMED:
        raise InvalidField(f"{subject!r} has no audience kind {tokens[2]!r}", field="subject")
    return Route(tenant, Audience(kind, tokens[3]), event)


def tenant_filter(tenant: str, *, live: bool = False) -> str:
    """Wildcard that matches every notification of ``tenant`` (and nothing of another)."""
    prefix = f"{LIVE_PREFIX}." if live else ""
    return f"{prefix}{TENANT_PREFIX}.{check_id(tenant, field='tenant')}.>"


def room_filter(tenant: str | None, audience: Audience, *, live: bool = False) -> str:
    """Subject filter matching exactly the notifications of one room (used for replay)."""
    prefix = f"{LIVE_PREFIX}." if live else ""
    if audience.kind is AudienceKind.BROADCAST:
        return f"{prefix}{BROADCAST_PREFIX}.*.*"
    t = check_id(tenant, field="tenant")
    if audience.kind is AudienceKind.TENANT:
        return f"{prefix}{TENANT_PREFIX}.{t}.*.*"
    return f"{prefix}{TENANT_PREFIX}.{t}.{audience.kind.value}.{audience.name}.*.*"
