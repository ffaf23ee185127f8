/**
 * The inbox client of the Tidings browser SDK: every notification the user may see, kept by the
 * inbox API (docs/inbox.md), with read / seen / archived state shared across devices.
 * `tidings.js` re-exports everything here.
 *
 *     import { InboxClient } from "./tidings.js";
 *     const inbox = new InboxClient({ baseUrl: "https://inbox.example.com", token: getJwt });
 *     const { items, next_cursor } = await inbox.list({ status: "unread", limit: 20 });
 *     await inbox.mark([items[0].id], { read: true });
 *
 * The gateway's `inbox` frame says when that state changed elsewhere; the pure helpers below
 * (mergeInbox, countArrivals, applyInboxChange) merge history, live notifications and those
 * frames — the React bindings are built on them.
 */

import { gatewayError, TidingsError } from "./tidings.js";

export const SEVERITY_KEYS = Object.freeze(["info", "success", "warning", "error", "critical"]);
export const INBOX_STATUSES = Object.freeze(["all", "unread", "read", "unseen", "seen", "archived"]);
const INBOX_LISTS = ["domain", "event", "severity", "room"]; // repeatable filter keys
const INBOX_TIMES = ["since", "until"];
const INBOX_MARKS = ["read", "seen", "archived"];
const TOKEN_LEAD = 30; // seconds: fetch a new token from the function this long before `exp`

/** Counts of an empty inbox (the API's shape: all five severities always present). */
export function emptyCounts() {
  return {
    total: 0,
    unread: 0,
    unseen: 0,
    unread_by_severity: Object.fromEntries(SEVERITY_KEYS.map((s) => [s, 0])),
  };
}

function filterError(field, message) {
  return new TidingsError("invalid_field", message, { field });
}

function rfc3339(value, field) {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw filterError(field, "not a valid date");
    return value.toISOString();
  }
  if (typeof value === "string" && value !== "") return value;
  throw filterError(field, "give a Date or an RFC 3339 string");
}

function listOf(value, field) {
  const values = typeof value === "string" ? [value] : value;
  if (!Array.isArray(values) || !values.every((v) => typeof v === "string" && v !== "")) {
    throw filterError(field, "give a string or an array of strings");
  }
  return values;
}

/**
 * The filter as the API's JSON (mark-all's `filter`): repeatable keys as arrays, times as RFC
 * 3339 strings. Unknown keys throw `invalid_field` here (a typo must not widen a mark-all);
 * limits (≤ 20 values, `q` ≤ 200 characters…) are the API's to check.
 */
export function inboxFilter(filter = {}, { paging = false } = {}) {
  if (filter == null || typeof filter !== "object" || Array.isArray(filter)) {
    throw filterError("filter", "give an object");
  }
  const out = {};
  for (const [key, value] of Object.entries(filter)) {
    if (value === undefined || value === null) continue;
    if (INBOX_LISTS.includes(key)) out[key] = listOf(value, key);
    else if (INBOX_TIMES.includes(key)) out[key] = rfc3339(value, key);
    else if (key === "status") {
      if (!INBOX_STATUSES.includes(value)) {
        throw filterError(key, `one of ${INBOX_STATUSES.join(", ")}`);
      }
      out[key] = value;
    } else if (key === "q") {
      if (typeof value !== "string") throw filterError(key, "give a string");
      out[key] = value;
    } else if (paging && key === "limit") {
      if (!Number.isInteger(value)) throw filterError(key, "give an integer");
      out[key] = value;
    } else if (paging && key === "cursor") {
      if (typeof value !== "string") throw filterError(key, "give the next_cursor of a page");
      out[key] = value;
    } else {
      throw filterError(key, `unknown filter key ${JSON.stringify(key)}`);
    }
  }
  return out;
}

/** The query string of a list call: `status=unread&domain=a&domain=b&limit=20` (no `?`). */
export function inboxQuery(filter = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(inboxFilter(filter, { paging: true }))) {
    for (const one of Array.isArray(value) ? value : [value]) query.append(key, String(one));
  }
  return query.toString();
}

/** `{read, seen, archived}` as the API's body keys; at least one, each a boolean. */
export function inboxMarks(set, { only } = {}) {
  if (set == null || typeof set !== "object") throw filterError("set", "give {read, seen, archived}");
  const out = {};
  for (const [key, value] of Object.entries(set)) {
    if (value === undefined) continue;
    if (!INBOX_MARKS.includes(key)) throw filterError(key, `unknown mark ${JSON.stringify(key)}`);
    if (typeof value !== "boolean" || (only !== undefined && value !== only)) {
      throw filterError(key, only === undefined ? "give true or false" : `only ${only} here`);
    }
    out[key] = value;
  }
  if (Object.keys(out).length === 0) throw filterError("set", "give read, seen or archived");
  return out;
}

/** The event's domain: `incident` of `incident.created`. */
export function domainOf(event) {
  const text = String(event ?? "");
  const dot = text.indexOf(".");
  return dot < 0 ? text : text.slice(0, dot);
}

/** An inbox item from a live notification frame: no `type`, not read, seen or archived. */
export function inboxItem(notification) {
  const { type: _type, ...fields } = notification;
  return { read: false, seen: false, archived: false, ...fields };
}

function newestFirst(a, b) {
  return (b.seq ?? 0) - (a.seq ?? 0) || String(b.time).localeCompare(String(a.time));
}

/**
 * Merge `incoming` (a page of the API, or live notifications) into `items`: newest first (by
 * `seq`, then `time`), one entry per id. An id already there keeps its place; an item from the
 * API brings its state (the server's word), a live notification changes nothing it knows.
 * Returns `{items, added}` — `added` being the incoming entries that were new.
 */
export function mergeInbox(items, incoming) {
  const byId = new Map(items.map((item) => [item.id, item]));
  const added = [];
  for (const one of incoming) {
    const item = one.type === "notification" ? inboxItem(one) : one;
    const known = byId.get(item.id);
    if (known === undefined) {
      added.push(item);
      byId.set(item.id, item);
    } else if (one.type !== "notification") {
      byId.set(item.id, { ...known, ...item });
    }
  }
  return { items: [...byId.values()].sort(newestFirst), added };
}

/**
 * `counts` after live notifications arrived that the server's counts did not include yet: each
 * new one is unread and unseen. Only those with a `seq` above `after` count — the highest
 * sequence the server's counts already covered (the top of a page loaded with them, or the
 * `seq` of a welcome that carried them): a notification replayed after a reconnect, or that
 * arrived while the first page was loading, is counted once. `null` (no counts yet) stays null.
 */
export function countArrivals(counts, notifications, { after = 0 } = {}) {
  if (counts == null) return counts;
  const next = { ...counts, unread_by_severity: { ...counts.unread_by_severity } };
  for (const n of notifications) {
    if (n.archived || n.read || !((n.seq ?? 0) > after)) continue;
    const severity = SEVERITY_KEYS.includes(n.severity) ? n.severity : "info";
    next.total += 1;
    next.unread += 1;
    if (!n.seen) next.unseen += 1;
    next.unread_by_severity[severity] = (next.unread_by_severity[severity] ?? 0) + 1;
  }
  return next;
}

/**
 * `items` after a change of the user's state (an `inbox` frame, or the answer to this client's
 * own mark): the flags of `set` on the `ids` (every item when `all`); archived items leave the
 * list (it shows what is not archived); with `muted`, items of those domains leave it too,
 * except critical ones (critical is never muted).
 */
export function applyInboxChange(items, { ids = [], set = {}, all = false, muted } = {}) {
  const marks = Object.fromEntries(
    INBOX_MARKS.filter((k) => typeof set[k] === "boolean").map((k) => [k, set[k]]),
  );
  const chosen = all ? null : new Set(ids);
  let list = items;
  if (Object.keys(marks).length > 0) {
    list = list
      .map((item) => (chosen === null || chosen.has(item.id) ? { ...item, ...marks } : item))
      .filter((item) => !item.archived);
  }
  if (Array.isArray(muted)) {
    const off = new Set(muted);
    list = list.filter((item) => item.severity === "critical" || !off.has(domainOf(item.event)));
  }
  return list;
}

function inboxBase(baseUrl) {
  if (typeof baseUrl !== "string" || baseUrl === "") {
    throw new TidingsError("invalid_option", "give the inbox API's `baseUrl`", { field: "baseUrl" });
  }
  let parsed;
  try {
    const here = globalThis.location?.href;
    parsed = here ? new URL(baseUrl, here) : new URL(baseUrl);
  } catch {
    throw new TidingsError("invalid_option", `not a URL: ${JSON.stringify(baseUrl)}`, {
      field: "baseUrl",
    });
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new TidingsError("invalid_option", `need an http(s) URL, got ${parsed.protocol}`, {
      field: "baseUrl",
    });
  }
  if (parsed.searchParams.has("token")) {
    throw new TidingsError("invalid_option", "never put the token in the URL; pass `token`", {
      field: "baseUrl",
    });
  }
  parsed.search = "";
  parsed.hash = "";
  // The API's origin (and path prefix, behind an ingress); its routes are under v1/inbox/.
  let path = parsed.pathname.endsWith("/") ? parsed.pathname : `${parsed.pathname}/`;
  if (!path.endsWith("/v1/inbox/")) path += "v1/inbox/";
  parsed.pathname = path;
  return parsed.href;
}

/** The `exp` claim of a JWT (unix seconds), or null when it has none or is not a JWT. */
export function tokenExpiry(token) {
  try {
    const part = String(token).split(".")[1];
    const text = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = JSON.parse(text).exp;
    return Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}

/**
 * The inbox API over HTTP (fetch): history with filters and cursor paging, exact counts, marks,
 * preferences. Every refusal is a TidingsError with the API's error code (`not_found`,
 * `invalid_field`, `forbidden`…, the same table as the gateway's), plus `status`.
 *
 *     const inbox = new InboxClient({ baseUrl: "https://api.example.com", token: getJwt });
 *     const { items, next_cursor } = await inbox.list({ status: "unread", limit: 20 });
 *     await inbox.mark([items[0].id], { read: true });
 */
export class InboxClient {
  /** @param {import("./tidings.d.ts").InboxClientOptions} options */
  constructor(options) {
    const o = options ?? {};
    this.baseUrl = inboxBase(o.baseUrl);
    this._token = typeof o.token === "string" && o.token !== "" ? o.token : null;
    this._getToken = typeof o.token === "function" ? o.token : null;
    this._pendingToken = null;
    if (this._token === null && this._getToken === null) {
      throw new TidingsError("invalid_option", "give `token`: a JWT or an async function", {
        field: "token",
      });
    }
    const fetchImpl = o.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== "function") {
      throw new TidingsError("invalid_option", "no fetch here: pass `fetch`", { field: "fetch" });
    }
    this._fetch = (...args) => fetchImpl(...args); // a bare window.fetch refuses another `this`
    this.timeout = o.timeout ?? 10000;
  }

  /** A page of the inbox, newest first: `{items, next_cursor}` (null on the last page). */
  async list(filter = {}) {
    const query = inboxQuery(filter);
    return this._call("GET", `notifications${query ? `?${query}` : ""}`);
  }

  /** One notification with its state; `not_found` for an id this user may not see. */
  async get(id) {
    if (typeof id !== "string" || id === "") throw filterError("id", "give a notification id");
    return this._call("GET", `notifications/${encodeURIComponent(id)}`);
  }

  /** Exact counts: total, unread, unseen, unread by severity. */
  async counts() {
    return this._call("GET", "counts");
  }

  /** Set read / seen / archived on `ids` (all or nothing): `{changed, counts}`. */
  async mark(ids, set) {
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === "string" && id !== "")) {
      throw filterError("ids", "give an array of notification ids");
    }
    return this._call("POST", "state", { ids, ...inboxMarks(set) });
  }

  /** Mark everything (or what `filter` selects) read / seen / archived: `{counts}`. */
  async markAll(set = { read: true }, filter) {
    const body = inboxMarks(set, { only: true });
    if (filter != null) body.filter = inboxFilter(filter);
    return this._call("POST", "mark-all", body);
  }

  /** `{channels, defaults, overrides, effective}`: by event domain × channel. */
  async preferences() {
    return this._call("GET", "preferences");
  }

  /** Override channels per domain (`null` removes an override); answers as preferences(). */
  async setPreferences(domains) {
    return this._call("PUT", "preferences", { domains });
  }

  /** The tenant's defaults (same shape as preferences()). */
  async preferenceDefaults() {
    return this._call("GET", "preferences/defaults");
  }

  /** Set the tenant's defaults (needs the admin role, else `forbidden`). */
  async setPreferenceDefaults(domains) {
    return this._call("PUT", "preferences/defaults", { domains });
  }

  async _bearer(fresh) {
    if (this._getToken === null) return this._token;
    const exp = this._token == null ? null : tokenExpiry(this._token);
    const stale = exp != null && exp - Date.now() / 1000 < TOKEN_LEAD;
    if (!fresh && this._token != null && !stale) return this._token;
    if (this._pendingToken === null) {
      // Concurrent calls share one call of the token function.
      const pending = this._newToken();
      const done = () => {
        if (this._pendingToken === pending) this._pendingToken = null;
      };
      pending.then(done, done);
      this._pendingToken = pending;
    }
    return this._pendingToken;
  }

  async _newToken() {
    let token;
    try {
      token = await this._getToken();
    } catch (err) {
      throw new TidingsError("token_unavailable", `token() failed: ${err?.message ?? err}`);
    }
    if (typeof token !== "string" || token === "") {
      throw new TidingsError("token_unavailable", "token() returned no token");
    }
    this._token = token;
    return token;
  }

  async _call(method, path, body, retried = false) {
    const token = await this._bearer(retried);
    const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.timeout);
    let response;
    let text;
    try {
      response = await this._fetch(new URL(path, this.baseUrl).href, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: abort.signal,
        credentials: "omit", // the token says who calls, never a cookie
      });
      text = await response.text();
    } catch (err) {
      if (abort.signal.aborted) {
        throw new TidingsError("timeout", `no answer from the inbox API in ${this.timeout} ms`);
      }
      throw new TidingsError("unreachable", `the inbox API did not answer: ${err?.message ?? err}`);
    } finally {
      clearTimeout(timer);
    }
    let parsed = null;
    if (text !== "") {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = null;
      }
    }
    if (response.ok) {
      if (parsed === null && text !== "") {
        throw new TidingsError("malformed", `the inbox API answered ${method} ${path} with no JSON`);
      }
      return parsed;
    }
    const error = gatewayError({ status: response.status, body: parsed });
    // An expired token: ask the function for a new one, once.
    if (response.status === 401 && this._getToken !== null && !retried) {
      return this._call(method, path, body, true);
    }
    throw error;
  }
}
