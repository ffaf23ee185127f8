"""What the inbox API says to the gateways over NATS, read strictly (docs/inbox contract).

Three messages: the answer to ``tidings.inbox.session`` (a user's counts and muted domains at
``hello``), ``tidings.inbox.changed.<tenant>.<user>`` (a state or preference change) and
``tidings.inbox.changed.<tenant>`` (a change for every user of the tenant: its defaults). Both come
from another process: anything that is not exactly the agreed shape raises ``ValueError`` and is
dropped by the caller (counted), never forwarded. Who a ``changed`` is for is read from its
subject only; nothing in a body can address another tenant or user.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import orjson

from tidings import protocol as p
from tidings.subjects import ID_RE

SESSION_SUBJECT = "tidings.inbox.session"
CHANGED_PREFIX = "tidings.inbox.changed"
SEVERITIES = ("info", "success", "warning", "error", "critical")
STATES = ("read", "seen", "archived")
MAX_BYTES = 256 * 1024  # 1,000 ids of 64 characters and the rest fit in a fraction of it
MAX_IDS = 1000  # the API's own bound per state change
MAX_MUTED = 256
DOMAIN_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")  # an event type's first part (subjects.py)


def changed_filter(tenant: str) -> str:
    """The subject filter of one tenant's changes."""
    return f"{CHANGED_PREFIX}.{tenant}.>"


def changed_target(subject: str) -> tuple[str, str]:
    """(tenant, user) a ``changed`` subject addresses; ValueError for any other subject."""
    parts = subject.split(".")
    if len(parts) != 5 or ".".join(parts[:3]) != CHANGED_PREFIX:
        raise ValueError(f"not an inbox change subject: {subject!r}")
    tenant, user = parts[3], parts[4]
    if not (ID_RE.fullmatch(tenant) and ID_RE.fullmatch(user)):
        raise ValueError(f"not a tenant and user: {subject!r}")
    return tenant, user


def tenant_subject(tenant: str) -> str:
    """Where a change for every user of ``tenant`` is announced (its defaults changed)."""
    return f"{CHANGED_PREFIX}.{tenant}"


def tenant_target(subject: str) -> str:
    """The tenant a tenant-wide ``changed`` subject addresses; ValueError for any other."""
    parts = subject.split(".")
    if len(parts) != 4 or ".".join(parts[:3]) != CHANGED_PREFIX or not ID_RE.fullmatch(parts[3]):
        raise ValueError(f"not a tenant change subject: {subject!r}")
    return parts[3]


TENANT_REASONS = ("defaults",)


def read_tenant_change(data: bytes) -> str:
    """A tenant-wide change, ``{"reason": "defaults"}``: what changed (each user's counts and
    muted set are then asked again, since they depend on the user's own overrides)."""
    body = _object(data)
    if set(body) != {"reason"} or body["reason"] not in TENANT_REASONS:
        raise ValueError(f"a tenant change must be {{'reason': one of {TENANT_REASONS}}}")
    reason: str = body["reason"]
    return reason


class Refused(ValueError):
    """The inbox answered the session question with an error body."""


class Session(NamedTuple):
    """The inbox's answer at ``hello``."""

    counts: dict[str, Any]
    muted: frozenset[str]


class Change(NamedTuple):
    """One ``changed`` message: the encoded ``inbox`` frame, and the muted set when it has one."""

    line: bytes
    muted: frozenset[str] | None


def session_request(tenant: str, user: str, roles: frozenset[str], rooms: tuple[str, ...]) -> bytes:
    """The question at ``hello``: the token's claims, as the contract names them."""
    return orjson.dumps({"tenant": tenant, "user": user, "roles": sorted(roles), "rooms": rooms})


def read_session(data: bytes) -> Session:
    """The answer to a session request; ValueError for an error body or any other shape."""
    body = _object(data)
    if "error" in body:
        error = body["error"]
        code = error.get("code") if isinstance(error, dict) else None
        raise Refused(f"the inbox refused: {code!r}")
    return Session(read_counts(body.get("counts")), read_muted(body.get("muted", [])))


def read_change(data: bytes) -> Change:
    """A ``changed`` body as the ``inbox`` frame to push (only the agreed fields, checked)."""
    body = _object(data)
    ids = body.get("ids")
    if not isinstance(ids, list) or len(ids) > MAX_IDS:
        raise ValueError("ids must be an array of at most 1000")
    for i in ids:
        if not isinstance(i, str) or not ID_RE.fullmatch(i):
            raise ValueError("ids must be notification ids")
    changes = body.get("set")
    if not isinstance(changes, dict) or not all(
        k in STATES and isinstance(v, bool) for k, v in changes.items()
    ):
        raise ValueError("set must map read/seen/archived to booleans")
    every = body.get("all")
    if every is not None and every is not True:
        raise ValueError("all must be true or absent")
    muted = read_muted(body["muted"]) if body.get("muted") is not None else None
    frame = p.InboxFrame(
        counts=read_counts(body.get("counts")),
        ids=tuple(ids),
        set=dict(changes),
        all=every,
        muted=None if muted is None else tuple(sorted(muted)),
    )
    return Change(p.encode(frame), muted)


def read_counts(value: object) -> dict[str, Any]:
    """The counts object, rebuilt from its agreed keys (each a non-negative integer)."""
    if not isinstance(value, dict):
        raise ValueError("counts must be an object")
    by_severity = value.get("unread_by_severity")
    if not isinstance(by_severity, dict):
        raise ValueError("counts.unread_by_severity must be an object")
    counts = {
        "total": _count(value.get("total")),
        "unread": _count(value.get("unread")),
        "unseen": _count(value.get("unseen")),
        "unread_by_severity": {s: _count(by_severity.get(s)) for s in SEVERITIES},
    }
    if "seq" in value:  # the stored high-water mark (an API older than it sends none)
        counts["seq"] = _count(value["seq"])
    return counts


def read_muted(value: object) -> frozenset[str]:
    if not isinstance(value, list) or len(value) > MAX_MUTED:
        raise ValueError(f"muted must be an array of at most {MAX_MUTED}")
    for domain in value:
        if not isinstance(domain, str) or not DOMAIN_RE.fullmatch(domain):
            raise ValueError("muted must hold event domains")
    return frozenset(value)


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**53 - 1:
        raise ValueError("a count must be a non-negative integer")
    return value


def _object(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_BYTES:
        raise ValueError(f"over {MAX_BYTES} bytes")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ValueError("not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    return body
