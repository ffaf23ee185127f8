// A refused origin (issue 13 B.4) against the real gateway: the upgrade's 403 reaches a browser
// as a bare close (1006), so the client asks the gateway over HTTP and stops with
// `origin_forbidden` instead of retrying forever. Here Node plays the browser: `ws` and `fetch`
// send the Origin header a page would.
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";

import { State, TidingsClient } from "../src/tidings.js";
import { STACK, until } from "./env.mjs";

const REFUSED = "http://refused.example:5173";

function asPage(origin) {
  class PageSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { origin });
    }
  }
  const pageFetch = (url, init) => fetch(url, { ...init, headers: { Origin: origin } });
  return { WebSocket: PageSocket, fetch: pageFetch, probeOrigin: true };
}

function watch(client) {
  const seen = { states: [], errors: [] };
  client.on("state", (e) => seen.states.push(e));
  client.on("error", (e) => seen.errors.push(e));
  return seen;
}

test("a refused origin ends the client with origin_forbidden after one attempt", async () => {
  const client = new TidingsClient({ url: STACK.ws, token: STACK.token, ...asPage(REFUSED) });
  const seen = watch(client);
  client.start();
  try {
    await until(() => client.state === State.CLOSED, { what: "state closed" });
    const last = seen.states.at(-1);
    assert.equal(last.error.code, "origin_forbidden");
    assert.equal(last.error.status, 403);
    assert.match(last.error.message, /refused\.example:5173.*TIDINGS_GATEWAY_ALLOWED_ORIGINS/);
    assert.deepEqual(
      seen.states.map((e) => e.state),
      ["connecting", "closed"], // no reconnect loop
    );
    assert.deepEqual(seen.errors.map((e) => e.code), ["origin_forbidden"]);
  } finally {
    await client.close();
  }
});

test("an allowed origin connects (the probe is never needed)", async () => {
  const allowed = new URL(STACK.demo).origin; // tidings dev allows the demo page's origin
  const client = new TidingsClient({ url: STACK.ws, token: STACK.token, ...asPage(allowed) });
  client.start();
  try {
    await until(() => client.state === State.LIVE, { what: "state live" });
  } finally {
    await client.close();
  }
});

test("an unreachable gateway is not taken for a refusal: the client keeps retrying", async () => {
  // A port nothing listens on: the socket fails before it opens and so does the probe.
  const url = "ws://127.0.0.1:9/ws";
  const client = new TidingsClient({
    url,
    token: STACK.token,
    backoff: { base: 10, max: 20 },
    ...asPage(REFUSED),
  });
  const seen = watch(client);
  client.start();
  try {
    await until(() => seen.states.filter((e) => e.state === State.DISCONNECTED).length >= 3, {
      what: "three reconnect waits",
    });
    assert.ok(!seen.states.some((e) => e.state === State.CLOSED), JSON.stringify(seen.states));
  } finally {
    await client.close();
  }
});
