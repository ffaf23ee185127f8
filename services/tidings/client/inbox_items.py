"""What the inbox API answers and what a list selects, as typed values (docs/inbox.md).

Readers are lenient the way the wire protocol asks clients to be: unknown keys of a newer
server are ignored; a missing or mistyped known key is :class:`~tidings.errors.Malformed`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tidings.errors import InvalidField, Malformed

SEVERITIES = ("info", "success", "warning", "error", "critical")
STATUSES = ("all", "unread", "read", "unseen", "seen", "archived")


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise Malformed(f"the inbox API answered without a valid {key!r}", field=key)
    return value


def _object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise Malformed(f"the inbox API answered {what} with no JSON object")
    return data


@dataclass(frozen=True, slots=True)
class Counts:
    """Exact counts: archived notifications and muted domains excluded, no cap."""

    total: int
    unread: int
    unseen: int
    unread_by_severity: Mapping[str, int]
    seq: int | None = None  # the highest stream sequence stored when they were taken

    @classmethod
    def from_json(cls, data: Any) -> Counts:
        data = _object(data, "counts")
        by_severity = _get(data, "unread_by_severity", Mapping)
        return cls(
            total=_get(data, "total", int),
            unread=_get(data, "unread", int),
            unseen=_get(data, "unseen", int),
            unread_by_severity={s: int(by_severity.get(s, 0)) for s in SEVERITIES},
            seq=_get(data, "seq", int) if "seq" in data else None,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "total": self.total,
            "unread": self.unread,
            "unseen": self.unseen,
            "unread_by_severity": dict(self.unread_by_severity),
        }
        if self.seq is not None:
            out["seq"] = self.seq
        return out


@dataclass(frozen=True, slots=True)
class InboxItem:
    """A notification as the inbox keeps it: the live frame's fields and the user's state."""

    seq: int
    id: str
    event: str
    room: str
    time: str
    title: str
    message: str
    severity: str
    data: Mapping[str, Any]
    read: bool
    seen: bool
    archived: bool

    @classmethod
    def from_json(cls, data: Any) -> InboxItem:
        data = _object(data, "an item")
        text = {k: _get(data, k, str) for k in ("id", "event", "room", "time", "title")}
        flags = {k: _get(data, k, bool) for k in ("read", "seen", "archived")}
        return cls(
            seq=_get(data, "seq", int),
            message=_get(data, "message", str),
            severity=_get(data, "severity", str),
            data=_get(data, "data", Mapping),
            **text,
            **flags,
        )

    @property
    def domain(self) -> str:
        """The event's domain: ``incident`` of ``incident.created``."""
        return self.event.split(".", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {
            "data": dict(self.data)
        }


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the inbox, newest first; ``next_cursor`` is None on the last page."""

    items: tuple[InboxItem, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: Any) -> Page:
        data = _object(data, "a list")
        cursor = data.get("next_cursor")
        if cursor is not None and not isinstance(cursor, str):
            raise Malformed("the inbox API answered a next_cursor that is not text")
        items = _get(data, "items", list)
        return cls(tuple(InboxItem.from_json(item) for item in items), cursor)


@dataclass(frozen=True, slots=True)
class MarkResult:
    """The ids whose state changed, and the counts after the change."""

    changed: tuple[str, ...]
    counts: Counts

    @classmethod
    def from_json(cls, data: Any) -> MarkResult:
        data = _object(data, "a mark")
        changed = _get(data, "changed", list)
        return cls(tuple(str(i) for i in changed), Counts.from_json(data.get("counts")))


Switches = Mapping[str, Mapping[str, bool]]  # domain -> channel -> on


@dataclass(frozen=True, slots=True)
class Preferences:
    """Per event domain and channel: the tenant's defaults, the user's overrides, the result."""

    channels: tuple[str, ...]
    defaults: Switches
    overrides: Switches
    effective: Switches

    @classmethod
    def from_json(cls, data: Any) -> Preferences:
        data = _object(data, "preferences")
        return cls(
            channels=tuple(str(c) for c in _get(data, "channels", list)),
            defaults=_get(data, "defaults", Mapping),
            overrides=_get(data, "overrides", Mapping),
            effective=_get(data, "effective", Mapping),
        )

    def muted(self, channel: str = "in_app") -> list[str]:
        """The domains switched off for ``channel``."""
        return sorted(d for d, channels in self.effective.items() if channels.get(channel) is False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "channels": list(self.channels),
            "defaults": self.defaults,
            "overrides": self.overrides,
            "effective": self.effective,
        }


def _texts(values: str | Iterable[str], name: str) -> tuple[str, ...]:
    items = (values,) if isinstance(values, str) else tuple(values)
    if not all(isinstance(v, str) and v for v in items):
        raise InvalidField("give non-empty strings", field=name)
    return items


def _instant(value: datetime | str | None, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise InvalidField("give a timezone-aware datetime", field=name)
    return value.isoformat()


@dataclass(frozen=True, slots=True, kw_only=True)
class Filter:
    """What a list or a mark-all selects; every field optional (the default: not archived).

    ``domain``, ``event``, ``severity`` and ``room`` take one string or several (the API takes
    at most 20 of each); ``since``/``until`` an aware datetime or an RFC 3339 string; ``q`` text
    found in the title or message, matched literally.
    """

    status: str | None = None
    domain: str | Iterable[str] = ()
    event: str | Iterable[str] = ()
    severity: str | Iterable[str] = ()
    room: str | Iterable[str] = ()
    since: datetime | str | None = None
    until: datetime | str | None = None
    q: str | None = None
    _lists: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise InvalidField(f"one of {', '.join(STATUSES)}", field="status")
        lists = {k: _texts(getattr(self, k), k) for k in ("domain", "event", "severity", "room")}
        object.__setattr__(self, "_lists", lists)
        for name in ("since", "until"):
            _instant(getattr(self, name), name)

    def body(self) -> dict[str, Any]:
        """The API's JSON filter (mark-all): only what is set, lists as lists."""
        out: dict[str, Any] = {k: list(v) for k, v in self._lists.items() if v}
        for name in ("status", "q"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for name in ("since", "until"):
            instant = _instant(getattr(self, name), name)
            if instant is not None:
                out[name] = instant
        return out

    def query(self) -> list[tuple[str, str]]:
        """The list's query parameters, repeatable keys repeated."""
        pairs: list[tuple[str, str]] = []
        for key, value in self.body().items():
            pairs.extend((key, v) for v in (value if isinstance(value, list) else [value]))
        return pairs
