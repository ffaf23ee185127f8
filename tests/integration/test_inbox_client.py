"""The Python inbox client and `tidings inbox list|counts|mark` against a real `tidings inbox
api` process, fed by a real `tidings inbox writer` from a real nats-server, on SQLite and on a
real PostgreSQL (the ``database_url`` fixture runs each test on both)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from nats.js import JetStreamContext

from tests.support.inbox import publish_requests
from tests.support.inbox_process import InboxStack
from tests.support.tokens import JWT_SECRET
from tests.support.waiting import until
from tidings.auth import mint_token
from tidings.client.errors import Refused, Unreachable
from tidings.client.inbox import InboxClient
from tidings.client.inbox_items import Filter
from tidings.dev.embedded import EmbeddedNats
from tidings.ports import free_port

TENANT = "acme"


def token(user: str = "alice", tenant: str = TENANT, **fields: Any) -> str:
    return mint_token(JWT_SECRET, tenant=tenant, user=user, **fields)


def note(i: int, **fields: Any) -> dict[str, Any]:
    body = {
        "tenant": TENANT,
        "event": "incident.created",
        "title": f"incident {i}",
        "message": "a pump failed",
        "severity": "info",
    }
    return body | fields


@pytest_asyncio.fixture
async def inbox_stack(
    nats_server: EmbeddedNats, js: JetStreamContext, database_url: str, tmp_path: Path
) -> AsyncIterator[InboxStack]:
    stack = InboxStack(nats_server.url, database_url, tmp_path)
    try:
        yield await stack.start()
    finally:
        stack.stop()


async def stored(inbox: InboxClient, total: int) -> None:
    async def enough() -> bool:
        return (await inbox.counts()).total >= total

    await until(enough, timeout=20, what=f"the writer to store {total} for the caller")


async def refused(call: Callable[[], Awaitable[object]]) -> Refused:
    with pytest.raises(Refused) as caught:
        await call()
    return caught.value


async def test_history_paging_filters_and_marks_of_one_user(
    inbox_stack: InboxStack, js: JetStreamContext
) -> None:
    mine = [note(i) for i in range(12)]
    mine += [note(i, audience={"user": "alice"}, severity="critical") for i in range(12, 15)]
    mine += [note(i, event="audit.assigned", title=f"audit 100% {i}") for i in range(15, 18)]
    others = [note(90, audience={"user": "bob"}), note(91, tenant="globex")]
    ids = await publish_requests(js, mine + others)
    alice_ids, bob_id, globex_id = ids[: len(mine)], ids[-2], ids[-1]

    async with InboxClient(inbox_stack.url, token()) as inbox:
        await stored(inbox, len(mine))
        counts = await inbox.counts()
        assert (counts.total, counts.unread, counts.unseen) == (18, 18, 18)
        assert counts.unread_by_severity == {
            "info": 15,
            "success": 0,
            "warning": 0,
            "error": 0,
            "critical": 3,
        }

        # Pages of 7, newest first, each item once, exactly alice's.
        pages = []
        cursor = None
        while True:
            page = await inbox.list(limit=7, cursor=cursor)
            pages.append(page)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert [len(p.items) for p in pages] == [7, 7, 4]
        listed = [item.id for p in pages for item in p.items]
        assert listed == list(reversed(alice_ids))
        assert [i.id async for i in inbox.items(page_size=5)] == listed
        first = pages[0].items[0]
        assert first.title == "audit 100% 17"
        assert (first.read, first.seen, first.archived) == (False, False, False)

        audits = await inbox.list(Filter(domain="audit"))
        assert [i.title for i in audits.items] == [f"audit 100% {i}" for i in (17, 16, 15)]
        critical = await inbox.list(Filter(severity=["critical"], room="user:alice"))
        assert len(critical.items) == 3
        assert all(i.room == "user:alice" for i in critical.items)
        literal = await inbox.list(Filter(q="100% 1"))  # `%` is text, not a wildcard
        assert len(literal.items) == 3
        assert (await inbox.list(Filter(q="100_ 1"))).items == ()

        assert (await inbox.get(alice_ids[0])).title == "incident 0"
        for hidden in (bob_id, globex_id, "01JZZZZZZZZZZZZZZZZZZZZZZZ"):
            no = await refused(lambda hidden=hidden: inbox.get(hidden))
            assert (no.error, no.status) == ("not_found", 404)

        marked = await inbox.mark(alice_ids[:2], read=True)
        assert sorted(marked.changed) == sorted(alice_ids[:2])
        assert marked.counts.unread == 16
        again = await inbox.mark(alice_ids[:2], read=True)
        assert (again.changed, again.counts.unread) == ((), 16)
        assert (await inbox.get(alice_ids[0])).read is True
        # One id alice may not see: refused as not found, and nothing changes.
        no = await refused(lambda: inbox.mark([alice_ids[2], bob_id], read=True))
        assert (no.error, no.status) == ("not_found", 404)
        assert (await inbox.counts()).unread == 16
        many = await refused(lambda: inbox.mark([alice_ids[0]] * 1001, read=True))
        assert (many.error, many.field) == ("too_large", "ids")
        bad = await refused(lambda: inbox.list(cursor="not-a-cursor"))
        assert (bad.error, bad.status, bad.field) == ("invalid_field", 400, "cursor")

        await inbox.mark(alice_ids[:1], read=False)
        assert (await inbox.counts()).unread == 17
        archived = await inbox.mark(alice_ids[3:5], archived=True)
        assert archived.counts.total == 16
        assert len((await inbox.list(Filter(status="archived"))).items) == 2
        after = await inbox.mark_all(Filter(domain="audit"), read=True)
        assert after.unread == 17 - 2 - 3  # two were archived, three audits read
        assert (await inbox.mark_all(read=True)).unread == 0
        assert (await inbox.list(Filter(status="unread"))).items == ()

    # Bob sees his one notification, read by nobody.
    async with InboxClient(inbox_stack.url, token("bob")) as bob:
        page = await bob.list()
        assert bob_id in [i.id for i in page.items]
        assert (await bob.get(bob_id)).read is False


async def test_preferences_defaults_and_tokens(
    inbox_stack: InboxStack, js: JetStreamContext
) -> None:
    audit = "audit.assigned"
    await publish_requests(
        js, [note(1, event=audit), note(2, event=audit, severity="critical"), note(3)]
    )
    calls: list[str] = []

    async def tokens() -> str:
        # An expired token first: the client asks again after the 401, once.
        calls.append("call")
        return token(ttl=-60) if len(calls) == 1 else token()

    async with InboxClient(inbox_stack.url, tokens) as inbox:
        await stored(inbox, 3)
        assert len(calls) == 2
        prefs = await inbox.set_preferences({"audit": {"in_app": False, "email": True}})
        assert prefs.muted() == ["audit"]
        assert prefs.overrides["audit"] == {"in_app": False, "email": True}
        counts = await inbox.counts()
        assert (counts.total, counts.unread_by_severity["critical"]) == (2, 1)  # critical stays
        assert (await inbox.preferences()).muted() == ["audit"]
        back = await inbox.set_preferences({"audit": {"in_app": None}})
        assert back.muted() == []
        assert (await inbox.counts()).total == 3

    async with InboxClient(inbox_stack.url, token("carol", roles=["viewer"])) as carol:
        no = await refused(lambda: carol.set_preference_defaults({"audit": {"in_app": False}}))
        assert (no.error, no.status) == ("forbidden", 403)
    async with InboxClient(inbox_stack.url, token("dana", roles=["admin"])) as admin:
        defaults = await admin.set_preference_defaults({"quota": {"in_app": False}})
        assert defaults.defaults["quota"]["in_app"] is False
    async with InboxClient(inbox_stack.url, token("erin")) as erin:
        assert (await erin.preferences()).muted() == ["quota"]  # the tenant's default

    async with InboxClient(inbox_stack.url, token(tenant="globex", ttl=-60)) as expired:
        no = await refused(expired.counts)
        assert (no.error, no.status) == ("token_expired", 401)
    async with InboxClient(f"http://127.0.0.1:{free_port()}", token(), timeout=2) as nowhere:
        with pytest.raises(Unreachable):
            await nowhere.counts()


def cli(stack: InboxStack, *args: str, user: str = "alice") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["COLUMNS"] = "220"  # a wide terminal: rich wraps long titles in a narrow one
    command = [sys.executable, "-m", "tidings", "inbox", *args]
    command += ["--url", stack.url, "--token", token(user)]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False, cwd="/"
    )


async def test_the_command_line_lists_counts_and_marks(
    inbox_stack: InboxStack, js: JetStreamContext
) -> None:
    ids = await publish_requests(
        js, [note(i, severity="warning" if i % 2 else "info") for i in range(5)]
    )
    async with InboxClient(inbox_stack.url, token()) as inbox:
        await stored(inbox, 5)

    listed = cli(inbox_stack, "list", "--limit", "3", "--json")
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    assert [i["id"] for i in page["items"]] == ids[::-1][:3]
    assert page["next_cursor"]
    rest = cli(inbox_stack, "list", "--cursor", page["next_cursor"], "--json")
    assert [i["id"] for i in json.loads(rest.stdout)["items"]] == ids[::-1][3:]
    everything = json.loads(cli(inbox_stack, "list", "--all", "--limit", "2", "--json").stdout)
    assert ([i["id"] for i in everything["items"]], everything["next_cursor"]) == (ids[::-1], None)
    warnings = json.loads(cli(inbox_stack, "list", "--severity", "warning", "--json").stdout)
    assert len(warnings["items"]) == 2

    table = cli(inbox_stack, "list")
    assert table.returncode == 0, table.stderr
    assert "incident 4" in table.stdout and ids[0] in table.stdout

    marked = cli(inbox_stack, "mark", ids[0], ids[1], "--read", "--json")
    assert marked.returncode == 0, marked.stderr
    answer = json.loads(marked.stdout)
    assert (sorted(answer["changed"]), answer["counts"]["unread"]) == (sorted(ids[:2]), 3)
    counts = json.loads(cli(inbox_stack, "counts", "--json").stdout)
    assert counts["unread"] == 3 and counts["unread_by_severity"]["warning"] == 1
    shown = cli(inbox_stack, "counts")
    assert "unread" in shown.stdout and "3" in shown.stdout

    everything_read = cli(inbox_stack, "mark", "--all", "--read", "--severity", "warning", "--json")
    assert json.loads(everything_read.stdout)["counts"]["unread"] == 2

    bobs = cli(inbox_stack, "mark", ids[2], "--read", user="bob")
    assert bobs.returncode == 0, bobs.stderr  # bob's own state of a tenant-wide notification
    assert json.loads(cli(inbox_stack, "counts", "--json").stdout)["unread"] == 2  # not alice's
    nowhere = cli(inbox_stack, "mark", "01JZZZZZZZZZZZZZZZZZZZZZZZ", "--read")
    assert nowhere.returncode == 1
    assert "not_found" in nowhere.stderr
    bad = cli(inbox_stack, "list", "--cursor", "forged")
    assert (bad.returncode, "invalid_field" in bad.stderr) == (2, True)
    unsaid = cli(inbox_stack, "mark", ids[0])
    assert unsaid.returncode == 2 and "--read" in unsaid.stderr
