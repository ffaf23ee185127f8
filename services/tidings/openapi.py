"""The pieces every served OpenAPI document is built from (the sidecar's, the inbox API's, the
gateway API port's): one shape of error answer for the one error table, so the three documents
cannot drift in how they describe a refusal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tidings.codes import ErrorCode

REF = "#/components/schemas/"
RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}}}
WWW_AUTHENTICATE = {"WWW-Authenticate": {"schema": {"type": "string"}}}


def ref(name: str) -> dict[str, str]:
    """A reference to a schema of the document's components."""
    return {"$ref": REF + name}


def json_answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An answer (or body) of JSON with ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_answers(
    codes: tuple[ErrorCode, ...], headers: Mapping[int, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Error answers by HTTP status, naming the codes a client may switch on; ``headers`` are
    the headers a status always carries (``WWW-Authenticate`` on 401, ...)."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(int(code.http_status), []).append(code.value)
    answers = {}
    for status, names in sorted(by_status.items()):
        answer = json_answer(ref("Error"), "codes: " + ", ".join(sorted(set(names))))
        if headers and status in headers:
            answer["headers"] = headers[status]
        answers[str(status)] = answer
    return answers
