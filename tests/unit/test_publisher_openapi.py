"""The sidecar's OpenAPI document says what the sidecar serves: every route is in it and every
path in it is served with the same methods, the notification's properties are exactly the fields
``publishing.prepare`` takes (with its limits), and every error code it names is in the table."""

from __future__ import annotations

from pathlib import Path

from tests.support.openapi_doc import (
    documented_routes,
    error_answers,
    served_routes,
    unresolved_references,
)
from tests.support.publisher_process import make_settings
from tidings.catalogue import Catalogue
from tidings.codes import ErrorCode
from tidings.errors import TidingsError
from tidings.publisher.app import create_app
from tidings.publisher.openapi import document
from tidings.publishing import FIELDS, MAX_MESSAGE, MAX_SOURCE, MAX_TITLE, PublishPolicy, prepare
from tidings.settings import NatsSettings


def served(tmp_path: Path) -> set[tuple[str, str]]:
    settings = make_settings(NatsSettings(urls=["nats://127.0.0.1:9"]), tmp_path / "outbox")
    app = create_app(settings)
    return served_routes(app)


def test_every_route_is_documented_and_every_documented_route_is_served(tmp_path: Path) -> None:
    assert served(tmp_path) == documented_routes(document())


def test_the_notification_is_what_prepare_takes_with_its_limits() -> None:
    tenant = document()["components"]["schemas"]["Notification"]
    assert set(tenant["properties"]) == FIELDS
    limits = {k: tenant["properties"][k]["maxLength"] for k in ("title", "message", "source")}
    assert limits == {"title": MAX_TITLE, "message": MAX_MESSAGE, "source": MAX_SOURCE}
    assert set(tenant["properties"]["event"]["enum"]) == Catalogue().events
    # A sidecar that may broadcast documents the broadcast shape too, without a tenant.
    both = document(allow_broadcast=True)["components"]["schemas"]["Notification"]["oneOf"]
    assert both[0] == tenant
    assert "tenant" not in both[1]["properties"]
    # null reads as absent where prepare reads it so (schemathesis found the first document
    # saying otherwise), and nowhere else.
    nullable = {k for k, v in tenant["properties"].items() if "null" in repr(v.get("type"))}
    nullable |= (
        {"audience"} if {"type": "null"} in tenant["properties"]["audience"]["oneOf"] else set()
    )
    assert nullable == {"id", "audience", "data", "source"}
    open_catalogue = document(Catalogue(allow_unknown=True))["components"]["schemas"]
    assert "pattern" in open_catalogue["Notification"]["properties"]["event"]


def test_the_document_is_openapi_3_1_with_resolvable_references() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    assert not unresolved_references(doc)


def test_error_codes_named_are_rows_of_the_table_with_their_status() -> None:
    named = error_answers(document()["paths"])
    assert named
    for status, code in named:
        assert int(ErrorCode(code).http_status) == int(status), (code, status)


def test_the_fields_documented_nullable_are_the_ones_prepare_reads_null_as_absent() -> None:
    tenant = document()["components"]["schemas"]["Notification"]
    base = {"tenant": "acme", "event": "incident.created", "title": "t", "message": "m"}
    for name, schema in tenant["properties"].items():
        nullable = "null" in repr(schema.get("type")) or {"type": "null"} in schema.get("oneOf", [])
        try:
            prepare({**base, name: None}, PublishPolicy())
            accepted = True
        except TidingsError:
            accepted = False
        assert accepted == nullable, name
