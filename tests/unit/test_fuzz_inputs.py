"""Property tests of every untrusted input's first parser (issue 14, fuzzing): a client frame,
a publish body, a stored message, a JWT's time claims. Whatever comes in, the answer is the
parsed value or one of our errors (a code from the table), never another exception: that is
what becomes a 500, a 1011 or a traceback in the logs."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidings.envelope import Rejected
from tidings.errors import TidingsError
from tidings.gateway.ingest import wire_line
from tidings.jsondata import check_body
from tidings.protocol import parse_client_frame
from tidings.publishing import PublishPolicy, prepare

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FRAME_TYPES = ["hello", "subscribe", "unsubscribe", "refresh", "ping", "pong", "HELLO", "", "x"]
frame_fields = st.fixed_dictionaries(
    {"type": st.sampled_from(FRAME_TYPES) | json_values},
    optional={
        "token": json_values,
        "since": json_values,
        "epoch": json_values,
        "rooms": json_values,
        "room": json_values,
        "id": json_values,
    },
)


def refused_precisely(call: Any, *args: Any, **kw: Any) -> None:
    try:
        call(*args, **kw)
    except TidingsError as exc:
        assert exc.code is not None


@FAST
@given(frame_fields)
def test_any_client_frame_object_parses_or_is_refused_with_a_code(fields: dict[str, Any]) -> None:
    try:
        raw = orjson.dumps(fields)
    except TypeError:
        return  # not encodable as JSON at all (a client cannot send it either)
    refused_precisely(parse_client_frame, raw, max_bytes=16 * 1024, max_rooms=64)


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_as_a_client_frame_are_refused_with_a_code(raw: bytes) -> None:
    refused_precisely(parse_client_frame, raw, max_bytes=16 * 1024, max_rooms=64)


publish_bodies = st.fixed_dictionaries(
    {},
    optional={
        "tenant": st.sampled_from(["acme", "a.b", "", "x" * 70]) | json_values,
        "event": st.sampled_from(["incident.created", "x", "a:b"]) | json_values,
        "title": json_values,
        "message": json_values,
        "audience": json_values
        | st.sampled_from([{"user": "alice"}, {"broadcast": True}, {"room": "r"}]),
        "severity": json_values,
        "data": json_values,
        "id": json_values,
        "source": json_values,
    },
)


@FAST
@given(publish_bodies | json_values)
def test_any_publish_body_is_prepared_or_refused_with_a_code(body: Any) -> None:
    refused_precisely(prepare, body, PublishPolicy())
    try:
        raw = orjson.dumps(body)
    except TypeError:
        return
    refused_precisely(check_body, raw)


@FAST
@given(st.binary(max_size=300), st.sampled_from(["live.tenant.acme.incident.created", "live.x"]))
def test_any_stored_message_is_delivered_or_rejected(payload: bytes, subject: str) -> None:
    with contextlib.suppress(Rejected):
        wire_line(subject, payload, 1)
