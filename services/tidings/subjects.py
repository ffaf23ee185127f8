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

The stream republishes every stored subject as ``live.<subject>``: :func:`room_of` routes those
in the gateway, :func:`tenant_filter` gives a tenant's stream and live filters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from tidings.catalogue import DEFAULT_CATALOGUE, Catalogue, check_event_syntax
from tidings.errors import InvalidField

ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
ID_RE = re.compile(ID_PATTERN)

TENANT_PREFIX = "tenant"
BROADCAST_PREFIX = "broadcast"
LIVE_PREFIX = "live"
BROADCAST_TENANT = ""  # a broadcast's tenant where routing needs a string key (it has none)


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


NAMED_KINDS = (AudienceKind.USER, AudienceKind.ROLE, AudienceKind.ROOM)  # audiences with a name


@dataclass(frozen=True, slots=True)
class Audience:
    """Who inside a tenant receives a notification; ``name`` is set for user, role and room."""

    kind: AudienceKind = AudienceKind.TENANT
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind in NAMED_KINDS:
            check_id(self.name, field=f"audience.{self.kind.value}")
        elif self.name:
            raise InvalidField(f"a {self.kind.value} audience takes no name", field="audience")

    @property
    def room(self) -> str:
        """The room this audience is delivered to, as clients name it (``user:alice``)."""
        return f"{self.kind.value}:{self.name}" if self.kind in NAMED_KINDS else self.kind.value

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
        if (kind in NAMED_KINDS) != bool(sep):
            raise InvalidField(f"{room!r} is not a room of kind {kind.value}", field=field)
        if kind in NAMED_KINDS:
            check_id(name, field=field)
        return cls(kind, name)


TENANT_AUDIENCE = Audience()
BROADCAST_AUDIENCE = Audience(AudienceKind.BROADCAST)


@dataclass(frozen=True, slots=True)
class Route:
    """Everything a subject encodes: tenant (``None`` for broadcast), audience and event.

    Checked when built (the audience checks itself), so :attr:`subject` formats without
    checking again; whether the event is in the deployment's catalogue is the publisher's call.
    """

    tenant: str | None
    audience: Audience
    event: str

    def __post_init__(self) -> None:
        if self.audience.kind is AudienceKind.BROADCAST:
            if self.tenant is not None:
                raise InvalidField("a broadcast belongs to no tenant; omit it", field="tenant")
        elif self.tenant is None:
            raise InvalidField("is required", field="tenant")
        else:
            check_id(self.tenant, field="tenant")
        check_event_syntax(self.event)

    @property
    def subject(self) -> str:
        """The JetStream subject (a row of the table above)."""
        audience = self.audience
        if audience.kind is AudienceKind.BROADCAST:
            return f"{BROADCAST_PREFIX}.{self.event}"
        if audience.kind is AudienceKind.TENANT:
            return f"{TENANT_PREFIX}.{self.tenant}.{self.event}"
        return f"{TENANT_PREFIX}.{self.tenant}.{audience.kind.value}.{audience.name}.{self.event}"


# Token counts of live.tenant.<t>.<d>.<a>, live.tenant.<t>.<k>.<n>.<d>.<a>, live.broadcast.<d>.<a>
_TENANT_TOKENS = 5
_NAMED_TOKENS = 7
_BROADCAST_TOKENS = 4
_NAMED_KIND_TEXTS = frozenset(k.value for k in NAMED_KINDS)
_TENANT_ROOM = AudienceKind.TENANT.value
_BROADCAST_ROOM = AudienceKind.BROADCAST.value


def room_of(live_subject: str) -> tuple[str, str] | None:
    """(tenant, room) a ``live.`` subject is delivered to (``BROADCAST_TENANT`` for a broadcast),
    or None where the table has no row. The gateway calls it once per live message, so it only
    reads the shape; :func:`parse_subject` adds the token checks."""
    tokens = live_subject.split(".")
    n = len(tokens)
    if n == _TENANT_TOKENS:
        if tokens[1] == TENANT_PREFIX and tokens[2]:
            return tokens[2], _TENANT_ROOM
    elif n == _NAMED_TOKENS:
        if tokens[1] == TENANT_PREFIX and tokens[2] and tokens[3] in _NAMED_KIND_TEXTS:
            return tokens[2], f"{tokens[3]}:{tokens[4]}"
    elif n == _BROADCAST_TOKENS and tokens[1] == BROADCAST_PREFIX:
        return BROADCAST_TENANT, _BROADCAST_ROOM
    return None


def parse_subject(subject: str, *, catalogue: Catalogue = DEFAULT_CATALOGUE) -> Route:
    """The route of a stored or ``live.`` subject, every token checked; raises on anything
    :attr:`Route.subject` never makes."""
    live = subject if subject.startswith(f"{LIVE_PREFIX}.") else f"{LIVE_PREFIX}.{subject}"
    routed = room_of(live)
    if routed is None:
        raise InvalidField(f"{subject!r} is not a notification subject", field="subject")
    tenant, room = routed
    _, domain, action = live.rsplit(".", 2)
    audience = Audience.from_room(room, field="subject")
    route = Route(None if tenant == BROADCAST_TENANT else tenant, audience, f"{domain}.{action}")
    catalogue.check(route.event)
    return route


def tenant_filter(tenant: str, *, live: bool = False) -> str:
    """Wildcard matching every notification of ``tenant`` and nothing of another: the stream
    filter of a tenant's window, or (``live``) its live subscription. ``BROADCAST_TENANT``
    stands for the broadcasts."""
    prefix = f"{LIVE_PREFIX}." if live else ""
    if tenant == BROADCAST_TENANT:
        return f"{prefix}{BROADCAST_PREFIX}.>"
    return f"{prefix}{TENANT_PREFIX}.{check_id(tenant, field='tenant')}.>"
