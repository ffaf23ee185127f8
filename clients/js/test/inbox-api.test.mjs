// The inbox client against the real inbox API of `tidings dev` (writer and API on SQLite), and
// the WebSocket client's side of it against the real gateway: welcome counts, `inbox` frames.
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";

import { connect, InboxClient, State } from "../src/tidings.js";
import { freshTenant, mint, next, publishBatch, STACK, until } from "./env.mjs";

async function seeded(count, extra = () => ({})) {
  const tenant = freshTenant("inbox");
  const token = await mint({ tenant, user: "alice" });
  const results = await publishBatch(
    Array.from({ length: count }, (_, i) => ({ tenant, title: `kept ${i}`, ...extra(i) })),
  );
  const inbox = new InboxClient({ baseUrl: STACK.inbox, token });
  await until(async () => (await inbox.counts()).total === count, { what: `${count} stored` });
  return { tenant, token, inbox, ids: results.map((r) => r.id) };
}

test("list pages newest first with filters; get, mark and mark-all; counts follow", async () => {
  const { tenant, inbox, ids } = await seeded(9, (i) => (i % 3 === 0 ? { severity: "critical", event: "audit.assigned" } : {}));
  const pages = [];
  let cursor;
  do {
    const page = await inbox.list({ limit: 4, cursor });
    pages.push(page.items.map((n) => n.id));
    cursor = page.next_cursor ?? undefined;
  } while (cursor);
  assert.deepEqual(pages.map((p) => p.length), [4, 4, 1]);
  assert.deepEqual(pages.flat(), [...ids].reverse());
  const critical = await inbox.list({ severity: ["critical"], domain: "audit" });
  assert.deepEqual(critical.items.map((n) => n.title), ["kept 6", "kept 3", "kept 0"]);
  const item = await inbox.get(ids[0]);
  assert.deepEqual([item.title, item.read, item.seen, item.archived, "type" in item], ["kept 0", false, false, false, false]);

  const marked = await inbox.mark(ids.slice(0, 2), { read: true });
  assert.deepEqual([...marked.changed].sort(), ids.slice(0, 2).sort());
  assert.equal(marked.counts.unread, 7);
  assert.equal(marked.counts.unread_by_severity.critical, 2);
  const all = await inbox.markAll({ read: true }, { severity: "critical" });
  assert.equal(all.counts.unread, 5);
  assert.equal((await inbox.markAll()).counts.unread, 0);

  // Refusals carry the API's code and status, like the gateway's.
  const stranger = new InboxClient({ baseUrl: STACK.inbox, token: await mint({ tenant: `${tenant}-x`, user: "alice" }) });
  await assert.rejects(stranger.get(ids[0]), { code: "not_found", status: 404 });
  await assert.rejects(stranger.mark([ids[0]], { read: true }), { code: "not_found", status: 404 });
  await assert.rejects(inbox.list({ cursor: "forged" }), { code: "invalid_field", status: 400, field: "cursor" });
  await assert.rejects(inbox.list({ unread: true }), { code: "invalid_field", field: "unread" }); // never sent
  const nobody = new InboxClient({ baseUrl: STACK.inbox, token: "not.a.jwt" });
  await assert.rejects(nobody.counts(), (err) => err.status === 401 && err.code.startsWith("token_"));
});

test("preferences: a muted domain leaves the counts, critical stays; a token function is used", async () => {
  const { tenant, inbox } = await seeded(3, (i) => ({ event: i < 2 ? "quota.warning" : "incident.created", severity: i === 0 ? "critical" : "info" }));
  let calls = 0;
  const viaFunction = new InboxClient({
    baseUrl: STACK.inbox,
    token: async () => {
      calls += 1;
      return mint({ tenant, user: "alice" });
    },
  });
  const prefs = await viaFunction.setPreferences({ quota: { in_app: false } });
  assert.equal(prefs.effective.quota.in_app, false);
  assert.ok(prefs.channels.includes("in_app"));
  const counts = await viaFunction.counts();
  assert.deepEqual([counts.total, counts.unread_by_severity.critical], [2, 1]);
  assert.equal(calls, 1); // asked once, then kept while valid
  await inbox.setPreferences({ quota: { in_app: null } });
  assert.equal((await inbox.counts()).total, 3);
  await assert.rejects(inbox.setPreferenceDefaults({ quota: { in_app: false } }), { code: "forbidden", status: 403 });
});

test("the gateway's welcome carries the counts; a mark elsewhere arrives as an inbox frame", async () => {
  const { token, inbox, ids } = await seeded(4);
  const client = connect({ url: STACK.ws, token, WebSocket });
  try {
    await until(() => client.state === State.LIVE, { what: "live" });
    assert.equal(client.welcome.inbox.unread, 4);
    assert.equal(client.inboxCounts.unread, 4);
    const frame = next(client, "inbox", { timeout: 2000 });
    await inbox.mark([ids[1]], { read: true }); // "another device"
    const got = await frame;
    assert.deepEqual([got.ids, got.set, got.counts.unread], [[ids[1]], { read: true }, 3]);
    assert.equal(client.inboxCounts.unread, 3);
  } finally {
    await client.close();
  }
});
