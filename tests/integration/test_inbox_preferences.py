"""Preferences on SQLite and a real PostgreSQL server: tenant defaults, user overrides, what is
effective, muted domains as SQL (critical always passes), erasure, and precise refusals of bad
input and of bad stored rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, insert, select, text

from tests.support.inbox import sync_store
from tests.support.inbox_notes import note, role, user
from tidings.auth.claims import Claims
from tidings.envelope import Severity
from tidings.errors import InvalidField, StoredRowInvalid
from tidings.inbox import migrate, queries
from tidings.inbox import preferences as prefs
from tidings.inbox.schema import (
    inbox_marks,
    inbox_state,
    notifications,
    preference_defaults,
    preferences,
)
from tidings.inbox.store import Store

ALL_ON = dict.fromkeys(prefs.CHANNELS, True)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = Store.open(database_url)
    try:
        await migrate.upgrade(opened.engine)
        yield opened
    finally:
        await opened.close()


async def test_nothing_set_is_all_on(store: Store) -> None:
    async with store.engine.connect() as conn:
        got = await prefs.read(conn, "acme", "alice")
        assert got.as_json() == {
            "channels": ["in_app", "email", "webhook", "push"],
            "defaults": {},
            "overrides": {},
            "effective": {},
        }
        assert await prefs.muted_domains(conn, "acme", "alice") == frozenset()


async def test_overrides_win_over_defaults_which_win_over_on(store: Store) -> None:
    async with store.engine.begin() as conn:
        tenant = await prefs.set_defaults(
            conn, "acme", {"audit": {"in_app": False, "email": False}, "quota": {"push": False}}
        )
        assert tenant.defaults == {
            "audit": {"in_app": False, "email": False},
            "quota": {"push": False},
        }
        assert tenant.overrides == {}
        mine = await prefs.set_overrides(
            conn, "acme", "alice", {"audit": {"in_app": True}, "incident": {"in_app": False}}
        )
    assert mine.as_json() == {
        "channels": ["in_app", "email", "webhook", "push"],
        "defaults": {"audit": {"in_app": False, "email": False}, "quota": {"push": False}},
        "overrides": {"audit": {"in_app": True}, "incident": {"in_app": False}},
        "effective": {
            "audit": {**ALL_ON, "email": False},  # in_app from alice, email from the tenant
            "incident": {**ALL_ON, "in_app": False},
            "quota": {**ALL_ON, "push": False},
        },
    }
    async with store.engine.connect() as conn:
        assert await prefs.muted_domains(conn, "acme", "alice") == {"incident"}
        # Bob set nothing: the tenant's defaults; another tenant: nothing.
        assert await prefs.muted_domains(conn, "acme", "bob") == {"audit"}
        assert (await prefs.read(conn, "globex", "alice")).effective == {}
        assert (await prefs.read_defaults(conn, "acme")).effective["audit"]["in_app"] is False


async def test_null_removes_an_override_and_the_default_shows_again(store: Store) -> None:
    async with store.engine.begin() as conn:
        await prefs.set_defaults(conn, "acme", {"audit": {"in_app": False}})
        await prefs.set_overrides(conn, "acme", "alice", {"audit": {"in_app": True, "push": False}})
        # Setting one key leaves the others alone; null removes only what it names.
        after = await prefs.set_overrides(conn, "acme", "alice", {"audit": {"in_app": None}})
        assert after.overrides == {"audit": {"push": False}}
        assert after.effective["audit"] == {**ALL_ON, "in_app": False, "push": False}
        gone = await prefs.set_overrides(conn, "acme", "alice", {"audit": {"push": None}})
        assert gone.overrides == {}
        # Removing what is not there is no error; a default is removed the same way.
        await prefs.set_overrides(conn, "acme", "alice", {"quota": {"email": None}})
        assert (await prefs.set_defaults(conn, "acme", {"audit": {"in_app": None}})).defaults == {}
        rows = await conn.execute(select(func.count()).select_from(preferences))
        assert rows.scalar_one() == 0


async def test_unmuted_keeps_other_domains_and_every_critical(store: Store) -> None:
    rows = [
        note(1, event="incident.created"),
        note(2, event="incident.updated", severity=Severity.CRITICAL),
        note(3, event="audit.created", severity=Severity.ERROR),
        note(4, event="audit.created", severity=Severity.CRITICAL),
        note(5, event="quota.warning", severity=Severity.WARNING),
    ]
    await store.write(rows)

    async def titles(muted: frozenset[str]) -> set[str]:
        query = select(notifications.c.title).where(prefs.unmuted(muted))
        async with store.engine.connect() as conn:
            return set((await conn.scalars(query)).all())

    assert await titles(frozenset()) == {"n1", "n2", "n3", "n4", "n5"}
    assert await titles(frozenset({"incident"})) == {"n2", "n3", "n4", "n5"}
    assert await titles(frozenset({"incident", "audit", "quota"})) == {"n2", "n4"}
    async with store.engine.begin() as conn:
        # Muting critical for every domain changes nothing about critical ones.
        await prefs.set_overrides(
            conn, "acme", "alice", {"audit": dict.fromkeys(prefs.CHANNELS, False)}
        )
        muted = await prefs.muted_domains(conn, "acme", "alice")
    assert muted == {"audit"}
    assert await titles(muted) == {"n1", "n2", "n4", "n5"}


async def test_erase_removes_one_users_state_marks_and_preferences(store: Store) -> None:
    await store.write(
        [
            note(1),
            note(2, audience=user("alice")),
            note(3, audience=user("bob")),
            note(4, audience=role("ops")),
        ]
    )
    now = datetime.now(UTC)
    async with store.engine.begin() as conn:
        pks = list(
            (await conn.scalars(select(notifications.c.pk).order_by(notifications.c.pk))).all()
        )
        for who in ("alice", "bob"):
            await conn.execute(
                insert(inbox_state),
                [
                    {
                        "tenant": "acme",
                        "user": who,
                        "notification": pk,
                        "read": True,
                        "archived": False,
                        "updated_at": now,
                    }
                    for pk in pks
                ],
            )
            await conn.execute(
                insert(inbox_marks).values(
                    tenant="acme", user=who, read_upto=pks[-1], seen_upto=0, updated_at=now
                )
            )
            await prefs.set_overrides(conn, "acme", who, {"audit": {"in_app": False}})
        await prefs.set_defaults(conn, "acme", {"audit": {"email": False}})
        erased = await prefs.erase_user(conn, "acme", "alice")
    assert erased == prefs.Erased(state=4, marks=1, preferences=1, notifications=0)
    async with store.engine.connect() as conn:
        alice = await prefs.read(conn, "acme", "alice")
        assert alice.overrides == {} and alice.defaults == {"audit": {"email": False}}
        assert (await prefs.read(conn, "acme", "bob")).overrides == {"audit": {"in_app": False}}
        left = select(inbox_state.c.user, func.count()).group_by(inbox_state.c.user)
        assert dict((await conn.execute(left)).all()) == {"bob": 4}
        assert list((await conn.scalars(select(inbox_marks.c.user))).all()) == ["bob"]
        assert await store.count(conn) == 4  # shared notifications stay
    async with store.engine.begin() as conn:
        erased = await prefs.erase_user(conn, "acme", "bob", addressed=True)
        assert erased == prefs.Erased(state=4, marks=1, preferences=1, notifications=1)
        titles = set((await conn.scalars(select(notifications.c.title))).all())
        assert titles == {"n1", "n2", "n4"}  # bob's own notification only


BAD_CHANGES: list[tuple[Any, str, str]] = [
    ([], "domains", "must be an object"),
    ({f"d{i}": {} for i in range(101)}, "domains", "names 101 domains; at most 100"),
    ({"Audit": {"in_app": True}}, "domains", "'Audit' is not an event domain"),
    ({"audit.created": {"in_app": True}}, "domains", "is not an event domain"),
    ({"": {"in_app": True}}, "domains", "is not an event domain"),
    ({"a" * 33: {"in_app": True}}, "domains", "is not an event domain"),
    ({7: {"in_app": True}}, "domains", "must be a string"),
    ({"audit": True}, "domains.audit", "must be an object"),
    ({"audit": {"sms": True}}, "domains.audit", "'sms' is not a channel; use in_app, email"),
    ({"audit": {"in_app": 1}}, "domains.audit.in_app", "must be true, false or null"),
    ({"audit": {"in_app": "false"}}, "domains.audit.in_app", "must be true, false or null"),
]


@pytest.mark.parametrize(("domains", "field", "reason"), BAD_CHANGES)
async def test_bad_input_is_refused_naming_the_field(
    store: Store, domains: Any, field: str, reason: str
) -> None:
    async with store.engine.begin() as conn:
        for setter in (
            lambda: prefs.set_overrides(conn, "acme", "alice", domains),
            lambda: prefs.set_defaults(conn, "acme", domains),
        ):
            with pytest.raises(InvalidField) as caught:
                await setter()
            assert caught.value.field == field
            assert reason in caught.value.reason
        for table in (preferences, preference_defaults):
            assert (await conn.execute(select(func.count()).select_from(table))).scalar_one() == 0


async def test_bad_tenant_and_user_are_refused(store: Store) -> None:
    async with store.engine.connect() as conn:
        with pytest.raises(InvalidField) as caught:
            await prefs.read(conn, "acme", "al ice")
        assert caught.value.field == "user"
        with pytest.raises(InvalidField) as caught:
            await prefs.read_defaults(conn, "")
        assert caught.value.field == "tenant"


async def test_at_most_100_domains_per_user_and_per_tenant_nothing_written_beyond(
    store: Store,
) -> None:
    full = {f"d{i}": {"in_app": False} for i in range(100)}
    async with store.engine.begin() as conn:
        await prefs.set_overrides(conn, "acme", "alice", full)
        await prefs.set_defaults(conn, "acme", full)
        for setter in (
            lambda: prefs.set_overrides(conn, "acme", "alice", {"extra": {"in_app": False}}),
            lambda: prefs.set_defaults(conn, "acme", {"extra": {"in_app": False}}),
        ):
            with pytest.raises(InvalidField, match="101 domains; at most 100") as caught:
                await setter()
            assert caught.value.field == "domains"
        # Removing one makes room in the same call.
        swapped = await prefs.set_overrides(
            conn, "acme", "alice", {"d0": {"in_app": None}, "extra": {"in_app": False}}
        )
    assert (
        len(swapped.overrides) == 100
        and "extra" in swapped.overrides
        and "d0" not in swapped.overrides
    )
    async with store.engine.connect() as conn:
        assert len((await prefs.read_defaults(conn, "acme")).defaults) == 100
        assert len(await prefs.muted_domains(conn, "acme", "bob")) == 100


BAD_ROWS = [
    ("Bad!", "in_app", "inbox_preferences.domain", "not an event domain"),
    ("audit", "sms", "inbox_preferences.channel", "not a channel"),
]


@pytest.mark.parametrize(("domain", "channel", "field", "reason"), BAD_ROWS)
async def test_a_bad_stored_row_is_a_precise_error(
    store: Store, domain: str, channel: str, field: str, reason: str
) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(preferences).values(
                tenant="acme",
                user="alice",
                domain=domain,
                channel=channel,
                enabled=False,
                updated_at=datetime.now(UTC),
            )
        )
    async with store.engine.connect() as conn:
        with pytest.raises(StoredRowInvalid) as caught:
            await prefs.read(conn, "acme", "alice")
        assert caught.value.field == field
        assert reason in caught.value.reason and "user 'alice'" in caught.value.reason
        assert caught.value.code.value == "internal"
        # Only that user's read fails.
        assert (await prefs.read(conn, "acme", "bob")).overrides == {}


async def test_a_non_boolean_in_sqlites_boolean_column_is_a_precise_error(tmp_path: Any) -> None:
    # PostgreSQL's boolean type cannot hold such a value; SQLite's column holds any integer.
    store = Store.open(f"sqlite:///{tmp_path / 'inbox.db'}")
    try:
        await migrate.upgrade(store.engine)
        async with store.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO inbox_preference_defaults (tenant, domain, channel, enabled,"
                    " updated_at) VALUES ('acme', 'audit', 'in_app', 2, '2026-01-01')"
                )
            )
        async with store.engine.connect() as conn:
            with pytest.raises(StoredRowInvalid, match="2 is not a boolean") as caught:
                await prefs.read(conn, "acme", "alice")
        assert caught.value.field == "inbox_preference_defaults.enabled"
    finally:
        await store.close()


# --- unmuted() against its rule, on random rows -----------------------------------------------

EVENTS = ["incident.created", "audit.created", "quota.warning", "system.notification"]
ROWS = st.lists(st.tuples(st.sampled_from(EVENTS), st.sampled_from(list(Severity))), max_size=25)
MUTED = st.frozensets(st.sampled_from(["incident", "audit", "quota", "system", "billing"]))


@pytest.fixture
def sync_prefs_store(database_url: str) -> Any:
    with sync_store(database_url) as handle:
        yield handle


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stored=ROWS, muted=MUTED)
def test_unmuted_is_the_rule_on_random_rows(
    sync_prefs_store: Any, stored: list[tuple[str, Severity]], muted: frozenset[str]
) -> None:
    runner, store = sync_prefs_store
    rows = [
        titled(f"n{i}", note(i, event=event, severity=severity))
        for i, (event, severity) in enumerate(stored, 1)
    ]

    async def kept() -> set[str]:
        async with store.engine.begin() as conn:
            await conn.execute(delete(notifications))
        await store.write(rows)
        query = select(notifications.c.title).where(prefs.unmuted(muted))
        async with store.engine.connect() as conn:
            return set((await conn.scalars(query)).all())

    expected = {
        f"n{i}"
        for i, (event, severity) in enumerate(stored, 1)
        if event.split(".")[0] not in muted or severity is Severity.CRITICAL
    }
    assert runner.run(kept()) == expected


def titled(title: str, row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "title": title}


async def test_muting_read_in_the_count_statement_is_the_rule(store: Store) -> None:
    """``GET /counts`` resolves the muted domains inside its one statement
    (``unmuted_in_sql``): the same counts as the rule resolved in Python, for every way a
    domain ends up muted or not (default off, override on over it, override off, nothing set,
    another user's and another tenant's preferences, critical never muted)."""
    events = ("audit.created", "billing.paid", "deploy.done", "chat.said", "incident.created")
    await store.write(
        [
            note(i + 1, event=event, severity=severity)
            for i, (event, severity) in enumerate(
                (e, s) for e in events for s in (Severity.INFO, Severity.CRITICAL, Severity.ERROR)
            )
        ]
    )
    async with store.engine.begin() as conn:
        await prefs.set_defaults(
            conn, "acme", {"audit": {"in_app": False}, "billing": {"in_app": False, "email": True}}
        )
        await prefs.set_defaults(conn, "globex", {"deploy": {"in_app": False}})
        await prefs.set_overrides(
            conn, "acme", "alice",
            {"billing": {"in_app": True}, "chat": {"in_app": False}, "deploy": {"email": False}},
        )  # fmt: skip
        await prefs.set_overrides(conn, "acme", "bob", {"incident": {"in_app": False}})
    async with store.engine.connect() as conn:
        for who in ("alice", "bob", "carol"):
            claims = Claims("acme", who)
            muted = await prefs.muted_domains(conn, "acme", who)
            in_python = await queries.counts(conn, claims, muted)
            in_sql = await queries.counts(conn, claims, None)
            assert in_sql == in_python, who
        assert await prefs.muted_domains(conn, "acme", "alice") == {"audit", "chat"}
        alice = await queries.counts(conn, Claims("acme", "alice"), None)
        assert alice["total"] == 15 - 2 * 2  # audit and chat muted, their critical ones stay
