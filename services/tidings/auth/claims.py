"""Who holds a token, and the ONE authorization rule: which audiences that holder may receive.

:meth:`Claims.authorize` (with :meth:`Claims.allows`, :meth:`Claims.may_join` and
:attr:`Claims.default_rooms`) is the only place that decides whether a holder may read an
audience. The gateway calls it for live delivery (``hello`` rooms, ``subscribe``, a
``refresh`` that narrows rights); any other reader — the REST inbox to come — must call it too
rather than re-deriving the rule, so that what a client may fetch and what it is pushed never
differ.

Room patterns (the ``rooms`` claim, ``tidings token --room``, the demo's ``?rooms=``) share
one grammar, :data:`ROOM_PATTERN_RE`: room-name characters plus ``*`` for any run of them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tidings.errors import Forbidden, IdentityChanged, TokenClaimInvalid
from tidings.subjects import ID_RE, Audience, AudienceKind, check_id

ROOM_PATTERN_RE = re.compile(r"[A-Za-z0-9_*-]{1,64}")


def check_room_pattern(pattern: object, *, field: str = "rooms") -> str:
    """A named-room pattern: room-name characters plus ``*`` (any run of them)."""
    if not isinstance(pattern, str) or not ROOM_PATTERN_RE.fullmatch(pattern):
        raise TokenClaimInvalid(
            f"{pattern!r} is not a room pattern (1-64 of A-Z a-z 0-9 _ - *)", field=field
        )
    return pattern


# One frozenset per distinct role set: a gateway keeps a Claims per connection, most users share
# a few role sets, and even an empty frozenset is 216 bytes (measured: decisions, #67).
MAX_ROLE_SETS = 4096
_role_sets: dict[frozenset[str], frozenset[str]] = {}


def _shared(roles: frozenset[str]) -> frozenset[str]:
    found = _role_sets.get(roles)
    if found is None:
        if len(_role_sets) >= MAX_ROLE_SETS:
            _role_sets.clear()
        _role_sets[roles] = found = roles
    return found


def _pattern_regex(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    parts = ("[A-Za-z0-9_-]*".join(re.escape(p) for p in pat.split("*")) for pat in patterns)
    return re.compile("|".join(f"(?:{p})" for p in parts))


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says about its holder, every id already checked."""

    tenant: str
    user: str
    roles: frozenset[str] = frozenset()
    room_patterns: tuple[str, ...] = ()
    expires_at: float | None = None
    # Which token, not what it allows (left out of ==): what revocations match on.
    jti: str | None = field(default=None, compare=False)  # `tidings revoke --jti` names it
    issued_at: float | None = field(default=None, compare=False)  # `iat`: revocations of a
    # user or tenant refuse the tokens issued up to their time
    _rooms_re: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_id(self.tenant, field="tenant")
        check_id(self.user, field="user")
        roles = frozenset(self.roles)
        for role in roles:
            check_id(role, field="roles")
        patterns = tuple(self.room_patterns)
        for pattern in patterns:
            check_room_pattern(pattern)
        object.__setattr__(self, "roles", _shared(roles))
        object.__setattr__(self, "room_patterns", patterns)
        object.__setattr__(self, "_rooms_re", _pattern_regex(patterns))

    def may_join(self, room_name: str) -> bool:
        """Whether a named room (``site-berlin``, not ``room:site-berlin``) is allowed."""
        if self._rooms_re is None or not ID_RE.fullmatch(room_name):
            return False
        return self._rooms_re.fullmatch(room_name) is not None

    def allows(self, audience: Audience) -> bool:
        """The rule: the whole tenant and broadcasts, the holder's own user and roles, and the
        named rooms its patterns match (always within the token's tenant)."""
        kind, name = audience.kind, audience.name
        return (
            kind in (AudienceKind.TENANT, AudienceKind.BROADCAST)
            or (kind is AudienceKind.USER and name == self.user)
            or (kind is AudienceKind.ROLE and name in self.roles)
            or (kind is AudienceKind.ROOM and self.may_join(name))
        )

    def authorize(self, audience: Audience) -> Audience:
        """``audience`` if this holder may receive it, else :class:`Forbidden`.

        The one authorization function: live delivery and every read API go through it.
        """
        if not self.allows(audience):
            raise Forbidden(f"the token does not allow {audience.room}", field="room")
        return audience

    @property
    def default_rooms(self) -> tuple[str, ...]:
        """Rooms every connection of this holder joins without asking."""
        roles = tuple(f"role:{r}" for r in sorted(self.roles))
        return ("tenant", f"user:{self.user}", *roles, "broadcast")

    def expires_in(self, now: float | None = None) -> float | None:
        """Seconds until ``exp`` (negative once passed), ``None`` for a token without one."""
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def ensure_same_identity(self, new: Claims) -> Claims:
        """``new`` if it names the same tenant and user (a refresh), else IdentityChanged."""
        if (new.tenant, new.user) != (self.tenant, self.user):
            raise IdentityChanged(
                f"the new token is for {new.tenant}/{new.user}, the connection is for "
                f"{self.tenant}/{self.user}",
                field="token",
            )
        return new
