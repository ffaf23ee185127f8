"""The event catalogue: the built-in list comes from catalogue.toml, and every refusal says why.

A well-formed but unknown type is ``unknown_event`` (or accepted when the deployment allows
unknown types); a malformed one is always ``invalid_field``, naming the field it came from.
"""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from tidings.catalogue import (
    BUILTIN_EVENTS,
    DEFAULT_CATALOGUE,
    Catalogue,
    check_event_syntax,
)
from tidings.codes import ErrorCode
from tidings.errors import InvalidField, UnknownEvent

MALFORMED = [
    "incident",  # no action
    "incident.created.twice",
    "Incident.created",
    "incident.Created",
    "1ncident.created",
    "incident.",
    ".created",
    "incident-x.created",
    "incident .created",
    "a" * 33 + ".created",  # a part is at most 32 characters
    "",
    "tenant.>",
    "incident.*",
]


def test_the_builtin_events_are_the_toml_file_with_its_descriptions() -> None:
    text = resources.files("tidings").joinpath("catalogue.toml").read_text(encoding="utf-8")
    table = tomllib.loads(text)
    expected = {
        f"{domain}.{action}": description
        for domain, actions in table.items()
        for action, description in actions.items()
    }
    assert expected == BUILTIN_EVENTS
    assert BUILTIN_EVENTS["incident.created"] == "An incident was reported."
    assert DEFAULT_CATALOGUE.events == frozenset(BUILTIN_EVENTS)
    assert not DEFAULT_CATALOGUE.allow_unknown


def test_every_builtin_event_is_well_formed() -> None:
    for event in BUILTIN_EVENTS:
        assert check_event_syntax(event) == event


@pytest.mark.parametrize("event", MALFORMED)
def test_a_malformed_type_is_an_invalid_field_even_when_unknown_types_are_allowed(
    event: str,
) -> None:
    # The syntax is checked once, where a request becomes a Route (tidings.subjects), so a
    # catalogue that allows unknown types never sees a malformed one.
    with pytest.raises(InvalidField) as info:
        check_event_syntax(event)
    assert type(info.value) is InvalidField
    assert info.value.code is ErrorCode.INVALID_FIELD
    assert info.value.field == "event"
    assert event not in DEFAULT_CATALOGUE.events


@pytest.mark.parametrize("value", [None, 7, b"incident.created", ["incident.created"]])
def test_a_type_that_is_not_a_string_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidField) as info:
        check_event_syntax(value, field_name="notifications[2].event")
    assert info.value.field == "notifications[2].event"
    assert "string" in info.value.reason


def test_an_unknown_well_formed_type_is_unknown_event_unless_allowed() -> None:
    with pytest.raises(UnknownEvent) as info:
        DEFAULT_CATALOGUE.check("invoice.paid")
    assert info.value.code is ErrorCode.UNKNOWN_EVENT
    assert info.value.field == "event"
    assert "tidings events" in info.value.reason  # says where the known types are listed
    assert "invoice.paid" not in DEFAULT_CATALOGUE.events
    open_ = Catalogue(allow_unknown=True)
    assert open_.check("invoice.paid") == "invoice.paid"
    assert open_.events == DEFAULT_CATALOGUE.events  # allowing is not adding


def test_extra_types_are_added_to_the_builtin_ones() -> None:
    catalogue = Catalogue.build(extra=["invoice.paid", "invoice.overdue"])
    assert catalogue.check("invoice.paid") == "invoice.paid"
    assert catalogue.check("invoice.overdue") == "invoice.overdue"
    assert catalogue.check("incident.created") == "incident.created"
    assert catalogue.events == frozenset(BUILTIN_EVENTS) | {"invoice.paid", "invoice.overdue"}
    assert not catalogue.allow_unknown
    with pytest.raises(UnknownEvent):
        catalogue.check("invoice.refunded")


def test_a_malformed_extra_type_is_refused_naming_the_setting() -> None:
    with pytest.raises(InvalidField) as info:
        Catalogue.build(extra=["invoice.paid", "Invoice.Paid"])
    assert info.value.field == "TIDINGS_EVENTS_EXTRA"
    assert "'Invoice.Paid'" in info.value.reason


@pytest.mark.parametrize(
    ("seed_name", "tidings_name"),
    [
        ("incident:created", "incident.created"),
        ("work_permit:status_changed", "work_permit.status_changed"),
    ],
)
def test_a_socketio_era_colon_name_is_refused_naming_the_tidings_name(
    seed_name: str, tidings_name: str
) -> None:
    # Teams moving off Socket.IO send their old names first (docs/migrating-from-socketio.md):
    # one name per event in the stream, so the colon form is refused, saying the right one.
    with pytest.raises(InvalidField) as info:
        check_event_syntax(seed_name)
    assert info.value.field == "event"
    assert repr(tidings_name) in info.value.reason
    assert tidings_name in DEFAULT_CATALOGUE.events


def test_a_colon_name_that_is_no_event_either_gets_the_grammar() -> None:
    with pytest.raises(InvalidField) as info:
        check_event_syntax("Incident:Created")
    assert "Socket.IO" not in info.value.reason
    assert "<domain>.<action>" in info.value.reason
