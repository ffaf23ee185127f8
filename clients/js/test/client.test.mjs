// The SDK against a real gateway (started by pytest via `tidings dev`), with the `ws` package.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";

import { connect, State, TidingsClient } from "../src/tidings.js";
import { freshTenant, info, mint, next, publish, publishBatch, STACK, until } from "./env.mjs";

/** A connected client that records what it saw; closed by the caller. */
async function open(options) {
  const client = new TidingsClient({ url: STACK.ws, WebSocket, ...options });
  const seen = { notifications: [], states: [], errors: [], resets: [] };
  client.on("notification", (n) => seen.notifications.push(n));
  client.on("state", (e) => seen.states.push(e.state));
  client.on("error", (e) => seen.errors.push(e));
  client.on("reset", (r) => seen.resets.push(r));
  client.start();
  await until(() => client.state === State.LIVE, { what: "state live" });
  return { client, seen };
}

const titles = (list) => list.map((n) => n.title);

describe("connecting", () => {
  test("hello/welcome with the dev token, then a published notification arrives", async () => {
    const { client, seen } = await open({ token: STACK.token });
    try {
      assert.deepEqual(seen.states.slice(0, 3), ["connecting", "connected", "live"]);
      assert.equal(client.welcome.tenant, "demo");
      assert.equal(client.welcome.recovered, false);
      assert.ok(client.welcome.rooms.includes("tenant"));
      const { seq } = await publish({ tenant: "demo", title: "hello from node", severity: "warning" });
      await until(() => seen.notifications.some((n) => n.seq === seq), { what: "the notification" });
      const got = seen.notifications.find((n) => n.seq === seq);
      assert.equal(got.title, "hello from node");
      assert.equal(got.severity, "warning");
      assert.equal(got.room, "tenant");
      assert.equal(client.position.seq, seq);
      assert.equal(client.position.epoch, client.welcome.epoch);
    } finally {
      await client.close();
    }
  });

  test("a burst arrives in order, exactly once, several notifications per frame", async () => {
    const tenant = freshTenant();
    const { client, seen } = await open({ token: await mint({ tenant, user: "u1" }) });
    try {
      const results = await publishBatch(
        Array.from({ length: 60 }, (_, i) => ({ tenant, title: `burst ${i}` })),
      );
      await until(() => seen.notifications.length >= 60, { what: "60 notifications" });
      assert.deepEqual(titles(seen.notifications), results.map((_, i) => `burst ${i}`));
      const seqs = seen.notifications.map((n) => n.seq);
      assert.deepEqual(seqs, results.map((r) => r.seq));
      // The gateway coalesces what is due within 2 ms into one newline-delimited frame.
      assert.ok(client.stats.frames < client.stats.notifications, JSON.stringify(client.stats));
    } finally {
      await client.close();
    }
  });

  test("a token from getToken, and close() ends everything with state closed", async () => {
    const tenant = freshTenant();
    let calls = 0;
    const getToken = async () => {
      calls += 1;
      return mint({ tenant, user: "u1" });
    };
    const { client, seen } = await open({ getToken });
    assert.equal(calls, 1);
    await client.close();
    assert.equal(client.state, State.CLOSED);
    await publish({ tenant, title: "after close" });
    await sleep(300);
    assert.deepEqual(seen.notifications, []);
    assert.equal(seen.states.at(-1), "closed");
    assert.deepEqual(seen.errors, []);
    await client.close(); // idempotent
  });

  test("options are checked before anything is sent", () => {
    assert.throws(() => new TidingsClient({ url: STACK.ws, WebSocket }), { code: "invalid_option" });
    assert.throws(() => new TidingsClient({ token: "x", WebSocket }), { field: "url" });
    assert.throws(
      () => new TidingsClient({ url: `${STACK.ws}?token=abc`, token: "x", WebSocket }),
      { code: "invalid_option", field: "url" },
    );
    assert.throws(() => new TidingsClient({ url: "ftp://x/ws", token: "x", WebSocket }), {
      code: "invalid_option",
    });
    assert.throws(() => new TidingsClient({ url: STACK.ws, token: "x", since: 3, WebSocket }), {
      field: "since",
    });
    assert.throws(() => new TidingsClient({ url: STACK.ws, token: "x", rooms: ["a.b"], WebSocket }), {
      code: "bad_room",
    });
    assert.equal(new TidingsClient({ url: "http://h:1/ws", token: "x", WebSocket }).url, "ws://h:1/ws");
  });
});

describe("resume", () => {
  test("a client that comes back with its position gets exactly what it missed", async () => {
    const tenant = freshTenant();
    const token = await mint({ tenant, user: "u1" });
    const first = await open({ token });
    await publish({ tenant, title: "before" });
    await until(() => first.seen.notifications.length === 1, { what: "the first notification" });
    const position = first.client.position;
    await first.client.close();

    for (const i of [1, 2, 3]) await publish({ tenant, title: `missed ${i}` });
    const again = await open({ token, since: position.seq, epoch: position.epoch });
    try {
      assert.equal(again.client.welcome.recovered, true);
      await until(() => again.seen.notifications.length >= 3, { what: "the replay" });
      await publish({ tenant, title: "live" });
      await until(() => again.seen.notifications.length >= 4, { what: "the live one" });
      assert.deepEqual(titles(again.seen.notifications), ["missed 1", "missed 2", "missed 3", "live"]);
      assert.deepEqual(again.seen.resets, []);
    } finally {
      await again.client.close();
    }
  });

  test("the resume point is kept in a Storage (sessionStorage in a browser)", async () => {
    const tenant = freshTenant();
    const token = await mint({ tenant, user: "u1" });
    const data = new Map();
    const storage = { getItem: (k) => data.get(k) ?? null, setItem: (k, v) => data.set(k, String(v)) };
    const first = await open({ token, storage, storageKey: "k" });
    await publish({ tenant, title: "one" });
    await until(() => first.seen.notifications.length === 1, { what: "one" });
    await first.client.close();
    const saved = JSON.parse(data.get("k"));
    assert.equal(saved.seq, first.seen.notifications[0].seq);

    await publish({ tenant, title: "two" });
    const second = await open({ token, storage, storageKey: "k" }); // a page reload
    try {
      assert.equal(second.client.welcome.recovered, true);
      await until(() => second.seen.notifications.length === 1, { what: "two" });
      assert.deepEqual(titles(second.seen.notifications), ["two"]);
    } finally {
      await second.client.close();
    }
  });

  test("a resume point from another stream epoch ends in a reset, not in a wrong replay", async () => {
    const tenant = freshTenant();
    const { client, seen } = await open({
      token: await mint({ tenant, user: "u1" }),
      since: 5,
      epoch: "not-this-stream",
    });
    try {
      assert.equal(client.welcome.recovered, false);
      await until(() => seen.resets.length === 1, { what: "a reset event" });
      assert.equal(seen.resets[0].reason, "epoch_changed");
      assert.equal(client.epoch, client.welcome.epoch);
    } finally {
      await client.close();
    }
  });

  test("a draining gateway's reconnect frame: the client moves on and loses nothing", async () => {
    const tenant = freshTenant();
    const { client, seen } = await open({
      token: await mint({ tenant, user: "u1" }),
      backoff: { base: 200, max: 1000 },
    });
    try {
      await publish({ tenant, title: "n0" });
      await until(() => seen.notifications.length === 1, { what: "n0" });
      const pid = info().pids.gateway;
      process.kill(pid, "SIGTERM"); // drain: `reconnect` frames, then exit; `tidings dev` restarts it
      await until(() => seen.states.includes("disconnected"), { what: "the disconnect" });
      for (const i of [1, 2, 3, 4]) await publish({ tenant, title: `n${i}` });
      await until(() => info().pids.gateway !== pid, { timeout: 20000, what: "the restart" });
      await until(() => seen.notifications.length >= 5, { timeout: 20000, what: "all five" });
      assert.deepEqual(titles(seen.notifications), ["n0", "n1", "n2", "n3", "n4"]);
      assert.equal(client.stats.duplicates, 0);
      assert.ok(client.stats.connects >= 2);
      await until(() => client.state === State.LIVE, { what: "live again" });
      assert.equal(client.welcome.recovered, true);
    } finally {
      await client.close();
    }
  });
});

describe("rooms", () => {
  test("subscribe and unsubscribe named rooms the token allows; others are refused", async () => {
    const tenant = freshTenant();
    const { client, seen } = await open({
      token: await mint({ tenant, user: "u1", rooms: ["site-*"] }),
      rooms: ["site-paris"],
    });
    try {
      assert.ok(client.welcome.rooms.includes("room:site-paris"));
      await client.subscribe("site-berlin");
      assert.deepEqual(client.rooms.sort(), ["room:site-berlin", "room:site-paris"]);
      await publish({ tenant, title: "berlin 1", audience: { room: "site-berlin" } });
      await until(() => seen.notifications.length === 1, { what: "berlin 1" });
      assert.equal(seen.notifications[0].room, "room:site-berlin");

      await client.unsubscribe("room:site-berlin");
      await publish({ tenant, title: "berlin 2", audience: { room: "site-berlin" } });
      await publish({ tenant, title: "paris", audience: { room: "site-paris" } });
      await until(() => seen.notifications.length === 2, { what: "paris" });
      assert.deepEqual(titles(seen.notifications), ["berlin 1", "paris"]);

      await assert.rejects(client.subscribe("hq"), { code: "forbidden", number: 211 });
      assert.deepEqual(client.rooms, ["room:site-paris"]);
      assert.equal(client.state, State.LIVE); // a refused subscribe does not close
      assert.ok((await client.ping()) >= 0);
    } finally {
      await client.close();
    }
  });

  test("users and tenants see only their own notifications", async () => {
    const tenant = freshTenant();
    const other = freshTenant();
    const alice = await open({ token: await mint({ tenant, user: "alice", roles: ["ops"] }) });
    const bob = await open({ token: await mint({ tenant, user: "bob" }) });
    const eve = await open({ token: await mint({ tenant: other, user: "alice", roles: ["ops"] }) });
    try {
      await publish({ tenant, title: "to alice", audience: { user: "alice" } });
      await publish({ tenant, title: "to ops", audience: { role: "ops" } });
      await publish({ tenant, title: "to everyone" });
      await publish({ tenant: other, title: "other tenant" });
      await until(() => alice.seen.notifications.length === 3, { what: "alice's three" });
      await until(() => eve.seen.notifications.length === 1, { what: "eve's one" });
      await until(() => bob.seen.notifications.length === 1, { what: "bob's one" });
      await sleep(200);
      assert.deepEqual(titles(alice.seen.notifications), ["to alice", "to ops", "to everyone"]);
      assert.deepEqual(titles(bob.seen.notifications), ["to everyone"]);
      assert.deepEqual(titles(eve.seen.notifications), ["other tenant"]);
    } finally {
      await Promise.all([alice, bob, eve].map((c) => c.client.close()));
    }
  });
});

describe("tokens", () => {
  test("getToken refreshes before expiry; a fixed token expires and the client stops", async () => {
    const tenant = freshTenant();
    let calls = 0;
    const refreshing = await open({
      getToken: async () => {
        calls += 1;
        return mint({ tenant, user: "u1", ttl: "6s" });
      },
    });
    const fixed = await open({ token: await mint({ tenant, user: "u2", ttl: "6s" }) });
    try {
      const firstExpiry = refreshing.client.welcome.expires_at;
      await until(() => fixed.client.state === State.CLOSED, { timeout: 12000, what: "the expiry" });
      const closedWith = fixed.seen.errors.at(-1);
      assert.equal(closedWith.code, "token_expired");
      assert.equal(closedWith.closeCode, 4401);
      // Past the first token's expiry the refreshed connection is the same one, still live.
      assert.ok(Date.now() / 1000 > firstExpiry);
      assert.ok(calls >= 2, `getToken called ${calls} times`);
      assert.equal(refreshing.client.stats.connects, 1);
      assert.equal(refreshing.client.state, State.LIVE);
      await publish({ tenant, title: "still here" });
      await until(() => refreshing.seen.notifications.length === 1, { what: "still here" });
    } finally {
      await Promise.all([refreshing.client.close(), fixed.client.close()]);
    }
  });

  test("a refused token is retried once with a fresh one, then the client stops", async () => {
    let calls = 0;
    const client = connect({
      url: STACK.ws,
      WebSocket,
      getToken: () => {
        calls += 1;
        return "not-a-jwt";
      },
    });
    const closed = next(client, "state", { filter: (e) => e.state === State.CLOSED });
    const event = await closed;
    assert.equal(event.error.code, "token_malformed");
    assert.equal(event.error.closeCode, 4001);
    assert.equal(calls, 2);
  });
});
