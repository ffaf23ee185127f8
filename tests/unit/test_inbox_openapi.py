"""The inbox API's OpenAPI document says what the app serves: every route is in it, every path
in it is served with the same methods, and every error code it names is in the error table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.support.inbox_api import api_settings
from tests.support.openapi_doc import documented_routes, served_routes
from tidings.codes import ErrorCode
from tidings.inbox.api_app import create_app
from tidings.inbox.openapi import document


def served(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(api_settings(f"sqlite:///{tmp_path / 'inbox.db'}"))
    return served_routes(app)


def documented() -> set[tuple[str, str]]:
    return documented_routes(document())


def test_every_route_is_documented_and_every_documented_route_is_served(tmp_path: Path) -> None:
    assert served(tmp_path) == documented()


def test_the_document_is_openapi_3_1_with_resolvable_references() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    text = repr(doc)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in doc["components"]["schemas"], name


def test_error_codes_named_are_rows_of_the_table() -> None:
    def descriptions(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "description" and isinstance(v, str)] + [
                d for v in node.values() for d in descriptions(v)
            ]
        if isinstance(node, list):
            return [d for v in node for d in descriptions(v)]
        return []

    named = {
        code.strip()
        for text in descriptions(document()["paths"])
        if text.startswith("codes: ")
        for code in text.removeprefix("codes: ").split(",")
    }
    assert named and all(ErrorCode.lookup(code) is not None for code in named)
    assert {"not_found", "forbidden", "too_large", "token_in_url"} <= named
