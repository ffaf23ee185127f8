"""What a caller asks of the inbox list: the filter, checked before any SQL is built.

One :class:`Filter` serves ``GET /v1/inbox/notifications`` (from the query string) and
``POST /v1/inbox/mark-all`` (its ``filter`` object), so both accept exactly the same keys and
refuse the same way: an unknown key or a bad value is ``invalid_field`` naming it; more than
:data:`MAX_VALUES` values of one key, or a ``q`` over :data:`MAX_Q` characters, is ``too_large``
(split the request). Nothing here touches the database: :mod:`tidings.inbox.queries` turns a
checked filter into WHERE clauses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from tidings.catalogue import check_domain, check_event_syntax
from tidings.envelope import Severity
from tidings.errors import InvalidField, TooLarge
from tidings.subjects import Audience

MAX_VALUES = 20  # values of one repeatable key
MAX_Q = 200  # characters of the text search
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class Status(StrEnum):
    """Which state a listed notification is in; every status but ``archived`` hides archived."""

    ALL = "all"
    UNREAD = "unread"
    READ = "read"
    UNSEEN = "unseen"
    SEEN = "seen"
    ARCHIVED = "archived"


REPEATABLE = ("domain", "event", "severity", "room")
SINGLE = ("status", "since", "until", "q")
PAGING = ("limit", "cursor")  # the list's query only, not a mark-all filter
_SEVERITIES = frozenset(s.value for s in Severity)


@dataclass(frozen=True, slots=True)
class Filter:
    """A checked filter; empty tuples and ``None`` mean "any"."""

    status: Status = Status.ALL
    domain: tuple[str, ...] = ()
    event: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()
    room: tuple[Audience, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None

    def key(self) -> str:
        """A canonical text of the filter (a cursor is bound to the filter it was made for)."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = ",".join(sorted(a.room if isinstance(a, Audience) else a for a in value))
            elif isinstance(value, datetime):
                value = value.isoformat()
            parts.append(f"{f.name}={'' if value is None else value}")
        return "&".join(parts)


def _time(text: str, name: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidField(
            f"{text[:40]!r} is not an RFC 3339 time (e.g. 2026-03-04T05:06:07Z)", field=name
        ) from None
    if when.tzinfo is None:
        raise InvalidField("give the time zone (Z or +hh:mm)", field=name)
    return when.astimezone(UTC)


def _one(name: str, value: str) -> Any:
    if name == "domain":
        return check_domain(value, field_name=name)
    if name == "event":
        return check_event_syntax(value, field_name=name)
    if name == "severity":
        if value not in _SEVERITIES:
            allowed = ", ".join(s.value for s in Severity)
            raise InvalidField(f"{value[:40]!r} is not a severity ({allowed})", field=name)
        return value
    return Audience.from_room(value, field=name)


def build(values: Mapping[str, Sequence[str]], *, allowed: Iterable[str] = ()) -> Filter:
    """A :class:`Filter` from ``{key: [text, ...]}``; keys in ``allowed`` are left to the caller
    (the list's ``limit`` and ``cursor``); any other key is refused."""
    extra = set(allowed)
    args: dict[str, Any] = {}
    for name in sorted(values):
        texts = list(values[name])
        if name in extra:
            continue
        if name in REPEATABLE:
            if len(texts) > MAX_VALUES:
                raise TooLarge(
                    f"{len(texts)} values; at most {MAX_VALUES} per filter key", field=name
                )
            args[name] = tuple(dict.fromkeys(_one(name, t) for t in texts))
            continue
        if name not in SINGLE:
            raise InvalidField("unknown filter key", field=name[:64])
        if len(texts) != 1:
            raise InvalidField("give it once", field=name)
        text = texts[0]
        if name == "status":
            try:
                args[name] = Status(text)
            except ValueError:
                choices = ", ".join(s.value for s in Status)
                raise InvalidField(f"{text[:40]!r} is not one of {choices}", field=name) from None
        elif name == "q":
            if len(text) > MAX_Q:
                raise TooLarge(f"{len(text)} characters; at most {MAX_Q}", field=name)
            if "\x00" in text:
                raise InvalidField("must not contain a NUL character", field=name)
            args[name] = text or None
        else:
            args[name] = _time(text, name)
    found = Filter(**args)
    if found.since and found.until and found.since > found.until:
        raise InvalidField("since is after until", field="since")
    return found


def from_json(body: object, *, field: str = "filter") -> Filter:
    """A filter given as a JSON object (mark-all): the list's keys, a repeatable one as a string
    or an array of strings."""
    if not isinstance(body, Mapping):
        raise InvalidField("must be an object of filter keys", field=field)
    values: dict[str, list[str]] = {}
    for name, value in body.items():
        where = f"{field}.{str(name)[:64]}"
        if name in PAGING:
            raise InvalidField("not a filter key here (mark-all has no paging)", field=where)
        items = value if isinstance(value, list) and name in REPEATABLE else [value]
        if not all(isinstance(v, str) for v in items):
            kind = "a string or an array of strings" if name in REPEATABLE else "a string"
            raise InvalidField(f"must be {kind}", field=where)
        values[str(name)] = items
    try:
        return build(values)
    except (InvalidField, TooLarge) as exc:
        raise exc.at(field) from None
