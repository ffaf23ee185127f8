/**
 * Tidings browser SDK: one WebSocket to a gateway; every notification once, in stream order,
 * across reconnects. A dependency-free ES module implementing docs/protocol.md
 * (subprotocol `tidings.v1.json`); load it as is (`<script type="module">`, a bundler, or Node
 * with the `ws` package passed as `WebSocket`).
 *
 *     import { connect } from "./tidings.js";
 *     const client = connect({ url: "wss://example.com/ws", getToken: fetchJwt });
 *     client.on("notification", (n) => console.log(n.seq, n.title));
 *     client.on("state", ({ state }) => console.log(state));
 *
 * The client remembers the resume point (last `seq` and the stream `epoch`, optionally in
 * `sessionStorage`), sends it in every `hello`, drops anything at or below it (duplicate
 * suppression), reconnects with exponential backoff and full jitter, and refreshes its token
 * before it expires when given `getToken`.
 */

export const VERSION = "0.1.0";
export const SUBPROTOCOL = "tidings.v1.json";

/** Connection states, in the order a healthy connection goes through them. */
export const State = Object.freeze({
  CONNECTING: "connecting", // socket opening, hello sent, no welcome yet
  CONNECTED: "connected", // welcome received; replayed notifications may still be arriving
  LIVE: "live", // synced: everything up to now has been delivered
  DISCONNECTED: "disconnected", // waiting (`delay` ms) before the next attempt
  CLOSED: "closed", // for good: close(), or a refusal that retrying cannot fix
});

const OPEN = 1; // WebSocket.OPEN, the same in browsers and `ws`
const ABNORMAL = 1006; // no close frame: the network or the gateway process died
const RATE_LIMITED = 4029;
const RATE_LIMITED_DELAY = 5000; // protocol §12: at least 5 s after 4029
// Closes that retrying unchanged cannot fix (protocol §12), and the error each stands for when
// no `error` frame came first: "never" ends the client, "new_token" asks getToken once more.
const REFUSING_CLOSES = new Map([
  [1009, { code: "too_large", retry: "never" }],
  [4000, { code: "bad_request", retry: "never" }],
  [4003, { code: "forbidden", retry: "never" }],
  [4001, { code: "unauthorized", retry: "new_token" }],
  [4401, { code: "token_expired", retry: "new_token" }],
]);
const MAX_TIMER = 2 ** 31 - 1; // setTimeout overflows beyond this many ms
const ROOM_RE = /^room:[A-Za-z0-9_-]{1,64}$/;

/** An error with a stable `code`: the gateway's error code, or one of this client's own. */
export class TidingsError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{closeCode?: number, status?: number, number?: number, field?: string, id?: number}} [details]
   */
  constructor(code, message, details = {}) {
    super(message);
    this.name = "TidingsError";
    this.code = code;
    this.closeCode = details.closeCode;
    this.status = details.status;
    this.number = details.number;
    this.field = details.field;
    this.id = details.id;
  }
}

/**
 * The delay before reconnect attempt `attempt` (0-based): full jitter, a uniform random time in
 * [0, min(max, base·2^attempt)) — it spreads a reconnect storm evenly instead of in waves.
 */
export function backoffDelay(attempt, { base = 500, max = 30000 } = {}, random = Math.random) {
  const cap = Math.min(max, base * 2 ** Math.min(Math.max(attempt, 0), 52));
  return random() * cap;
}

/** The JSON objects of one server text frame (newline-delimited); blank lines are skipped. */
export function parseFrame(text) {
  const objects = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    objects.push(JSON.parse(line));
  }
  return objects;
}

/** `room:<name>` from `room:<name>` or a bare `<name>`; throws `bad_room` otherwise. */
export function namedRoom(room) {
  const name = typeof room === "string" && !room.includes(":") ? `room:${room}` : room;
  if (typeof name !== "string" || !ROOM_RE.test(name)) {
    throw new TidingsError("bad_room", `not a named room: ${JSON.stringify(room)}`, {
      field: "room",
    });
  }
  return name;
}

function wsUrl(url) {
  if (typeof url !== "string" || url === "") {
    throw new TidingsError("invalid_option", "give the gateway's `url`", { field: "url" });
  }
  const base = globalThis.location?.href;
  let parsed;
  try {
    parsed = base ? new URL(url, base) : new URL(url);
  } catch {
    throw new TidingsError("invalid_option", `not a URL: ${JSON.stringify(url)}`, {
      field: "url",
    });
  }
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  if (parsed.protocol === "https:") parsed.protocol = "wss:";
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new TidingsError("invalid_option", `need a ws(s):// URL, got ${parsed.protocol}`, {
      field: "url",
    });
  }
  if (parsed.searchParams.has("token")) {
    // The gateway refuses it (token_in_url): URLs end up in logs. The token goes in `hello`.
    throw new TidingsError("invalid_option", "never put the token in the URL; pass `token`", {
      field: "url",
    });
  }
  return parsed.href;
}

function resolveStorage(storage) {
  if (storage === "session") return globalThis.sessionStorage ?? null;
  if (storage === "local") return globalThis.localStorage ?? null;
  return storage ?? null;
}

/**
 * The client's error for what a Tidings server said — the one place a refusal is read: an
 * `error` frame (answering a request, or sent before a close), and/or the close that ended the
 * connection (`closeCode`, and its `reason`, which names the error when no frame came first),
 * or an HTTP answer of the inbox API (`status` and its parsed JSON `body`, `{"error": {code,
 * reason, field}}`; a body without one gives the code `http_<status>`).
 */
export function gatewayError({ frame = null, closeCode, reason = "", status, body } = {}) {
  if (status != null) {
    const said = body?.error;
    if (said != null && typeof said === "object" && typeof said.code === "string") {
      return new TidingsError(said.code, String(said.reason ?? said.code), {
        status,
        number: said.number,
        field: said.field,
      });
    }
    return new TidingsError(`http_${status}`, `HTTP ${status}`, { status });
  }
  if (frame != null) {
    return new TidingsError(String(frame.code), String(frame.reason ?? frame.code), {
      number: frame.number,
      field: frame.field,
      id: frame.id,
      closeCode: closeCode ?? frame.close,
    });
  }
  const code = reason || REFUSING_CLOSES.get(closeCode)?.code || "closed";
  const message = reason || (closeCode === ABNORMAL ? "connection lost" : `closed ${closeCode}`);
  return new TidingsError(code, message, { closeCode });
}

/** One logical subscription to a gateway cluster, across any number of WebSocket connections. */
export class TidingsClient {
  /** @param {import("./tidings.d.ts").ConnectOptions} options */
  constructor(options) {
    const o = options ?? {};
    this.url = wsUrl(o.url);
    if (o.token == null && typeof o.getToken !== "function") {
      throw new TidingsError("invalid_option", "give `token` or `getToken`", { field: "token" });
    }
    if ((o.since == null) !== (o.epoch == null)) {
      throw new TidingsError("invalid_option", "`since` and `epoch` go together", {
        field: "since",
      });
    }
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TidingsError("invalid_option", "no WebSocket here: pass `WebSocket`", {
        field: "WebSocket",
      });
    }
    this._token = o.token ?? null;
    this._getToken = o.getToken ?? null;
    this._rooms = new Set([...(o.rooms ?? [])].map(namedRoom));
    this._backoff = { base: 500, max: 30000, healthyAfter: 30000, ...(o.backoff ?? {}) };
    this._random = o.random ?? Math.random;
    this._maxAttempts = o.maxAttempts ?? Infinity;
    this._refreshLead = o.refreshLead ?? 30000;
    this._requestTimeout = o.requestTimeout ?? 10000;
    this._openTimeout = o.openTimeout ?? 15000;
    this._pingInterval = o.pingInterval ?? 25000;
    this._pingTimeout = o.pingTimeout ?? 10000;
    this._storage = resolveStorage(o.storage);
    // After a socket closed before it opened, ask the gateway over HTTP whether it refuses this
    // page's origin (a browser hides the 403): by default where there is a page and fetch.
    const pageFetch = globalThis.fetch; // called unbound: a browser's fetch needs its window
    this._fetch = o.fetch ?? (typeof pageFetch === "function" ? (url, init) => pageFetch(url, init) : null);
    this._probeOrigin =
      (o.probeOrigin ?? globalThis.location != null) && typeof this._fetch === "function";
    this._probed = false; // the gateway answered a probe since the last welcome
    this._storageKey = o.storageKey ?? `tidings:${this.url}`;

    /** @type {string} */
    this.state = State.CLOSED;
    this.welcome = null;
    this.inboxCounts = null; // the inbox's counts: from welcome, then from every `inbox` frame
    this.stats = { frames: 0, notifications: 0, duplicates: 0, connects: 0, reconnects: 0 };
    this.epoch = o.epoch ?? null;
    this.lastSeq = o.since ?? null; // the resume point and the duplicate bar
    if (this.lastSeq == null) this._loadPosition();

    this._listeners = new Map();
    this._ws = null;
    this._pending = new Map();
    this._nextId = 0;
    this._attempt = 0; // backoff exponent: reset after a connection stayed healthy
    this._failures = 0; // attempts in a row that got no welcome
    this._authRetried = false;
    this._needToken = this._token == null;
    this._expiresAt = null; // unix seconds, from welcome/refreshed
    this._timers = new Map();
    this._started = false;
    this._closing = false;
    this._closed = false;
    this._saved = null;
    this._onOnline = () => this._reconnectNow();
  }

  // -- public API ------------------------------------------------------------------------------

  /** Start connecting (connect() calls it). */
  start() {
    if (this._started) throw new TidingsError("invalid_state", "already started");
    this._started = true;
    globalThis.addEventListener?.("online", this._onOnline);
    this._open();
    return this;
  }

  /**
   * Listen to `notification`, `state`, `error`, `welcome`, `reset`, `rooms` or `inbox` (the
   * user's inbox state changed: new counts and the changed ids); returns `off`.
   */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  off(type, listener) {
    this._listeners.get(type)?.delete(listener);
  }

  /** The resume point to persist and pass back as `since`/`epoch`, or null before any. */
  get position() {
    return this.lastSeq != null && this.epoch != null
      ? { seq: this.lastSeq, epoch: this.epoch }
      : null;
  }

  /** The named rooms this client asks for (sent in every hello). */
  get rooms() {
    return [...this._rooms];
  }

  /**
   * Join a named room. Resolves on the gateway's ack; while disconnected the room is kept and
   * joined with the next hello. Rejects with `forbidden`, `bad_room` or `too_many_rooms`.
   */
  async subscribe(room) {
    const name = namedRoom(room);
    this._rooms.add(name);
    if (!this._isWelcomed()) return;
    try {
      await this._request({ type: "subscribe", room: name });
    } catch (err) {
      if (err.code === "connection_lost") return; // joined with the next hello
      this._rooms.delete(name);
      throw err;
    } finally {
      this._emit("rooms", this.rooms);
    }
  }

  /** Leave a named room; after the ack none of its notifications arrive. */
  async unsubscribe(room) {
    const name = namedRoom(room);
    this._rooms.delete(name);
    this._emit("rooms", this.rooms);
    if (!this._isWelcomed()) return;
    try {
      await this._request({ type: "unsubscribe", room: name });
    } catch (err) {
      if (err.code !== "connection_lost") throw err;
    }
  }

  /** Round trip to the gateway (application-level ping); resolves with milliseconds. */
  async ping() {
    const started = Date.now();
    await this._request({ type: "ping" });
    return Date.now() - started;
  }

  /** Close (1000) and stop for good; no event but the final `state` follows. Idempotent. */
  close() {
    if (this._closed) return Promise.resolve();
    this._closing = true;
    const ws = this._ws;
    if (ws == null) {
      this._finish(null);
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      let done = () => {
        done = () => {};
        this._detach(ws);
        this._ws = null;
        this._finish(null);
        resolve();
      };
      ws.onclose = () => done();
      this._setTimer("close", 2000, () => done()); // a dead path never answers the close
      try {
        ws.close(1000, "client closed");
      } catch {
        done();
      }
    });
  }

  // -- connecting ------------------------------------------------------------------------------

  async _open() {
    this._clearTimer("retry");
    this._setState(State.CONNECTING, { attempt: this._attempt });
    let token;
    try {
      token = await this._helloToken();
    } catch (err) {
      if (this._closing) return;
      const error =
        err instanceof TidingsError
          ? err
          : new TidingsError("token_unavailable", `getToken failed: ${err?.message ?? err}`);
      this._emit("error", error);
      this._failures += 1;
      if (this._failures >= this._maxAttempts) return this._finish(error);
      this._retry({ closeCode: null, reason: error.message, error });
      return;
    }
    if (this._closing) return;
    let ws;
    try {
      ws = new this._WebSocket(this.url, SUBPROTOCOL);
    } catch (err) {
      this._finish(new TidingsError("invalid_option", `cannot open ${this.url}: ${err}`));
      return;
    }
    this._ws = ws;
    this._closeFrame = null; // an error frame announcing the close
    this._reconnectAsked = false;
    this._welcomedAt = null;
    this._sentSince = null;
    this._opened = false;
    ws.onopen = () => {
      this._opened = true;
      this._sendHello(ws, token);
    };
    ws.onmessage = (event) => this._onMessage(ws, event.data);
    ws.onerror = () => {}; // a close event follows and says what to do
    ws.onclose = (event) => this._onClose(ws, event.code, event.reason);
    this._setTimer("open", this._openTimeout, () =>
      this._abandon(ws, ABNORMAL, "no welcome in time"),
    );
  }

  async _helloToken() {
    const expiring = this._expiresAt != null && this._expiresAt * 1000 - Date.now() < 5000;
    if (this._getToken && (this._needToken || expiring || this._token == null)) {
      const token = await this._getToken();
      if (typeof token !== "string" || token === "") {
        throw new TidingsError("token_unavailable", "getToken returned no token");
      }
      this._token = token;
      this._expiresAt = null;
      this._needToken = false;
    }
    return this._token;
  }

  _sendHello(ws, token) {
    const hello = { type: "hello", token };
    if (this.lastSeq != null && this.epoch != null) {
      hello.since = this.lastSeq;
      hello.epoch = this.epoch;
      this._sentSince = this.lastSeq;
    }
    if (this._rooms.size > 0) hello.rooms = [...this._rooms];
    ws.send(JSON.stringify(hello));
  }

  _isWelcomed() {
    return (
      this._ws != null &&
      this._welcomedAt != null &&
      (this.state === State.CONNECTED || this.state === State.LIVE)
    );
  }

  _request(frame) {
    if (!this._isWelcomed()) {
      return Promise.reject(new TidingsError("connection_lost", "not connected"));
    }
    const id = ++this._nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new TidingsError("timeout", `no answer to ${frame.type} in time`, { id }));
      }, this._requestTimeout);
      this._pending.set(id, { resolve, reject, timer });
      this._ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  _answer(id, frame) {
    const pending = id != null ? this._pending.get(id) : undefined;
    if (pending === undefined) return false;
    this._pending.delete(id);
    clearTimeout(pending.timer);
    if (frame.type === "error") pending.reject(gatewayError({ frame }));
    else pending.resolve(frame);
    return true;
  }

  _rejectPending(code, message) {
    for (const [id, pending] of this._pending) {
      clearTimeout(pending.timer);
      pending.reject(new TidingsError(code, message, { id }));
    }
    this._pending.clear();
  }

  // -- frames ----------------------------------------------------------------------------------

  _onMessage(ws, data) {
    if (ws !== this._ws || typeof data !== "string") return; // stale socket, or binary
    this.stats.frames += 1;
    this._lastReceived = Date.now();
    for (const line of data.split("\n")) {
      if (line.trim() === "") continue;
      let frame;
      try {
        frame = JSON.parse(line);
      } catch {
        this._emit("error", new TidingsError("malformed", "the gateway sent a line that is not JSON"));
        continue;
      }
      if (frame !== null && typeof frame === "object" && typeof frame.type === "string") {
        this._onFrame(ws, frame);
      }
      if (ws !== this._ws) return; // a handler closed this socket
    }
    this._savePosition();
  }

  _onFrame(ws, frame) {
    switch (frame.type) {
      case "notification":
        return this._onNotification(frame);
      case "welcome":
        return this._onWelcome(ws, frame);
      case "synced":
        if (this._expectReset) {
          // A gateway that did not say reset: say it for it, the view may be incomplete.
          this._onReset({ seq: frame.seq, epoch: this.epoch, reason: "unknown" });
        }
        this.lastSeq = Math.max(this.lastSeq ?? 0, frame.seq); // quiet rooms move on too
        if (this.state !== State.LIVE) this._setState(State.LIVE);
        return;
      case "reset":
        return this._onReset(frame);
      case "inbox":
        // Another device (or this one) changed the user's inbox state: new counts, changed ids.
        if (frame.counts != null && typeof frame.counts === "object") this.inboxCounts = frame.counts;
        this._emit("inbox", frame);
        return;
      case "error":
        if (this._answer(frame.id, frame)) return;
        if (frame.close != null) this._closeFrame = frame;
        else this._emit("error", gatewayError({ frame }));
        return;
      case "reconnect":
        // The gateway is draining and spread the delays: wait, close, reconnect at once.
        this._reconnectAsked = true;
        this._setTimer("drain", Math.max(0, Number(frame.delay_ms) || 0), () => {
          if (ws === this._ws) ws.close(1000, "reconnecting");
        });
        return;
      case "unsubscribed":
        if (frame.id == null) {
          this._rooms.delete(frame.room); // a refreshed token no longer allows it
          this._emit("rooms", this.rooms);
          this._emit(
            "error",
            new TidingsError(frame.reason ?? "forbidden", `the gateway removed ${frame.room}`, {
              field: "room",
            }),
          );
          return;
        }
        this._answer(frame.id, frame);
        return;
      case "subscribed":
      case "refreshed":
      case "pong":
        this._answer(frame.id, frame);
        return;
      default:
        return; // forward compatibility: unknown frame types are ignored
    }
  }

  _onNotification(frame) {
    if (this.lastSeq != null && frame.seq <= this.lastSeq) {
      this.stats.duplicates += 1;
      return;
    }
    this.lastSeq = frame.seq;
    this.stats.notifications += 1;
    this._emit("notification", frame);
  }

  _onWelcome(ws, welcome) {
    this._clearTimer("open");
    if (welcome.epoch !== this.epoch) {
      this.epoch = welcome.epoch;
      this.lastSeq = null; // another stream: old sequence numbers mean nothing in it
    }
    if (!welcome.recovered) {
      // Everything after welcome.seq arrives from here on (a reset follows if we asked).
      this.lastSeq = Math.max(this.lastSeq ?? 0, welcome.seq);
    }
    this.welcome = welcome;
    if (welcome.inbox != null && typeof welcome.inbox === "object") this.inboxCounts = welcome.inbox;
    this._expiresAt = welcome.expires_at ?? null;
    this._welcomedAt = Date.now();
    this._lastReceived = Date.now();
    this._failures = 0;
    this._authRetried = false;
    this._probed = false;
    this._expectReset = this._sentSince != null && !welcome.recovered;
    this.stats.connects += 1;
    this._setState(State.CONNECTED, { welcome, recovered: welcome.recovered });
    this._emit("welcome", welcome);
    this._setTimer("healthy", this._backoff.healthyAfter, () => {
      this._attempt = 0;
    });
    this._scheduleRefresh();
    this._schedulePing(ws);
  }

  _onReset(reset) {
    this._expectReset = false;
    if (reset.reason === "out_of_range" && this._sentSince != null) {
      // Also a point beyond the stream's end (forged, or from a corrupted store): the gateway's
      // seq replaces it, or everything up to it would be skipped as seen (as the Python client).
      this._sentSince = null;
      this.epoch = reset.epoch || this.epoch;
      this.lastSeq = reset.seq;
    } else if (reset.epoch && reset.epoch !== this.epoch) {
      this.epoch = reset.epoch;
      this.lastSeq = reset.seq;
    } else {
      this.lastSeq = Math.max(this.lastSeq ?? 0, reset.seq);
    }
    this._emit("reset", { seq: reset.seq, epoch: reset.epoch, reason: reset.reason });
  }

  // -- keepalive and token refresh -------------------------------------------------------------

  _schedulePing(ws) {
    if (!(this._pingInterval > 0)) return;
    this._setTimer("ping", this._pingInterval, () => {
      if (ws !== this._ws) return;
      if (Date.now() - this._lastReceived < this._pingInterval) return this._schedulePing(ws);
      this._request({ type: "ping" }).catch(() => {});
      this._setTimer("ping", this._pingTimeout, () => {
        if (Date.now() - this._lastReceived >= this._pingTimeout) {
          this._abandon(ws, ABNORMAL, "no answer to ping");
        } else {
          this._schedulePing(ws);
        }
      });
    });
  }

  _scheduleRefresh() {
    if (!this._getToken || this._expiresAt == null) return;
    const remaining = this._expiresAt * 1000 - Date.now();
    const lead = Math.min(this._refreshLead, remaining / 3);
    this._setTimer("refresh", Math.max(0, remaining - lead), () => this._refresh());
  }

  async _refresh() {
    const expires = this._expiresAt;
    try {
      const token = await this._getToken();
      const reply = await this._request({ type: "refresh", token });
      this._token = token;
      this._expiresAt = reply.expires_at ?? null;
      this._scheduleRefresh();
    } catch (err) {
      if (this._closing || !this._isWelcomed()) return;
      const error =
        err instanceof TidingsError
          ? err
          : new TidingsError("token_unavailable", `getToken failed: ${err?.message ?? err}`);
      this._emit("error", error);
      // Retry until the token expires; then the gateway closes 4401 and we reconnect.
      const left = expires * 1000 - Date.now();
      if (left > 0) this._setTimer("refresh", Math.min(1000, left / 4), () => this._refresh());
    }
  }

  // -- disconnects -----------------------------------------------------------------------------

  /** Give up on a socket that does not answer: handle it as dropped now, close it quietly. */
  _abandon(ws, code, reason) {
    if (ws !== this._ws) return;
    this._detach(ws);
    try {
      ws.close(1000, reason);
    } catch {
      // it may not even be open yet
    }
    this._onClose(ws, code, reason);
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = null;
    ws.onclose = ws.onerror = () => {};
  }

  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    for (const name of ["open", "ping", "refresh", "healthy", "drain"]) this._clearTimer(name);
    this._rejectPending("connection_lost", "the connection dropped");
    const welcomed = this._welcomedAt != null;
    this._welcomedAt = null;
    if (this._closing) return this._finish(null);

    const refused = gatewayError({ frame: this._closeFrame, closeCode: code, reason });
    const why = refused.message;
    if (!welcomed) this._failures += 1;
    if (this._reconnectAsked) {
      this._attempt = 0;
      return this._retry({ closeCode: code, reason: why, delay: 0 });
    }
    const retry = REFUSING_CLOSES.get(code)?.retry;
    if (retry === "never") return this._finish(refused);
    if (retry === "new_token") {
      if (!this._getToken || this._authRetried) return this._finish(refused);
      this._authRetried = true; // a second refusal after a fresh token stops the client
      this._needToken = true;
      this._emit("error", refused);
      return this._retry({ closeCode: code, reason: why, delay: 0 });
    }
    if (!this._opened && code === ABNORMAL && this._probeOrigin && !this._probed) {
      // Refused before it opened: the origin? Only an HTTP answer can say (docs/decisions.md).
      this._probe().then((forbidden) => {
        if (this._closing || this._ws != null) return;
        if (forbidden) return this._finish(forbidden);
        this._retryAfterClose(code, why);
      });
      return;
    }
    return this._retryAfterClose(code, why);
  }

  /**
   * GET the gateway's `/ws` over HTTP: it answers a page's plain GET with its refusal, readable
   * cross-origin (403 `origin_forbidden` when it refuses the origin the browser sends). Resolves
   * with that error, or null: another answer (not an origin problem) or none (unreachable).
   */
  async _probe() {
    const url = new URL(this.url);
    url.protocol = url.protocol === "wss:" ? "https:" : "http:";
    let answer;
    try {
      const signal = globalThis.AbortSignal?.timeout?.(this._openTimeout);
      answer = await this._fetch(url.href, { credentials: "omit", cache: "no-store", signal });
    } catch {
      return null; // no answer, or one the page may not read: try the socket again
    }
    this._probed = true; // the gateway answered: no more probes until the next welcome
    let body = null;
    try {
      body = await answer.json();
    } catch {
      // not the gateway's JSON: not an origin problem it can name
    }
    const error = gatewayError({ status: answer.status, body });
    return error.code === "origin_forbidden" ? error : null;
  }

  _retryAfterClose(code, why) {
    if (this._failures >= this._maxAttempts) {
      return this._finish(
        new TidingsError("unreachable", `gave up after ${this._failures} attempts: ${why}`, {
          closeCode: code,
        }),
      );
    }
    return this._retry({ closeCode: code, reason: why });
  }

  _retry({ closeCode, reason, delay, error }) {
    if (this._closing) return;
    if (delay === undefined) {
      delay = backoffDelay(this._attempt, this._backoff, this._random);
      if (closeCode === RATE_LIMITED) delay = Math.max(RATE_LIMITED_DELAY, delay);
      this._attempt += 1;
    }
    this.stats.reconnects += 1;
    this._setState(State.DISCONNECTED, { attempt: this._attempt, delay, closeCode, reason, error });
    this._setTimer("retry", delay, () => this._open());
  }

  _reconnectNow() {
    // The platform says the network is back: skip the rest of the backoff wait.
    if (this.state === State.DISCONNECTED && this._timers.has("retry")) this._open();
  }

  _finish(error) {
    if (this._closed) return;
    this._closed = true;
    this._closing = true;
    for (const name of [...this._timers.keys()]) this._clearTimer(name);
    globalThis.removeEventListener?.("online", this._onOnline);
    this._rejectPending("closed", "the client is closed");
    this._savePosition();
    if (error) this._emit("error", error);
    this._setState(State.CLOSED, { error, closeCode: error?.closeCode, reason: error?.message });
  }

  // -- plumbing --------------------------------------------------------------------------------

  _setState(state, details = {}) {
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous, ...details });
  }

  _emit(type, value) {
    const listeners = this._listeners.get(type);
    if (!listeners) return;
    for (const listener of [...listeners]) {
      try {
        listener(value);
      } catch (err) {
        console.error(`tidings: a "${type}" listener threw`, err);
      }
    }
  }

  _setTimer(name, ms, fn) {
    this._clearTimer(name);
    const timer = setTimeout(() => {
      this._timers.delete(name);
      fn();
    }, Math.min(Math.max(0, ms), MAX_TIMER));
    this._timers.set(name, timer);
  }

  _clearTimer(name) {
    const timer = this._timers.get(name);
    if (timer !== undefined) {
      clearTimeout(timer);
      this._timers.delete(name);
    }
  }

  _loadPosition() {
    if (!this._storage) return;
    try {
      const saved = JSON.parse(this._storage.getItem(this._storageKey) ?? "null");
      if (Number.isSafeInteger(saved?.seq) && typeof saved?.epoch === "string") {
        this.lastSeq = saved.seq;
        this.epoch = saved.epoch;
        this._saved = `${saved.seq}@${saved.epoch}`;
      }
    } catch {
      // unreadable or disabled storage: start without a resume point
    }
  }

  _savePosition() {
    const position = this.position;
    if (!this._storage || position == null) return;
    const key = `${position.seq}@${position.epoch}`;
    if (key === this._saved) return;
    try {
      this._storage.setItem(this._storageKey, JSON.stringify(position));
      this._saved = key;
    } catch {
      // quota or privacy mode: the in-memory point still works
    }
  }
}

/** A started client: opens the connection and keeps it open until `close()`. */
export function connect(options) {
  return new TidingsClient(options).start();
}


// The inbox client (REST) and its helpers live in their own module; re-exported here so one
// import gives the whole SDK. (It imports TidingsError from here: a cycle only at call time.)
export * from "./tidings-inbox.js";
