// Where the real dev stack is: env vars (set by tests/e2e/test_js_client.py), else the
// dev.json of a `tidings dev` running in the repository root (`npm test` by hand).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";

function devJson() {
  const path =
    process.env.TIDINGS_DEV_JSON ??
    join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", ".tidings", "dev.json");
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return null;
  }
}

function stack() {
  const info = devJson();
  const env = {
    ws: process.env.TIDINGS_WS_URL ?? info?.gateway?.ws,
    token: process.env.TIDINGS_TOKEN ?? info?.token,
    publisher: process.env.TIDINGS_PUBLISHER_URL ?? info?.publisher?.url,
    demo: process.env.TIDINGS_DEMO_URL ?? info?.demo?.url,
    inbox: process.env.TIDINGS_INBOX_API_URL ?? info?.["inbox-api"]?.url,
  };
  const missing = Object.entries(env).filter(([, v]) => !v).map(([k]) => k);
  if (missing.length) {
    throw new Error(
      `no Tidings stack for the JS tests (missing ${missing.join(", ")}): run them through` +
        " `pytest tests/e2e/test_js_client.py`, or start `tidings dev` in the repository root",
    );
  }
  return env;
}

export const STACK = stack();

/** The current dev.json (pids change when `tidings dev` restarts a child). */
export function info() {
  return devJson();
}

/** A dev token from the demo server's dev-only endpoint. */
export async function mint({ tenant, user, roles = [], rooms = ["*"], ttl = "1h" }) {
  const query = new URLSearchParams({ tenant, user, roles: roles.join(","), rooms: rooms.join(","), ttl });
  const response = await fetch(new URL(`api/token?${query}`, STACK.demo));
  if (!response.ok) throw new Error(`mint failed: ${response.status} ${await response.text()}`);
  return (await response.json()).token;
}

/** Publish through the publisher sidecar; resolves with {id, seq}. */
export async function publish(body) {
  const response = await fetch(`${STACK.publisher}/v1/notifications`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ event: "incident.created", message: "from the JS tests", ...body }),
  });
  const answer = await response.json();
  if (response.status !== 202) throw new Error(`publish failed: ${response.status} ${JSON.stringify(answer)}`);
  return answer;
}

export async function publishBatch(notifications) {
  const response = await fetch(`${STACK.publisher}/v1/notifications/batch`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      notifications: notifications.map((n) => ({ event: "incident.created", message: "batch", ...n })),
    }),
  });
  const answer = await response.json();
  if (response.status !== 202) throw new Error(`batch failed: ${response.status} ${JSON.stringify(answer)}`);
  return answer.results;
}

/** A tenant id no other test uses, so tests never see each other's notifications. */
export function freshTenant(prefix = "js") {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Poll `check` until it returns something truthy; fail naming `what` after `timeout` ms. */
export async function until(check, { timeout = 10000, what = "the condition" } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Resolve with the next `type` event of a client. */
export function next(client, type, { timeout = 10000, filter = () => true } = {}) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${type} event within ${timeout} ms`));
    }, timeout);
    const off = client.on(type, (event) => {
      if (!filter(event)) return;
      clearTimeout(timer);
      off();
      resolve(event);
    });
  });
}
