// Pure functions of the SDK, and the wire edge cases a correct gateway never produces (duplicate
// and stale seqs, unknown frame types and fields, a refusal that must not be retried), played by
// a scripted `ws` server.
import assert from "node:assert/strict";
import { once } from "node:events";
import { test } from "node:test";
import WebSocket, { WebSocketServer } from "ws";

import {
  backoffDelay,
  connect,
  gatewayError,
  namedRoom,
  parseFrame,
  State,
  SUBPROTOCOL,
  TidingsError,
} from "../src/tidings.js";

test("backoff: full jitter under an exponential cap of 0.5 s · 2^n, at most 30 s", () => {
  const top = () => 0.999999;
  const caps = [0, 1, 2, 3, 4, 5, 6, 7, 40].map((n) => Math.round(backoffDelay(n, {}, top)));
  assert.deepEqual(caps, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  assert.equal(backoffDelay(3, {}, () => 0), 0);
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(2, { base: 100, max: 1000 });
    assert.ok(d >= 0 && d < 400);
  }
});

test("frames: newline-delimited JSON, blank lines skipped", () => {
  assert.deepEqual(parseFrame('{"type":"a"}\n{"type":"b","x":"1\\n2"}\n'), [
    { type: "a" },
    { type: "b", x: "1\n2" },
  ]);
  assert.throws(() => parseFrame("{nope"));
});

test("rooms: bare names become room:<name>; anything else is refused", () => {
  assert.equal(namedRoom("site-1"), "room:site-1");
  assert.equal(namedRoom("room:a_b"), "room:a_b");
  for (const bad of ["", "user:bob", "room:a.b", "x".repeat(65), 7]) {
    assert.throws(() => namedRoom(bad), { code: "bad_room" });
  }
});

test("gateway errors: one reading of an error frame, a close, or both", () => {
  const frame = { type: "error", code: "forbidden", number: 211, reason: "no room:hq", field: "room", id: 3 };
  const answer = gatewayError({ frame });
  assert.ok(answer instanceof TidingsError);
  assert.deepEqual(
    [answer.code, answer.message, answer.number, answer.field, answer.id, answer.closeCode],
    ["forbidden", "no room:hq", 211, "room", 3, undefined],
  );
  const before = { type: "error", code: "token_expired", number: 204, reason: "expired", close: 4401 };
  assert.equal(gatewayError({ frame: before }).closeCode, 4401);
  const closed = gatewayError({ frame: before, closeCode: 1006, reason: "" });
  assert.deepEqual([closed.code, closed.message, closed.closeCode], ["token_expired", "expired", 1006]);
  const named = gatewayError({ closeCode: 4003, reason: "forbidden" });
  assert.deepEqual([named.code, named.message, named.closeCode], ["forbidden", "forbidden", 4003]);
  assert.equal(gatewayError({ closeCode: 4001 }).code, "unauthorized");
  assert.equal(gatewayError({ closeCode: 1006 }).message, "connection lost");
  assert.equal(gatewayError({ closeCode: 1012 }).message, "closed 1012");
});

/** A scripted peer: `script(socket, hello)` answers each connection's hello. */
async function scripted(script) {
  const server = new WebSocketServer({ port: 0, host: "127.0.0.1", handleProtocols: () => SUBPROTOCOL });
  await once(server, "listening");
  const hellos = [];
  server.on("connection", (socket) => {
    socket.once("message", (data) => {
      const hello = JSON.parse(String(data));
      hellos.push(hello);
      script(socket, hello, hellos.length);
    });
  });
  return { url: `ws://127.0.0.1:${server.address().port}/ws`, hellos, close: () => server.close() };
}

/** Poll until `check()` is truthy (events may all fire within one read, before a listener). */
async function until(check, what, timeout = 5000) {
  const deadline = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const welcome = (seq, extra = {}) =>
  JSON.stringify({ type: "welcome", connection: "c", tenant: "t", user: "u", roles: [], rooms: ["tenant"],
    seq, epoch: "e1", recovered: false, expires_at: null, ...extra });
const note = (seq, extra = {}) =>
  JSON.stringify({ type: "notification", seq, id: `n${seq}`, event: "a.b", room: "tenant",
    time: "2026-01-01T00:00:00Z", title: `t${seq}`, message: "", severity: "info", data: {}, ...extra });

test("duplicates and stale seqs are dropped; unknown types and fields are ignored", async () => {
  const peer = await scripted((socket) => {
    socket.send(welcome(4));
    socket.send([note(5), JSON.stringify({ type: "future_frame", x: 1 }), note(5), note(3),
      note(6, { brand_new_field: true }), JSON.stringify({ type: "synced", seq: 9 })].join("\n"));
  });
  const client = connect({ url: peer.url, token: "t", WebSocket });
  const seen = [];
  client.on("notification", (n) => seen.push(n.seq));
  try {
    await until(() => client.state === State.LIVE, "live");
    assert.deepEqual(seen, [5, 6]);
    assert.equal(client.stats.duplicates, 2);
    assert.equal(client.stats.frames, 2);
    assert.deepEqual(client.position, { seq: 9, epoch: "e1" }); // synced moves a quiet client on
  } finally {
    await client.close();
    peer.close();
  }
});

test("a dropped connection resumes with since/epoch and the same named rooms", async () => {
  const peer = await scripted((socket, hello, n) => {
    if (n === 1) {
      socket.send(welcome(1));
      socket.send(note(2));
      setTimeout(() => socket.terminate(), 20); // no close frame, like a killed process
    } else {
      socket.send(welcome(3, { recovered: true }));
      socket.send([note(2), note(3), JSON.stringify({ type: "synced", seq: 3 })].join("\n"));
    }
  });
  const client = connect({ url: peer.url, token: "t", rooms: ["r1"], WebSocket, backoff: { base: 20 } });
  const seen = [];
  client.on("notification", (n) => seen.push(n.seq));
  try {
    await until(() => client.welcome?.recovered && client.state === State.LIVE, "the resumed connection");
    assert.deepEqual(peer.hellos[1], { type: "hello", token: "t", since: 2, epoch: "e1", rooms: ["room:r1"] });
    assert.deepEqual(seen, [2, 3]);
  } finally {
    await client.close();
    peer.close();
  }
});

test("a resume point past the stream's end: reset out_of_range replaces it, in storage too", async () => {
  const peer = await scripted((socket) => {
    socket.send(welcome(5));
    socket.send(JSON.stringify({ type: "reset", seq: 5, epoch: "e1", reason: "out_of_range" }));
    socket.send([JSON.stringify({ type: "synced", seq: 5 }), note(6)].join("\n"));
  });
  const stored = new Map([["tidings:x", JSON.stringify({ seq: 9007199254740991, epoch: "e1" })]]);
  const storage = { getItem: (k) => stored.get(k) ?? null, setItem: (k, v) => stored.set(k, v) };
  const client = connect({ url: peer.url, token: "t", WebSocket, storage, storageKey: "tidings:x" });
  const seen = [];
  client.on("notification", (n) => seen.push(n.seq));
  try {
    await until(() => seen.length === 1, "the notification after the reset");
    assert.equal(peer.hellos[0].since, 9007199254740991); // what storage held was sent
    assert.deepEqual(seen, [6]); // not skipped as "already seen"
    assert.deepEqual(client.position, { seq: 6, epoch: "e1" });
    assert.deepEqual(JSON.parse(stored.get("tidings:x")), { seq: 6, epoch: "e1" });
  } finally {
    await client.close();
    peer.close();
  }
});

test("a forbidden hello (4003) is reported and never retried", async () => {
  const peer = await scripted((socket) => {
    socket.send(JSON.stringify({ type: "error", code: "forbidden", number: 211, reason: "no room:hq", close: 4003 }));
    socket.close(4003, "forbidden");
  });
  const client = connect({ url: peer.url, token: "t", WebSocket, rooms: ["hq"] });
  try {
    const closed = await new Promise((resolve) => client.on("state", (e) => e.state === State.CLOSED && resolve(e)));
    assert.equal(closed.error.code, "forbidden");
    assert.equal(closed.error.closeCode, 4003);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(peer.hellos.length, 1);
  } finally {
    peer.close();
  }
});

test("a revocation after the welcome (token_revoked, 4003) ends the client, no reconnect", async () => {
  const peer = await scripted((socket) => {
    socket.send(welcome(1));
    socket.send(JSON.stringify({ type: "synced", seq: 1 }));
    setTimeout(() => {
      socket.send(JSON.stringify({ type: "error", code: "token_revoked", number: 215,
        reason: "the user was revoked", field: "token", close: 4003 }));
      socket.close(4003, "token_revoked");
    }, 50);
  });
  const getToken = async () => "fresh";
  const client = connect({ url: peer.url, token: "t", getToken, WebSocket, backoff: { base: 20 } });
  try {
    const closed = await new Promise((resolve) => client.on("state", (e) => e.state === State.CLOSED && resolve(e)));
    assert.equal(closed.error.code, "token_revoked");
    assert.equal(closed.error.closeCode, 4003);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(peer.hellos.length, 1); // not even with a fresh token from getToken
  } finally {
    peer.close();
  }
});

test("maxAttempts: an unreachable gateway is given up on, and said so", async () => {
  const peer = await scripted(() => {});
  const url = peer.url;
  peer.close(); // nothing listens there any more
  const client = connect({ url, token: "t", WebSocket, maxAttempts: 3, backoff: { base: 10, max: 20 } });
  const closed = await new Promise((resolve) => client.on("state", (e) => e.state === State.CLOSED && resolve(e)));
  assert.equal(closed.error.code, "unreachable");
  assert.match(closed.error.message, /3 attempts/);
});
