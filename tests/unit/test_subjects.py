"""The subject grammar: every row of the design's table, and the tenant boundary."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.catalogue import BUILTIN_EVENTS, DEFAULT_CATALOGUE, Catalogue
from tidings.errors import InvalidField, UnknownEvent
from tidings.subjects import (
    BROADCAST_AUDIENCE,
    BROADCAST_TENANT,
    TENANT_AUDIENCE,
    Audience,
    AudienceKind,
    Route,
    check_id,
    parse_subject,
    room_of,
    tenant_filter,
)

ids = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
events = st.sampled_from(sorted(BUILTIN_EVENTS))
named_kinds = st.sampled_from([AudienceKind.USER, AudienceKind.ROLE, AudienceKind.ROOM])
tenant_audiences = st.one_of(st.just(TENANT_AUDIENCE), st.builds(Audience, named_kinds, ids))
tenant_routes = st.builds(Route, ids, tenant_audiences, events)
broadcast_routes = st.builds(Route, st.none(), st.just(BROADCAST_AUDIENCE), events)


@pytest.mark.parametrize(
    ("route", "subject", "room"),
    [
        (
            Route("acme", TENANT_AUDIENCE, "incident.created"),
            "tenant.acme.incident.created",
            "tenant",
        ),
        (
            Route("acme", Audience(AudienceKind.USER, "alice"), "audit.assigned"),
            "tenant.acme.user.alice.audit.assigned",
            "user:alice",
        ),
        (
            Route("acme", Audience(AudienceKind.ROLE, "safety-officer"), "quota.warning"),
            "tenant.acme.role.safety-officer.quota.warning",
            "role:safety-officer",
        ),
        (
            Route("acme", Audience(AudienceKind.ROOM, "site_berlin"), "work_permit.created"),
            "tenant.acme.room.site_berlin.work_permit.created",
            "room:site_berlin",
        ),
        (
            Route(None, BROADCAST_AUDIENCE, "system.notification"),
            "broadcast.system.notification",
            "broadcast",
        ),
        # a tenant-wide event whose domain is "user" is 4 tokens, not a user audience
        (
            Route("acme", TENANT_AUDIENCE, "user.role_changed"),
            "tenant.acme.user.role_changed",
            "tenant",
        ),
    ],
)
def test_every_row_of_the_table(route: Route, subject: str, room: str) -> None:
    assert route.subject == subject
    assert parse_subject(subject) == route
    assert parse_subject("live." + subject) == route
    assert route.audience.room == room
    assert Audience.from_room(room) == route.audience
    assert room_of("live." + subject) == (route.tenant or BROADCAST_TENANT, room)


@given(tenant_routes)
def test_parse_inverts_build_for_tenants(route: Route) -> None:
    assert parse_subject(route.subject) == route
    assert room_of("live." + route.subject) == (route.tenant, route.audience.room)


@given(broadcast_routes)
def test_parse_inverts_build_for_broadcast(route: Route) -> None:
    assert parse_subject(route.subject) == route
    assert room_of("live." + route.subject) == (BROADCAST_TENANT, "broadcast")


@given(tenant_routes)
def test_a_tenant_subject_stays_in_its_tenant(route: Route) -> None:
    subject = route.subject
    tokens = subject.split(".")
    assert tokens[:2] == ["tenant", route.tenant]
    assert not {"*", ">", ""} & set(tokens)
    assert all(" " not in t for t in tokens)
    # it matches its own tenant's wildcard and no other tenant's
    assert subject.startswith(tenant_filter(route.tenant or "")[:-1])
    assert f"live.{subject}".startswith(tenant_filter(route.tenant or "", live=True)[:-1])
    assert parse_subject(subject).tenant == route.tenant
    assert room_of(f"live.{subject}") == (route.tenant, route.audience.room)


@given(st.text(min_size=0, max_size=80), st.sampled_from(["tenant", "user", "role", "room"]))
def test_any_accepted_id_is_a_single_safe_token(value: str, field: str) -> None:
    try:
        checked = check_id(value, field=field)
    except InvalidField as exc:
        assert exc.field == field
        assert exc.reason
        return
    assert checked == value
    assert "." not in value and "*" not in value and ">" not in value
    assert not any(c.isspace() for c in value)
    assert 1 <= len(value) <= 64


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("ac.me", "'.'"),
        ("acme*", "'*'"),
        ("acme>", "'>'"),
        ("ac me", "' '"),
        ("", "empty"),
        ("a" * 65, "65 characters"),
        ("acmé", "'é'"),
        ("a\nb", "'\\n'"),
    ],
)
def test_bad_ids_name_the_field_and_reason(value: str, reason: str) -> None:
    with pytest.raises(InvalidField) as info:
        Route(value, TENANT_AUDIENCE, "incident.created")
    assert info.value.field == "tenant"
    assert reason in info.value.reason
    with pytest.raises(InvalidField) as info:
        Audience(AudienceKind.USER, value)
    assert info.value.field == "audience.user"


def test_unknown_event_is_rejected_unless_allowed() -> None:
    route = Route("acme", TENANT_AUDIENCE, "rocket.launched")
    with pytest.raises(UnknownEvent):
        DEFAULT_CATALOGUE.check(route.event)
    with pytest.raises(UnknownEvent):
        parse_subject(route.subject)
    lenient = Catalogue.build(allow_unknown=True)
    assert lenient.check(route.event) == "rocket.launched"
    assert route.subject == "tenant.acme.rocket.launched"
    extra = Catalogue.build(extra=["rocket.launched"])
    assert parse_subject("tenant.acme.rocket.launched", catalogue=extra) == route


@pytest.mark.parametrize("event", ["incident", "Incident.Created", "a.b.c", "", None, 7])
def test_a_route_refuses_an_ill_formed_event(event: object) -> None:
    with pytest.raises(InvalidField) as info:
        Route("acme", TENANT_AUDIENCE, event)  # type: ignore[arg-type]
    assert info.value.field == "event"


@pytest.mark.parametrize(
    "subject",
    [
        "tenant.acme.incident",  # too short
        "tenant.acme.group.x.incident.created",  # no such audience kind
        "tenant.*.incident.created",  # wildcard tenant
        "tenant.>.incident.created",
        "tenants.acme.incident.created",
        "broadcast.incident",
        "tenant.acme.user.alice.bob.incident.created",  # 7 tokens
        "tenant.acme.Incident.Created",  # event grammar
    ],
)
def test_parse_refuses_what_build_never_makes(subject: str) -> None:
    with pytest.raises(InvalidField):
        parse_subject(subject)


@pytest.mark.parametrize(
    "subject",
    [
        "live",
        "live.tenant",
        "live.tenant.acme",
        "live.tenant.acme.incident",
        "live.tenant..incident.created",
        "live.tenant.acme.group.x.incident.created",
        "live.tenant.acme.user.alice.bob.incident.created",
        "live.tenants.acme.incident.created",
        "live.broadcast.incident",
        "live.broadcast.a.b.c",
    ],
)
def test_the_live_router_has_no_room_for_what_build_never_makes(subject: str) -> None:
    assert room_of(subject) is None


def test_broadcast_has_no_tenant() -> None:
    with pytest.raises(InvalidField) as info:
        Route("acme", BROADCAST_AUDIENCE, "system.notification")
    assert info.value.field == "tenant"
    with pytest.raises(InvalidField) as info:
        Route(None, TENANT_AUDIENCE, "system.notification")
    assert info.value.field == "tenant"


@pytest.mark.parametrize(
    "room", ["user", "user:", "tenant:acme", "group:x", "room:a.b", "room:*", "", "broadcast:x"]
)
def test_from_room_refuses_bad_rooms(room: str) -> None:
    with pytest.raises(InvalidField):
        Audience.from_room(room)


def test_tenant_filters_for_the_stream_and_the_live_subjects() -> None:
    assert tenant_filter("acme") == "tenant.acme.>"
    assert tenant_filter("acme", live=True) == "live.tenant.acme.>"
    assert tenant_filter(BROADCAST_TENANT) == "broadcast.>"
    assert tenant_filter(BROADCAST_TENANT, live=True) == "live.broadcast.>"
    with pytest.raises(InvalidField):
        tenant_filter("ac.me")
