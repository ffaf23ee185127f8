"""Request validation: what the sidecar and the SDK both accept and refuse."""

from __future__ import annotations

from typing import Any

import pytest
from nats.js.errors import APIError

from tidings import publishing, subjects
from tidings.catalogue import Catalogue
from tidings.envelope import Notification
from tidings.errors import (
    Forbidden,
    InvalidField,
    Malformed,
    TidingsError,
    Unavailable,
    UnknownEvent,
)
from tidings.publishing import PublishPolicy, prepare, prepare_batch
from tidings.subjects import AudienceKind

POLICY = PublishPolicy()


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tenant": "acme",
        "event": "incident.created",
        "title": "Spill in hall 3",
        "message": "Cleanup under way",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_minimal_request_gets_defaults() -> None:
    msg = prepare(body(), PublishPolicy(source="incidents"))
    n = Notification.from_bytes(msg.payload)
    assert msg.id == n.id
    assert n.tenant == "acme"
    assert n.audience.kind is AudienceKind.TENANT
    assert n.severity.value == "info"
    assert n.source == "incidents"
    assert n.data == b"{}"
    assert len(n.id) == 36


@pytest.mark.parametrize(
    ("audience", "subject"),
    [
        (None, "tenant.acme.incident.created"),
        ({"user": "alice"}, "tenant.acme.user.alice.incident.created"),
        ({"role": "admin"}, "tenant.acme.role.admin.incident.created"),
        ({"room": "site-berlin"}, "tenant.acme.room.site-berlin.incident.created"),
    ],
)
def test_audiences_map_to_subjects(audience: Any, subject: str) -> None:
    msg = prepare(body(audience=audience), POLICY)
    n = Notification.from_bytes(msg.payload)
    assert msg.subject == subject
    assert n.id == msg.id
    assert msg.headers["Nats-Msg-Id"] == f"acme:{n.id}"  # an id is a key within its tenant


def test_broadcast_needs_the_right_and_no_tenant() -> None:
    req = body(tenant=None, audience={"broadcast": True})
    with pytest.raises(Forbidden) as refused:
        prepare(req, POLICY)
    assert "TIDINGS_PUBLISHER_ALLOW_BROADCAST=true" in refused.value.reason  # what grants it
    msg = prepare(req, PublishPolicy(allow_broadcast=True))
    assert msg.subject == "broadcast.incident.created"
    with pytest.raises(InvalidField) as info:
        prepare(body(audience={"broadcast": True}), PublishPolicy(allow_broadcast=True))
    assert info.value.field == "tenant"


@pytest.mark.parametrize(
    ("request_body", "error", "field"),
    [
        ([], Malformed, None),
        (body(tenant=None), InvalidField, "tenant"),
        (body(tenant="a.b"), InvalidField, "tenant"),
        (body(tenant=7), InvalidField, "tenant"),
        (body(event="incident"), InvalidField, "event"),
        (body(event="rocket.launched"), UnknownEvent, "event"),
        (body(title=""), InvalidField, "title"),
        (body(title=" "), InvalidField, "title"),
        (body(title=3), InvalidField, "title"),
        (body(title="x" * 201), InvalidField, "title"),
        (body(message=None), InvalidField, "message"),
        (body(severity="fatal"), InvalidField, "severity"),
        (body(severity=["info"]), InvalidField, "severity"),
        (body(data=[1, 2]), InvalidField, "data"),
        (body(data="{}"), InvalidField, "data"),
        (body(id="has space"), InvalidField, "id"),
        (body(audience={"user": "a*"}), InvalidField, "audience.user"),
        (body(audience={"user": "a", "role": "b"}), InvalidField, "audience"),
        (body(audience={"team": "x"}), InvalidField, "audience"),
        (body(audience="user:alice"), InvalidField, "audience"),
        (body(audience={"broadcast": "yes"}), InvalidField, "audience.broadcast"),
        (body(colour="red"), InvalidField, "colour"),
    ],
)
def test_bad_requests_name_the_field(
    request_body: Any, error: type[TidingsError], field: str | None
) -> None:
    with pytest.raises(error) as info:
        prepare(request_body, POLICY)
    assert info.value.field == field
    assert info.value.reason


def test_batch_errors_name_the_index() -> None:
    with pytest.raises(InvalidField) as info:
        prepare_batch([body(), body(tenant="bad tenant")], POLICY, max_items=10)
    assert info.value.field == "notifications[1].tenant"
    with pytest.raises(InvalidField, match="at most 2"):
        prepare_batch([body()] * 3, POLICY, max_items=2)
    with pytest.raises(InvalidField, match="must not be empty"):
        prepare_batch([], POLICY, max_items=2)


def test_extra_events_from_settings_are_accepted() -> None:
    policy = PublishPolicy(catalogue=Catalogue.build(extra=["rocket.launched"]))
    msg = prepare(body(event="rocket.launched"), policy)
    assert Notification.from_bytes(msg.payload).event == "rocket.launched"
    assert msg.subject == "tenant.acme.rocket.launched"


def test_a_request_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each id and the event are checked once on the way to the message, not again downstream."""
    checked: list[str] = []

    def counting_id(value: object, *, field: str) -> str:
        checked.append(field)
        return real_id(value, field=field)

    def counting_event(event: object, *, field_name: str = "event") -> str:
        checked.append(field_name)
        return real_event(event, field_name=field_name)

    real_id, real_event = subjects.check_id, subjects.check_event_syntax
    monkeypatch.setattr(subjects, "check_id", counting_id)
    monkeypatch.setattr(publishing, "check_id", counting_id)
    monkeypatch.setattr(subjects, "check_event_syntax", counting_event)
    msg = prepare(body(audience={"user": "alice"}, id="n-1"), POLICY)
    assert msg.subject == "tenant.acme.user.alice.incident.created"
    assert sorted(checked) == ["audience.user", "event", "id", "tenant"]


@pytest.mark.parametrize(
    ("code", "err_code", "transient"),
    [
        (503, 10008, True),  # JetStream temporarily unavailable (an election, no quorum)
        (409, 10158, True),  # the same Nats-Msg-Id still being stored: ask again later
        (400, 10054, False),  # a refusal that another try cannot change
    ],
)
def test_jetstream_refusals_that_a_retry_can_fix_are_unavailable(
    code: int, err_code: int, transient: bool
) -> None:
    error = publishing._api_error(APIError(code=code, err_code=err_code, description="x"))
    assert isinstance(error, Unavailable) is transient
    assert isinstance(error, TidingsError)
