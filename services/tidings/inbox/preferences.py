"""Preferences: per user, by event domain x channel, over the tenant's defaults.

The model a Knock or Novu user expects:

* a tenant admin sets **defaults**, ``{domain: {channel: bool}}`` (``inbox_preference_defaults``;
  the HTTP layer checks the admin role);
* each user sets **overrides** of any (domain, channel) (``inbox_preferences``); ``None`` removes
  an override, and the default shows through again;
* **effective** = the user's override, else the tenant's default, else *on*: a domain nobody set
  is on for every channel.

Only ``in_app`` acts today: a domain muted in-app leaves the user's bell, live (the gateway drops
it) and in the inbox (lists and counts filter with :func:`unmuted`), except severity
``critical``, which always reaches the bell. ``email``, ``webhook`` and ``push`` are stored for
the delivery-channels work.

Every function takes an :class:`AsyncConnection` and runs in the caller's transaction (writes:
``engine.begin()``). Input is validated before anything is written (:class:`InvalidField`
naming the field, e.g. ``domains.billing.sms``); rows are validated when read
(:class:`StoredRowInvalid` naming the column), so a row edited by hand is a precise error, not
a crash further on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Table,
    delete,
    false,
    literal,
    or_,
    select,
    true,
    type_coerce,
    union,
    union_all,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from tidings.catalogue import DOMAIN_RE, check_domain
from tidings.envelope import Severity
from tidings.errors import InvalidField, StoredRowInvalid
from tidings.inbox.schema import (
    inbox_marks,
    inbox_state,
    notifications,
    preference_defaults,
    preferences,
)
from tidings.inbox.visibility import Value
from tidings.subjects import AudienceKind, check_id

CHANNELS = ("in_app", "email", "webhook", "push")
IN_APP = "in_app"
MAX_DOMAINS = 100  # per tenant (defaults) and per user (overrides)

DomainPrefs = dict[str, dict[str, bool]]
Changes = dict[str, dict[str, bool | None]]

_CHANNEL_LIST = ", ".join(CHANNELS)


@dataclass(frozen=True, slots=True)
class Preferences:
    """One user's (or, from :func:`read_defaults`, one tenant's) preferences, resolved."""

    defaults: DomainPrefs
    overrides: DomainPrefs
    effective: DomainPrefs

    @classmethod
    def resolve(cls, defaults: DomainPrefs, overrides: DomainPrefs) -> Preferences:
        """Effective = override, else default, else on; for every domain either names."""
        effective = {
            domain: {
                channel: overrides.get(domain, {}).get(
                    channel, defaults.get(domain, {}).get(channel, True)
                )
                for channel in CHANNELS
            }
            for domain in sorted(defaults.keys() | overrides.keys())
        }
        return cls(defaults, overrides, effective)

    @property
    def muted(self) -> frozenset[str]:
        """The domains whose in-app notifications leave the bell (critical ones excepted)."""
        return frozenset(d for d, channels in self.effective.items() if not channels[IN_APP])

    def as_json(self) -> dict[str, Any]:
        """The body of ``GET /v1/inbox/preferences`` (docs/inbox.md)."""
        return {
            "channels": list(CHANNELS),
            "defaults": _copy(self.defaults),
            "overrides": _copy(self.overrides),
            "effective": _copy(self.effective),
        }


@dataclass(frozen=True, slots=True)
class Erased:
    """What :func:`erase_user` removed."""

    state: int
    marks: int
    preferences: int
    notifications: int


def _copy(prefs: DomainPrefs) -> DomainPrefs:
    return {domain: dict(channels) for domain, channels in prefs.items()}


# --- validation -------------------------------------------------------------------------------


def check_changes(domains: object, *, field: str = "domains") -> Changes:
    """``{domain: {channel: bool | None}}`` as given, checked: domains by the event grammar,
    known channels, booleans or null, at most :data:`MAX_DOMAINS` domains."""
    if not isinstance(domains, Mapping):
        raise InvalidField(
            "must be an object {domain: {channel: true | false | null}}", field=field
        )
    if len(domains) > MAX_DOMAINS:
        raise InvalidField(
            f"names {len(domains)} domains; at most {MAX_DOMAINS} are allowed", field=field
        )
    checked: Changes = {}
    for domain, channels in domains.items():
        check_domain(domain, field_name=field)
        where = f"{field}.{domain}"
        if not isinstance(channels, Mapping):
            raise InvalidField("must be an object {channel: true | false | null}", field=where)
        for channel, value in channels.items():
            if channel not in CHANNELS:
                shown = repr(channel)[:40]
                raise InvalidField(f"{shown} is not a channel; use {_CHANNEL_LIST}", field=where)
            if value is not None and not isinstance(value, bool):
                raise InvalidField("must be true, false or null", field=f"{where}.{channel}")
        checked[domain] = dict(channels)
    return checked


def _checked_rows(table: Table, rows: Iterable[tuple[Any, Any, Any]], who: str) -> DomainPrefs:
    """Stored rows (domain, channel, enabled-as-integer) as preferences, each value checked."""
    prefs: DomainPrefs = {}
    for domain, channel, enabled in rows:
        at = f"{who}, domain {domain!r}, channel {channel!r}"
        if not isinstance(domain, str) or not DOMAIN_RE.fullmatch(domain):
            raise StoredRowInvalid(f"row ({at}): not an event domain", field=f"{table.name}.domain")
        if channel not in CHANNELS:
            raise StoredRowInvalid(
                f"row ({at}): not a channel ({_CHANNEL_LIST})", field=f"{table.name}.channel"
            )
        # SQLite keeps any integer (or text) in a BOOLEAN column; only 0 and 1 are booleans.
        if type(enabled) not in (bool, int) or enabled not in (0, 1):
            raise StoredRowInvalid(
                f"row ({at}): {enabled!r} is not a boolean", field=f"{table.name}.enabled"
            )
        prefs.setdefault(domain, {})[channel] = bool(enabled)
    return {
        domain: {ch: prefs[domain][ch] for ch in CHANNELS if ch in prefs[domain]}
        for domain in sorted(prefs)
    }


# --- reads ------------------------------------------------------------------------------------


async def _load(conn: AsyncConnection, table: Table, keys: dict[str, str]) -> DomainPrefs:
    c = table.c
    query = select(c.domain, c.channel, type_coerce(c.enabled, Integer)).where(
        *(c[name] == value for name, value in keys.items())
    )
    who = ", ".join(f"{name} {value!r}" for name, value in keys.items())
    return _checked_rows(table, (await conn.execute(query)).all(), who)


async def read(conn: AsyncConnection, tenant: str, user: str) -> Preferences:
    """The user's preferences: the tenant's defaults, the user's overrides, the result."""
    check_id(tenant, field="tenant")
    check_id(user, field="user")
    defaults = await _load(conn, preference_defaults, {"tenant": tenant})
    overrides = await _load(conn, preferences, {"tenant": tenant, "user": user})
    return Preferences.resolve(defaults, overrides)


async def read_defaults(conn: AsyncConnection, tenant: str) -> Preferences:
    """The tenant's defaults (no overrides; effective = what a user who set nothing gets)."""
    check_id(tenant, field="tenant")
    return Preferences.resolve(await _load(conn, preference_defaults, {"tenant": tenant}), {})


async def muted_domains(conn: AsyncConnection, tenant: str, user: str) -> frozenset[str]:
    """The domains whose in-app notifications leave this user's bell (critical excepted).

    One query (every list and count asks it first): the tenant's in-app defaults and the
    user's in-app overrides in one ``UNION ALL``, each row checked as :func:`read` checks it.
    """
    check_id(tenant, field="tenant")
    check_id(user, field="user")
    d, o = preference_defaults.c, preferences.c
    query = union_all(
        select(literal(0).label("own"), d.domain, d.channel, type_coerce(d.enabled, Integer))
        .where(d.tenant == tenant, d.channel == IN_APP),
        select(literal(1).label("own"), o.domain, o.channel, type_coerce(o.enabled, Integer))
        .where(o.tenant == tenant, o.user == user, o.channel == IN_APP),
    )  # fmt: skip
    rows = (await conn.execute(query)).all()
    defaults = _checked_rows(
        preference_defaults, (r[1:] for r in rows if not r[0]), f"tenant {tenant!r}"
    )
    overrides = _checked_rows(
        preferences, (r[1:] for r in rows if r[0]), f"tenant {tenant!r}, user {user!r}"
    )
    return Preferences.resolve(defaults, overrides).muted


def muted_query(tenant: str, user: str) -> Select[Any]:
    """The user's muted domains as a subquery (what :func:`muted_domains` reads, resolved in
    SQL): the user's own in-app "off", and the tenant's in-app "off" the user did not turn on.
    A count that embeds it costs one round trip instead of two."""
    check_id(tenant, field="tenant")
    check_id(user, field="user")
    return muted_select(tenant, user)


def muted_select(tenant: Value, user: Value) -> Select[Any]:
    """:func:`muted_query` for a checked tenant and user, or parameters bound at execution."""
    d, o = preference_defaults.c, preferences.c
    mine = (o.tenant == tenant, o.user == user, o.channel == IN_APP)
    turned_on = select(o.domain).where(*mine, o.enabled.is_(true()))
    return (
        union(
            select(o.domain).where(*mine, o.enabled.is_(false())),
            select(d.domain).where(
                d.tenant == tenant,
                d.channel == IN_APP,
                d.enabled.is_(false()),
                d.domain.not_in(turned_on),
            ),
        )
        .subquery()
        .select()
    )


def unmuted_in_sql(tenant: str, user: str) -> ColumnElement[bool]:
    """:func:`unmuted` with the muted domains read in the same statement."""
    check_id(tenant, field="tenant")
    check_id(user, field="user")
    return unmuted_by(muted_select(tenant, user))


def unmuted_by(muted: Select[Any]) -> ColumnElement[bool]:
    """What reaches the bell when ``muted`` selects the muted domains: not among them, or
    critical."""
    return or_(
        notifications.c.domain.not_in(muted),
        notifications.c.severity == Severity.CRITICAL.value,
    )


def unmuted(muted: frozenset[str]) -> ColumnElement[bool]:
    """The WHERE clause keeping what reaches the bell: a domain not muted, or critical."""
    if not muted:
        return true()
    return or_(
        notifications.c.domain.not_in(sorted(muted)),
        notifications.c.severity == Severity.CRITICAL.value,
    )


# --- writes -----------------------------------------------------------------------------------


def _merged(current: DomainPrefs, changes: Changes) -> DomainPrefs:
    after = _copy(current)
    for domain, channels in changes.items():
        row = after.setdefault(domain, {})
        for channel, value in channels.items():
            if value is None:
                row.pop(channel, None)
            else:
                row[channel] = value
        if not row:
            del after[domain]
    return after


async def _apply(
    conn: AsyncConnection, table: Table, keys: dict[str, str], changes: Changes, who: str
) -> None:
    current = await _load(conn, table, keys)
    after = _merged(current, changes)
    if len(after) > MAX_DOMAINS:
        raise InvalidField(
            f"{who} would have preferences for {len(after)} domains; at most {MAX_DOMAINS}"
            " are allowed (remove some with null)",
            field="domains",
        )
    c = table.c
    for domain, channels in changes.items():
        removed = sorted(ch for ch, value in channels.items() if value is None)
        if removed:
            where = [c[name] == value for name, value in keys.items()]
            await conn.execute(
                delete(table).where(*where, c.domain == domain, c.channel.in_(removed))
            )
    now = datetime.now(UTC)
    rows = [
        {**keys, "domain": domain, "channel": channel, "enabled": value, "updated_at": now}
        for domain, channels in changes.items()
        for channel, value in channels.items()
        if value is not None
    ]
    if rows:
        insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[*keys, "domain", "channel"],
            set_={"enabled": stmt.excluded.enabled, "updated_at": stmt.excluded.updated_at},
        )
        await conn.execute(stmt, rows)


async def set_overrides(
    conn: AsyncConnection, tenant: str, user: str, domains: Mapping[str, Mapping[str, bool | None]]
) -> Preferences:
    """Set (bool) or remove (None) the user's overrides; the others stay. Returns the result."""
    check_id(tenant, field="tenant")
    check_id(user, field="user")
    changes = check_changes(domains)
    keys = {"tenant": tenant, "user": user}
    await _apply(conn, preferences, keys, changes, f"user {user!r}")
    return await read(conn, tenant, user)


async def set_defaults(
    conn: AsyncConnection, tenant: str, domains: Mapping[str, Mapping[str, bool | None]]
) -> Preferences:
    """Set (bool) or remove (None) the tenant's defaults; the others stay. Returns the result."""
    check_id(tenant, field="tenant")
    changes = check_changes(domains)
    await _apply(conn, preference_defaults, {"tenant": tenant}, changes, f"tenant {tenant!r}")
    return await read_defaults(conn, tenant)


async def erase_user(
    conn: AsyncConnection, tenant: str, user: str, *, addressed: bool = False
) -> Erased:
    """Erase what the inbox keeps about one user (a data-subject request): state rows, marks
    and preferences. With ``addressed``, also the notifications addressed to that user alone
    (``user:<user>``); notifications for the tenant, a role or a room are shared and stay."""
    check_id(tenant, field="tenant")
    check_id(user, field="user")
    counts = []
    for table in (inbox_state, inbox_marks, preferences):
        stmt = delete(table).where(table.c.tenant == tenant, table.c.user == user)
        counts.append((await conn.execute(stmt)).rowcount)
    removed = 0
    if addressed:
        n = notifications.c
        stmt = delete(notifications).where(
            n.tenant == tenant,
            n.audience_kind == AudienceKind.USER.value,
            n.audience_name == user,
        )
        removed = (await conn.execute(stmt)).rowcount
    return Erased(counts[0], counts[1], counts[2], removed)
