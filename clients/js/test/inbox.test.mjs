// The inbox client's pure parts: what a list or a mark sends, how history, live notifications
// and `inbox` frames merge, how counts follow arrivals, how a refusal reads. The calls
// themselves run against a real inbox API in inbox-api.test.mjs.
import assert from "node:assert/strict";
import { test } from "node:test";
import React from "react";
import { renderToStaticMarkup } from "react-dom/server";

import {
  applyInboxChange,
  countArrivals,
  domainOf,
  emptyCounts,
  gatewayError,
  InboxClient,
  inboxFilter,
  inboxItem,
  inboxMarks,
  inboxQuery,
  mergeInbox,
  TidingsError,
  tokenExpiry,
} from "../src/tidings.js";
import { inboxInitial, inboxReducer, useInbox } from "../src/tidings-react.js";

const live = (seq, extra = {}) => ({
  type: "notification", seq, id: `n${seq}`, event: "incident.created", room: "tenant",
  time: `2026-01-01T00:00:${String(seq % 60).padStart(2, "0")}Z`, title: `t${seq}`, message: "",
  severity: "info", data: {}, ...extra,
});
const stored = (seq, extra = {}) => {
  const { type: _type, ...fields } = live(seq);
  return { ...fields, read: false, seen: false, archived: false, ...extra };
};
const ids = (items) => items.map((item) => item.id);

test("a list's query: repeatable keys repeated, dates as RFC 3339, nothing it does not know", () => {
  assert.equal(inboxQuery(), "");
  assert.equal(
    inboxQuery({ status: "unread", domain: ["incident", "audit"], severity: "critical", limit: 50 }),
    "status=unread&domain=incident&domain=audit&severity=critical&limit=50",
  );
  const since = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
  assert.equal(
    new URLSearchParams(inboxQuery({ since, until: "2026-02-01T00:00:00Z", cursor: "c1" })).toString(),
    "since=2026-01-02T03%3A04%3A05.000Z&until=2026-02-01T00%3A00%3A00Z&cursor=c1",
  );
  // Text is sent as text: the API matches it literally.
  assert.equal(new URLSearchParams(inboxQuery({ q: "50% off_'x' & y" })).get("q"), "50% off_'x' & y");
  assert.equal(inboxQuery({ q: undefined, room: null }), "");
  for (const [filter, field] of [
    [{ unread: true }, "unread"], // a typo must not widen the list
    [{ status: "new" }, "status"],
    [{ domain: [""] }, "domain"],
    [{ domain: 7 }, "domain"],
    [{ since: new Date("nope") }, "since"],
    [{ limit: "20" }, "limit"],
  ]) {
    assert.throws(() => inboxQuery(filter), { code: "invalid_field", field }, JSON.stringify(filter));
  }
});

test("mark-all's filter is the list's without paging; marks are booleans, mark-all's only true", () => {
  assert.deepEqual(inboxFilter({ domain: "audit", q: "x" }), { domain: ["audit"], q: "x" });
  assert.throws(() => inboxFilter({ limit: 5 }), { code: "invalid_field", field: "limit" });
  assert.throws(() => inboxFilter({ cursor: "c" }), { code: "invalid_field", field: "cursor" });
  assert.throws(() => inboxFilter([]), { code: "invalid_field", field: "filter" });
  assert.deepEqual(inboxMarks({ read: true, seen: false, archived: undefined }), { read: true, seen: false });
  assert.throws(() => inboxMarks({}), { code: "invalid_field", field: "set" });
  assert.throws(() => inboxMarks({ red: true }), { code: "invalid_field", field: "red" });
  assert.throws(() => inboxMarks({ read: "yes" }), { code: "invalid_field", field: "read" });
  assert.throws(() => inboxMarks({ read: false }, { only: true }), { code: "invalid_field", field: "read" });
  assert.deepEqual(inboxMarks({ archived: true }, { only: true }), { archived: true });
});

test("history and live notifications merge by id, newest first; the server's state wins", () => {
  const page = [stored(5, { read: true }), stored(4), stored(2, { seen: true })];
  // Live arrivals come oldest first; one of them (n4) is already in the page.
  const first = mergeInbox(page, [live(4), live(6), live(7)]);
  assert.deepEqual(ids(first.items), ["n7", "n6", "n5", "n4", "n2"]);
  assert.deepEqual(ids(first.added), ["n6", "n7"]);
  assert.equal(first.items[0].type, undefined); // an inbox item has no `type`
  assert.deepEqual([first.items[0].read, first.items[0].seen, first.items[0].archived], [false, false, false]);
  // A live copy never resets what the server said (n5 stays read)…
  assert.equal(mergeInbox(first.items, [live(5)]).items.find((n) => n.id === "n5").read, true);
  // …and a later page brings the server's word, in place, without a duplicate.
  const again = mergeInbox(first.items, [stored(7, { read: true }), stored(3)]);
  assert.deepEqual(ids(again.items), ["n7", "n6", "n5", "n4", "n3", "n2"]);
  assert.equal(again.items[0].read, true);
  assert.deepEqual(ids(again.added), ["n3"]);
  assert.deepEqual(inboxItem(live(1)), stored(1));
});

test("counts follow live arrivals above what the server counted, by severity", () => {
  const counts = { ...emptyCounts(), total: 20, unread: 20, unseen: 18 };
  counts.unread_by_severity.info = 20;
  const next = countArrivals(counts, [stored(21, { severity: "critical" }), stored(22), stored(19)], { after: 20 });
  assert.deepEqual(next, {
    total: 22, unread: 22, unseen: 20,
    unread_by_severity: { info: 21, success: 0, warning: 0, error: 0, critical: 1 },
  });
  assert.equal(counts.unread, 20); // not changed in place
  assert.equal(countArrivals(null, [stored(30)]), null);
  assert.equal(countArrivals(counts, [stored(30, { severity: "made-up" })]).unread_by_severity.info, 21);
});

test("an inbox frame sets flags on its ids (or all), archived items leave, muted domains too", () => {
  const items = [stored(3, { event: "audit.assigned" }), stored(2, { severity: "critical", event: "audit.due" }), stored(1)];
  const read = applyInboxChange(items, { ids: ["n1", "n9"], set: { read: true } });
  assert.deepEqual(read.map((n) => n.read), [false, false, true]);
  assert.equal(items[2].read, false); // a new list; the old one is untouched
  assert.deepEqual(applyInboxChange(items, { all: true, set: { seen: true }, ids: [] }).map((n) => n.seen), [true, true, true]);
  assert.deepEqual(ids(applyInboxChange(items, { ids: ["n2"], set: { archived: true } })), ["n3", "n1"]);
  // Muting `audit` hides its items, except critical ones (critical is never muted).
  assert.deepEqual(ids(applyInboxChange(items, { ids: [], set: {}, muted: ["audit"] })), ["n2", "n1"]);
  assert.equal(applyInboxChange(items, { ids: [], set: {} }), items);
  assert.equal(domainOf("work_permit.status_changed"), "work_permit");
});

test("the API's refusal reads like the gateway's: its code, reason, field and status", () => {
  const body = { error: { code: "invalid_field", reason: "not a cursor", field: "cursor" } };
  const refused = gatewayError({ status: 400, body });
  assert.ok(refused instanceof TidingsError);
  assert.deepEqual(
    [refused.code, refused.message, refused.field, refused.status, refused.closeCode],
    ["invalid_field", "not a cursor", "cursor", 400, undefined],
  );
  assert.deepEqual([gatewayError({ status: 502, body: null }).code, gatewayError({ status: 502 }).message], ["http_502", "HTTP 502"]);
  assert.equal(gatewayError({ status: 404, body: { error: { code: "not_found" } } }).message, "not_found");
});

test("an inbox client needs an http(s) base URL without a token in it, and a token", () => {
  const base = (baseUrl) => new InboxClient({ baseUrl, token: "t" }).baseUrl;
  assert.equal(base("http://127.0.0.1:8085"), "http://127.0.0.1:8085/v1/inbox/");
  assert.equal(base("https://x.example/api/"), "https://x.example/api/v1/inbox/"); // behind a prefix
  assert.equal(base("https://x.example/v1/inbox"), "https://x.example/v1/inbox/");
  assert.equal(base("http://h:1/?a=1#f"), "http://h:1/v1/inbox/");
  for (const [options, field] of [
    [{ baseUrl: "ws://h/", token: "t" }, "baseUrl"],
    [{ baseUrl: "/relative", token: "t" }, "baseUrl"], // no page here to resolve it against
    [{ baseUrl: "http://h/?token=abc", token: "t" }, "baseUrl"],
    [{ baseUrl: "http://h/" }, "token"],
    [{ baseUrl: "http://h/", token: "" }, "token"],
    [{}, "baseUrl"],
  ]) {
    assert.throws(() => new InboxClient(options), { code: "invalid_option", field }, JSON.stringify(options));
  }
  assert.ok(new InboxClient({ baseUrl: "http://h/", token: async () => "jwt" }));
});

test("tokenExpiry reads a JWT's exp, and nothing else", () => {
  const part = (object) => Buffer.from(JSON.stringify(object)).toString("base64url");
  assert.equal(tokenExpiry(`${part({ alg: "HS256" })}.${part({ exp: 1767225600, sub: "ü" })}.sig`), 1767225600);
  assert.equal(tokenExpiry(`${part({})}.${part({ sub: "x" })}.sig`), null);
  assert.equal(tokenExpiry("not a jwt"), null);
});

test("useInbox without a provider's inbox fails loudly", () => {
  function Lost() {
    useInbox();
    return null;
  }
  assert.throws(() => renderToStaticMarkup(React.createElement(Lost)), /inbox=/);
});

test("the badge adds what arrived live above the server's counted seq, once", () => {
  // Four arrived live; the inbox's writer had stored three when the answer to a mark came.
  let state = { ...inboxInitial, loading: false, counts: { ...emptyCounts() } };
  state = inboxReducer(state, { type: "live", notifications: [1, 2, 3, 4].map((seq) => live(seq)) });
  assert.equal(state.counts.unread, 4);
  const server = { ...emptyCounts(), total: 3, unread: 2, unseen: 3, seq: 3 };
  server.unread_by_severity = { ...server.unread_by_severity, info: 2 };
  const marked = inboxReducer(state, {
    type: "change", change: { ids: ["n3"], set: { read: true }, counts: server },
  });
  assert.equal(marked.counts.unread, 3); // n1, n2 (the server's) and n4 (not stored yet)
  assert.equal(marked.counts.total, 4);
  assert.equal(marked.counts.seq, undefined); // the mark is the client's business, not the badge's
  // n4 comes again (a replay after a reconnect): counted once.
  const replayed = inboxReducer(marked, { type: "live", notifications: [live(4)] });
  assert.equal(replayed.counts.unread, 3);
  // A newer arrival counts on top.
  assert.equal(inboxReducer(marked, { type: "live", notifications: [live(5)] }).counts.unread, 4);
  // Counts from an API without `seq` are taken as they come.
  const { seq: _seq, ...older } = server;
  const plain = inboxReducer(state, { type: "change", change: { ids: ["n3"], set: { read: true }, counts: older } });
  assert.equal(plain.counts.unread, 2);
  assert.equal(inboxReducer(plain, { type: "live", notifications: [live(5)] }).counts.unread, 3);
  // A welcome's counts with `seq`: held items above it are added, not those below.
  const welcomed = inboxReducer(state, { type: "welcome", counts: { ...server, unread: 3 }, seq: 4 });
  assert.equal(welcomed.counts.unread, 4);
});
