// The React bindings rendered by React itself (react-dom/server): text stays text, the badge
// counts unread notifications, and the hook refuses to work outside its provider.
import assert from "node:assert/strict";
import { test } from "node:test";
import React from "react";
import { renderToStaticMarkup } from "react-dom/server";

import { TidingsClient } from "../src/tidings.js";
import { NotificationBell, NotificationProvider, useNotifications, severityOf } from "../src/tidings-react.js";

const h = React.createElement;
const client = new TidingsClient({ url: "ws://127.0.0.1:9/ws", token: "t", WebSocket: class {} }); // never started

const note = (seq, title, severity = "info", extra = {}) => ({
  type: "notification", seq, id: `n${seq}`, event: "incident.created", room: "tenant",
  time: "2026-01-01T00:00:00Z", title, message: "m", severity, data: {}, ...extra,
});

test("the bell renders titles as text, never as HTML, with an unread badge", () => {
  const history = [
    note(1, "<img src=x onerror=alert(1)>", "critical"),
    note(2, "Fire drill", "made-up-severity"),
    note(3, "Read already", "warning", { read: true }),
  ];
  const html = renderToStaticMarkup(
    h(NotificationProvider, { client, history }, h(NotificationBell, { defaultOpen: true, styles: false })),
  );
  assert.ok(html.includes("&lt;img src=x onerror=alert(1)&gt;"), html);
  assert.ok(!html.includes("<img"), html);
  assert.match(html, /class="tidings-bell__badge"[^>]*>2</);
  assert.match(html, /aria-label="Notifications, 2 unread"/);
  assert.match(html, /tidings-sev-critical/);
  assert.match(html, /tidings-bell__item tidings-sev-info is-unread" data-seq="2"/); // unknown → info
  // Newest first.
  assert.ok(html.indexOf("Read already") < html.indexOf("Fire drill"));
});

test("an empty bell says so and shows no badge", () => {
  const html = renderToStaticMarkup(
    h(NotificationProvider, { client }, h(NotificationBell, { defaultOpen: true, emptyText: "Nothing new" })),
  );
  assert.ok(html.includes("Nothing new"));
  assert.ok(!html.includes("tidings-bell__badge"));
});

test("history is merged by id and capped at max", () => {
  let seen;
  function Probe() {
    seen = useNotifications();
    return null;
  }
  const history = [note(1, "a"), note(2, "b"), note(2, "b again"), note(3, "c")];
  renderToStaticMarkup(h(NotificationProvider, { client, history, max: 2 }, h(Probe)));
  assert.deepEqual(seen.notifications.map((n) => n.id), ["n3", "n2"]);
  assert.equal(seen.unread, 2);
  assert.equal(severityOf({ severity: "bogus" }), "info");
});

test("useNotifications outside a provider fails loudly", () => {
  function Lost() {
    useNotifications();
    return null;
  }
  assert.throws(() => renderToStaticMarkup(h(Lost)), /NotificationProvider/);
});
