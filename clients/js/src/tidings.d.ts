// Type declarations of tidings.js (the Tidings browser SDK, wire protocol tidings.v1.json).

import type { InboxCounts, InboxFrame } from "./tidings-inbox.js";

export * from "./tidings-inbox.js";

export declare const VERSION: string;
export declare const SUBPROTOCOL: "tidings.v1.json";

export type ConnectionState = "connecting" | "connected" | "live" | "disconnected" | "closed";

export declare const State: Readonly<{
  CONNECTING: "connecting";
  CONNECTED: "connected";
  LIVE: "live";
  DISCONNECTED: "disconnected";
  CLOSED: "closed";
}>;

export type Severity = "info" | "success" | "warning" | "error" | "critical";

/** `tenant`, `broadcast`, `user:<id>`, `role:<id>` or `room:<name>`. */
export type Room = string;

/** A notification as the gateway sends it (docs/protocol.md §5.2). */
export interface Notification {
  type: "notification";
  /** Stream sequence: strictly increasing within a connection; the resume point. */
  seq: number;
  /** Unique per notification; merge REST history with live ones by this. */
  id: string;
  /** `<domain>.<action>`, e.g. `incident.created`. */
  event: string;
  room: Room;
  /** RFC 3339 UTC, e.g. `2026-03-04T05:06:07.890123Z`. */
  time: string;
  title: string;
  message: string;
  severity: Severity | (string & {});
  data: Record<string, unknown>;
}

/** The gateway's answer to `hello` (§5.1). */
export interface Welcome {
  type: "welcome";
  connection: string;
  tenant: string;
  user: string;
  roles: string[];
  rooms: Room[];
  seq: number;
  epoch: string;
  /** true: every notification after the resume point follows; false: start fresh (see `reset`). */
  recovered: boolean;
  /** The token's `exp` (unix seconds), or null. */
  expires_at: number | null;
  /** The inbox's counts, when the gateway has the inbox on and it answered in time. */
  inbox?: InboxCounts;
}

/** A gap that will not be filled: reload history over REST and merge by `id` (§5.6). */
export interface ResetEvent {
  seq: number;
  epoch: string;
  reason: "epoch_changed" | "out_of_range" | "replay_failed" | "unknown" | (string & {});
}

export interface StateEvent {
  state: ConnectionState;
  previous: ConnectionState;
  /** disconnected: the backoff attempt number; connecting: the attempt being made. */
  attempt?: number;
  /** disconnected: milliseconds until the next attempt. */
  delay?: number;
  /** disconnected/closed: the WebSocket close code that ended the last connection. */
  closeCode?: number | null;
  reason?: string;
  /** closed: why, when it was not close(). */
  error?: TidingsError | null;
  /** connected: the welcome, and whether the resume was complete. */
  welcome?: Welcome;
  recovered?: boolean;
}

export interface Position {
  seq: number;
  epoch: string;
}

export interface ClientEvents {
  notification: Notification;
  state: StateEvent;
  error: TidingsError;
  welcome: Welcome;
  reset: ResetEvent;
  /** The named rooms the client asks for, after a change. */
  rooms: Room[];
  /** The user's inbox state changed (on this device or another): new counts, changed ids. */
  inbox: InboxFrame;
}

export interface Stats {
  /** Server text frames received (one may carry several notifications). */
  frames: number;
  notifications: number;
  /** Notifications dropped because their seq was at or below the resume point. */
  duplicates: number;
  /** Welcomes received. */
  connects: number;
  reconnects: number;
}

/** Storage for the resume point (`sessionStorage` is the usual choice). */
export interface PositionStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export interface BackoffOptions {
  /** First cap in ms (default 500): attempt n waits uniform [0, min(max, base·2ⁿ)). */
  base?: number;
  /** Largest cap in ms (default 30000). */
  max?: number;
  /** A connection open this long (ms, default 30000) resets the attempt count. */
  healthyAfter?: number;
}

export interface ConnectOptions {
  /** The gateway's WebSocket URL: `wss://host/ws`; relative (`/ws`) and http(s) URLs are resolved. */
  url: string;
  /** A JWT. Without `getToken` it is used as long as it is valid. */
  token?: string;
  /** Called for the first token (if `token` is absent), before expiry, and after a 4001/4401. */
  getToken?: () => string | Promise<string>;
  /** Named rooms to join: `room:<name>` or `<name>`. */
  rooms?: Iterable<string>;
  /** A resume point to start from (both or neither). */
  since?: number;
  epoch?: string;
  /** Keep the resume point across page reloads: `"session"`, `"local"` or a Storage. */
  storage?: "session" | "local" | PositionStorage | null;
  /** Storage key; default `tidings:<url>` (use one per user if several log in on one tab). */
  storageKey?: string;
  backoff?: BackoffOptions;
  /** Give up after this many attempts in a row without a welcome (default: never). */
  maxAttempts?: number;
  /** Refresh the token this many ms before expiry at most (default 30000; a third of the lifetime when shorter). */
  refreshLead?: number;
  /** Answer timeout for subscribe/unsubscribe/refresh/ping in ms (default 10000). */
  requestTimeout?: number;
  /** How long to wait for `welcome` after opening, in ms (default 15000). */
  openTimeout?: number;
  /** Ping when nothing arrived for this long, in ms (default 25000; 0 = never). */
  pingInterval?: number;
  /** Reconnect when nothing answers a ping within this many ms (default 10000). */
  pingTimeout?: number;
  /** A WebSocket constructor: default `globalThis.WebSocket`; in Node pass `ws`'s. */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocketLike;
  /** Random source in [0, 1) for the jitter (tests). */
  random?: () => number;
  /**
   * When a socket closes before it opened, GET the gateway's `/ws` over HTTP to learn whether it
   * refuses this page's origin (the browser hides the upgrade's 403); on `origin_forbidden` the
   * client stops (state `closed`) instead of retrying. Default: on in a page (where `location`
   * and `fetch` exist).
   */
  probeOrigin?: boolean;
  /** The `fetch` of the origin probe (default `globalThis.fetch`). */
  fetch?: (url: string, init?: { credentials?: string; cache?: string; signal?: unknown }) => Promise<{
    status: number;
    json(): Promise<unknown>;
  }>;
}

export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export declare class TidingsError extends Error {
  constructor(
    code: string,
    message: string,
    details?: { closeCode?: number; status?: number; number?: number; field?: string; id?: number },
  );
  /** The gateway's stable error code (`forbidden`, `token_expired`, `origin_forbidden`: the
   * gateway refuses the page's origin — allow it with TIDINGS_GATEWAY_ALLOWED_ORIGINS…) or the client's own
   * (`connection_lost`, `closed`, `timeout`, `unreachable`, `token_unavailable`, `bad_room`,
   * `invalid_option`). */
  readonly code: string;
  readonly closeCode?: number;
  /** The HTTP status, for a refusal of the inbox API. */
  readonly status?: number;
  readonly number?: number;
  readonly field?: string;
  readonly id?: number;
}

export declare class TidingsClient {
  constructor(options: ConnectOptions);
  readonly url: string;
  readonly state: ConnectionState;
  readonly welcome: Welcome | null;
  /** The inbox's counts: from the welcome, then from every `inbox` frame (null before any). */
  readonly inboxCounts: InboxCounts | null;
  readonly stats: Readonly<Stats>;
  readonly epoch: string | null;
  /** The highest seq processed (or synced): the resume point and the duplicate bar. */
  readonly lastSeq: number | null;
  readonly position: Position | null;
  readonly rooms: Room[];
  start(): this;
  on<K extends keyof ClientEvents>(type: K, listener: (event: ClientEvents[K]) => void): () => void;
  off<K extends keyof ClientEvents>(type: K, listener: (event: ClientEvents[K]) => void): void;
  subscribe(room: string): Promise<void>;
  unsubscribe(room: string): Promise<void>;
  /** Application-level round trip; resolves with milliseconds. */
  ping(): Promise<number>;
  close(): Promise<void>;
}

/** A started client. */
export declare function connect(options: ConnectOptions): TidingsClient;

export declare function backoffDelay(
  attempt: number,
  options?: { base?: number; max?: number },
  random?: () => number,
): number;

/** The JSON objects of one newline-delimited server frame. */
export declare function parseFrame(text: string): Array<Record<string, unknown>>;

/**
 * The client's error for what a Tidings server said: an `error` frame (answering a request, or
 * sent before a close) and/or the close that ended the connection (its code, and its reason,
 * which names the error when no frame came first), or an HTTP answer of the inbox API (its
 * `status` and parsed JSON `body`).
 */
export declare function gatewayError(said?: {
  frame?: Record<string, unknown> | null;
  closeCode?: number;
  reason?: string;
  status?: number;
  body?: unknown;
}): TidingsError;

/** `room:<name>` from `room:<name>` or `<name>`; throws TidingsError `bad_room`. */
export declare function namedRoom(room: string): string;
