"""The list's paging cursor: opaque to clients, a position (a stored ``pk``) underneath.

``next_cursor`` is ``base64url("1.<pk>.<check>")`` where ``check`` is a digest of the caller
(tenant, user), the filter and the position. The list is newest first by ``pk`` (insert order,
which never repeats, unlike a stream sequence across a recreated stream), so a page is "older
than the cursor's ``pk``": stable while new notifications arrive.

A cursor grants nothing: visibility is applied to every page from the caller's token, so a
crafted position shows nothing the caller could not list anyway. The check only makes a
mistake loud: a garbled cursor, one edited by hand, or one reused for another filter or
another user is ``invalid_field`` (field ``cursor``) instead of a silently wrong page
(docs/decisions.md: "The inbox API").
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from tidings.errors import InvalidField

VERSION = "1"
MAX_LENGTH = 128
_FIELD = "cursor"


def _check(owner: str, pk: int) -> str:
    return hashlib.sha256(f"{owner}\x00{pk}".encode()).hexdigest()[:16]


def encode(pk: int, owner: str) -> str:
    """The cursor for "older than ``pk``" for ``owner`` (caller and filter, as text)."""
    raw = f"{VERSION}.{pk}.{_check(owner, pk)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, owner: str) -> int:
    """The position in ``cursor``; :class:`InvalidField` if it is not one this owner was given."""
    if not cursor or len(cursor) > MAX_LENGTH:
        raise InvalidField("not a cursor this API returned", field=_FIELD)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise InvalidField("not a cursor this API returned (garbled)", field=_FIELD) from None
    version, _, rest = raw.partition(".")
    text, _, check = rest.partition(".")
    if version != VERSION or not text.isdigit() or len(text) > 19:
        raise InvalidField("not a cursor this API returned (garbled)", field=_FIELD)
    pk = int(text)
    if check != _check(owner, pk):
        raise InvalidField(
            "this cursor was made for another filter or caller, or was altered;"
            " start again without a cursor",
            field=_FIELD,
        )
    return pk
