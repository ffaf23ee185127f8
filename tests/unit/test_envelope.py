"""The envelope survives protobuf and keeps JSON data exact."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tidings.envelope import Notification, Severity, new_id
from tidings.subjects import BROADCAST_AUDIENCE, Audience, AudienceKind

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5), st.sampled_from(Severity))
def test_round_trip_keeps_every_field(data: dict[str, object], severity: Severity) -> None:
    n = Notification(
        id=new_id(),
        tenant="acme",
        event="incident.created",
        audience=Audience(AudienceKind.ROLE, "admin"),
        time=datetime(2026, 11, 25, 12, 30, 1, 123456, tzinfo=UTC),
        title="Spill <b>",
        message="In hall 3 ✓",
        severity=severity,
        source="incidents-svc",
        data=orjson.dumps(data),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate="a=b",
    )
    back = Notification.from_bytes(n.to_bytes())
    assert back == n
    assert back.data_object == data  # integers stay integers


def test_broadcast_round_trip_has_no_tenant() -> None:
    n = Notification(
        id="x1",
        tenant=None,
        event="system.notification",
        audience=BROADCAST_AUDIENCE,
        time=datetime.now(UTC),
        title="Maintenance",
        message="Tonight",
    )
    back = Notification.from_bytes(n.to_bytes())
    assert back.tenant is None
    assert back.audience == BROADCAST_AUDIENCE
    assert back.to_dict()["audience"] == "broadcast"


def test_ids_are_time_ordered_and_unique() -> None:
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 36 for i in ids)
    assert ids[0] <= ids[-1]
