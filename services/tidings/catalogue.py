"""The event catalogue: which ``<domain>.<action>`` types may be published.

The list is data (``catalogue.toml``), not code, so adding an event is a one-line change that
the publisher, the SDK and the gateway all see.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources

from tidings.errors import InvalidField, UnknownEvent

EVENT_PART = r"[a-z][a-z0-9_]{0,31}"
EVENT_RE = re.compile(rf"^({EVENT_PART})\.({EVENT_PART})$")
DOMAIN_RE = re.compile(rf"^{EVENT_PART}$")


def _load_builtin() -> dict[str, str]:
    text = resources.files("tidings").joinpath("catalogue.toml").read_text(encoding="utf-8")
    events: dict[str, str] = {}
    for domain, actions in tomllib.loads(text).items():
        for action, description in actions.items():
            events[f"{domain}.{action}"] = str(description)
    return events


BUILTIN_EVENTS: dict[str, str] = _load_builtin()


def check_event_syntax(event: object, *, field_name: str = "event") -> str:
    """Return ``event`` if it is a well-formed ``<domain>.<action>``, else raise."""
    if not isinstance(event, str):
        raise InvalidField("must be a string", field=field_name)
    if not EVENT_RE.fullmatch(event):
        dotted = event.replace(":", ".", 1)
        if ":" in event and EVENT_RE.fullmatch(dotted):
            # The Socket.IO-era name (docs/migrating-from-socketio.md): say the new one.
            raise InvalidField(
                f"{event!r} is a Socket.IO-style name; Tidings calls this event {dotted!r}",
                field=field_name,
            )
        raise InvalidField(
            f"{event!r} is not '<domain>.<action>', each part matching {EVENT_PART}",
            field=field_name,
        )
    return event


def check_domain(domain: object, *, field_name: str = "domain") -> str:
    """Return ``domain`` if it is well formed as the ``<domain>`` part of an event, else raise
    (preferences and filters name domains; the grammar is the event's)."""
    if not isinstance(domain, str):
        raise InvalidField("must be a string", field=field_name)
    if not DOMAIN_RE.fullmatch(domain):
        raise InvalidField(
            f"{domain[:40]!r} is not an event domain: it must match {EVENT_PART}", field=field_name
        )
    return domain


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The set of event types a deployment accepts."""

    events: frozenset[str] = field(default_factory=lambda: frozenset(BUILTIN_EVENTS))
    allow_unknown: bool = False

    @classmethod
    def build(cls, *, extra: Iterable[str] = (), allow_unknown: bool = False) -> Catalogue:
        extra = [check_event_syntax(e, field_name="TIDINGS_EVENTS_EXTRA") for e in extra]
        return cls(frozenset(BUILTIN_EVENTS) | frozenset(extra), allow_unknown)

    def check(self, event: str) -> str:
        """Return ``event`` if this catalogue accepts it, else raise ``UnknownEvent``; its
        syntax was checked where it became a :class:`~tidings.subjects.Route`."""
        if event in self.events or self.allow_unknown:
            return event
        raise UnknownEvent(
            f"unknown event type {event!r}; known types are listed by `tidings events`",
            field="event",
        )


DEFAULT_CATALOGUE = Catalogue()
