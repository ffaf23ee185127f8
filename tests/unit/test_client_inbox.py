"""The Python inbox client's pure parts: what a filter sends, where the API is, how answers
and refusals read. The calls themselves run against a real `tidings inbox api` in
tests/integration/test_inbox_client.py."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest

from tidings.client.errors import Refused, gateway_error
from tidings.client.inbox import InboxClient, inbox_base, token_expiry
from tidings.client.inbox_items import Counts, Filter, InboxItem, MarkResult, Page, Preferences
from tidings.errors import InvalidField, Malformed

ITEM = {
    "seq": 7,
    "id": "01J0000000000000000000000A",
    "event": "incident.created",
    "room": "user:alice",
    "time": "2026-01-02T03:04:05.000006Z",
    "title": "Pump 3 failed",
    "message": "pressure low",
    "severity": "error",
    "data": {"pump": 3},
    "read": False,
    "seen": True,
    "archived": False,
}
COUNTS = {
    "total": 3,
    "unread": 2,
    "unseen": 1,
    "unread_by_severity": {"info": 1, "success": 0, "warning": 0, "error": 1, "critical": 0},
}


def test_a_filter_sends_only_what_is_set_repeating_repeatable_keys() -> None:
    assert Filter().query() == []
    chosen = Filter(
        status="unread",
        domain=["incident", "audit"],
        severity="critical",
        since=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        q="50% off_'x'",
    )
    assert chosen.query() == [
        ("domain", "incident"),
        ("domain", "audit"),
        ("severity", "critical"),
        ("status", "unread"),
        ("q", "50% off_'x'"),
        ("since", "2026-01-02T03:04:05+00:00"),
    ]
    assert chosen.body()["domain"] == ["incident", "audit"]
    assert Filter(until="2026-02-01T00:00:00Z").body() == {"until": "2026-02-01T00:00:00Z"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"status": "new"}, "status"),
        ({"domain": [""]}, "domain"),
        ({"room": [3]}, "room"),
        ({"since": datetime(2026, 1, 1)}, "since"),  # naive: which zone?
    ],
)
def test_a_filter_refuses_what_the_api_would_misread(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidField) as caught:
        Filter(**fields)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_the_base_url_gets_the_routes_prefix_once_and_never_a_token() -> None:
    assert inbox_base("http://127.0.0.1:8085") == "http://127.0.0.1:8085/v1/inbox/"
    assert inbox_base("https://x.example/api/") == "https://x.example/api/v1/inbox/"
    assert inbox_base("https://x.example/v1/inbox") == "https://x.example/v1/inbox/"
    for bad in ("ws://h/", "127.0.0.1:8085", "http://h/?token=abc"):
        with pytest.raises(InvalidField) as caught:
            inbox_base(bad)
        assert caught.value.field == "base_url"
    with pytest.raises(InvalidField):
        InboxClient("http://h", "")


def test_token_expiry_reads_exp_unverified_and_nothing_else() -> None:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()

    assert token_expiry(f"{part({'alg': 'HS256'})}.{part({'exp': 1767225600})}.sig") == 1767225600
    assert token_expiry(f"{part({})}.{part({'sub': 'x'})}.sig") is None
    assert token_expiry(f"{part({})}.{part({'exp': True})}.sig") is None
    assert token_expiry("not-a-jwt") is None


def test_answers_read_into_typed_values_ignoring_keys_of_a_newer_server() -> None:
    item = InboxItem.from_json(ITEM | {"brand_new": 1})
    assert (item.seq, item.domain, item.read, item.seen, item.data) == (
        7,
        "incident",
        False,
        True,
        {"pump": 3},
    )
    assert item.to_dict() == ITEM
    page = Page.from_json({"items": [ITEM], "next_cursor": "c2"})
    assert (len(page.items), page.next_cursor) == (1, "c2")
    counts = Counts.from_json(COUNTS)
    assert counts.to_dict() == COUNTS
    marked = MarkResult.from_json({"changed": [ITEM["id"]], "counts": COUNTS})
    assert marked.changed == (ITEM["id"],)
    prefs = Preferences.from_json(
        {
            "channels": ["in_app", "email"],
            "defaults": {"audit": {"in_app": False}},
            "overrides": {},
            "effective": {"audit": {"in_app": False}, "incident": {"in_app": True}},
        }
    )
    assert prefs.muted() == ["audit"]


@pytest.mark.parametrize(
    "bad",
    [
        ITEM | {"seq": "7"},
        ITEM | {"read": 0},
        {k: v for k, v in ITEM.items() if k != "title"},
        ["not", "an", "object"],
    ],
)
def test_an_answer_missing_or_mistyping_a_known_key_is_malformed(bad: object) -> None:
    with pytest.raises(Malformed):
        InboxItem.from_json(bad)


def test_an_api_refusal_reads_like_the_gateway_s_with_its_code_and_status() -> None:
    body = b'{"error": {"code": "invalid_field", "reason": "not a cursor", "field": "cursor"}}'
    refused = gateway_error(body, status=400)
    assert isinstance(refused, Refused)
    assert (refused.error, refused.status, refused.field, refused.close_code) == (
        "invalid_field",
        400,
        "cursor",
        None,
    )
    assert str(refused) == "tidings: invalid_field (HTTP 400): HTTP 400: not a cursor"
    assert gateway_error(b"<html>bad gateway</html>", status=502).error == "http_502"
