"""The one rule for integers in a notification's ``data``: within 64 bits, or refused.

Decision 1 promises a producer's JSON comes out exactly as it went in. orjson (the sidecar's
parser and the SDK's encoder) holds integers in ``[-2**63, 2**64 - 1]`` exactly; one beyond is
read as a float by the sidecar (``18446744073709551616`` came back as ``1.8446744073709552e19``)
and refused with a bare ``TypeError`` by the encoder. Both entry points now refuse such an
integer with ``invalid_field`` naming its path (``data.order.id``). Integers between 2**53 and
2**64 are kept and delivered exactly; JavaScript's ``JSON.parse`` reads them inexactly, which
is the browser's limit, not a loss here: docs/publisher.md advises strings for such ids.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from tidings.errors import InvalidField

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1

# A run of 19+ digits: the only way to write an integer orjson cannot hold. Strings may hold
# such runs too, so a match only sends the body to the exact check below.
_LONG_DIGITS = re.compile(rb"\d{19,}")


def _path(value: Any, prefix: str) -> str | None:
    """The path of the first integer out of range inside ``value``, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if INT_MIN <= value <= INT_MAX else prefix
    if isinstance(value, dict):
        for key, item in value.items():
            found = _path(item, f"{prefix}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _path(item, f"{prefix}[{i}]")
            if found is not None:
                return found
    return None


def _refuse(path: str) -> InvalidField:
    return InvalidField(
        f"an integer beyond the 64-bit range ({INT_MIN} .. {INT_MAX}); send it as a string",
        field=path,
    )


def check_body(raw: bytes) -> None:
    """Refuse a JSON request body whose ``data`` (or any field) holds an integer orjson would
    turn into a float. A body without 19 digits in a row costs one regex scan."""
    if _LONG_DIGITS.search(raw) is None:
        return
    try:
        exact = json.loads(raw)  # the standard parser keeps every integer exact
    except ValueError:
        return  # not JSON: orjson's own error says so, precisely
    found = _path(exact, "")
    if found is not None:
        raise _refuse(found.lstrip("."))


def encode_data(data: dict[str, Any]) -> bytes:
    """``data`` as the JSON bytes stored; an integer out of range (or a value JSON has no form
    for) is ``invalid_field`` naming where it is, never a bare ``TypeError``."""
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError as exc:
        found = _path(data, "data")
        if found is not None:
            raise _refuse(found) from None
        raise InvalidField(f"is not JSON: {exc}", field="data") from None
