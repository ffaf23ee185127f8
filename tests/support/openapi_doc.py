"""What the OpenAPI document tests of the three served documents (sidecar, inbox API, gateway
API port) read from an app and a document, in one place."""

from __future__ import annotations

import re
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route


def served_routes(app: Starlette) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves; Starlette's implicit HEAD left out."""
    pairs = set()
    for route in app.routes:
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET
                pairs.add((method.lower(), route.path))
    return pairs


def documented_routes(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """(method, path) of every operation in the document."""
    return {(method, path) for path, ops in doc["paths"].items() for method in ops}


def unresolved_references(doc: dict[str, Any]) -> list[str]:
    """Schema names referred to but not among the document's components."""
    names = re.findall(r"#/components/schemas/(\w+)", repr(doc))
    return [name for name in names if name not in doc["components"]["schemas"]]


def error_answers(node: Any) -> list[tuple[str, str]]:
    """(HTTP status, error code) of every answer whose description names codes."""
    if not isinstance(node, dict):
        return []
    found = [
        (status, code)
        for status, answer in node.get("responses", {}).items()
        if answer["description"].startswith("codes: ")
        for code in answer["description"].removeprefix("codes: ").split(", ")
    ]
    return found + [x for value in node.values() for x in error_answers(value)]
