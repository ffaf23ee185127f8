// Type declarations of tidings-inbox.js (the inbox client; re-exported by tidings.js).

import type { Notification, Room, Severity } from "./tidings.js";

export declare const SEVERITY_KEYS: readonly Severity[];
export type InboxStatus = "all" | "unread" | "read" | "unseen" | "seen" | "archived";
export declare const INBOX_STATUSES: readonly InboxStatus[];

/** Exact counts (archived notifications and muted domains excluded; no cap). */
export interface InboxCounts {
  total: number;
  unread: number;
  unseen: number;
  /** All five severities are always present. */
  unread_by_severity: Record<Severity, number>;
}

/** A notification as the inbox keeps it: the live frame's fields (no `type`) and its state. */
export interface InboxItem extends Omit<Notification, "type"> {
  read: boolean;
  seen: boolean;
  archived: boolean;
}

/** What a list (or a mark-all) selects; repeatable keys take a string or up to 20 strings. */
export interface InboxFilter {
  /** Default: everything not archived. */
  status?: InboxStatus;
  /** Event domains: `incident` of `incident.created`. */
  domain?: string | string[];
  event?: string | string[];
  severity?: Severity | Severity[];
  /** As the live frame names it: `tenant`, `user:alice`, `role:admin`, `room:site-berlin`, `broadcast`. */
  room?: Room | Room[];
  /** A Date or an RFC 3339 string. */
  since?: Date | string;
  until?: Date | string;
  /** Text in the title or message, matched literally (≤ 200 characters). */
  q?: string;
}

export interface InboxListOptions extends InboxFilter {
  /** 1–100, default 20. */
  limit?: number;
  /** The `next_cursor` of the previous page. */
  cursor?: string;
}

export interface InboxPage {
  /** Newest first. */
  items: InboxItem[];
  /** Pass as `cursor` for the next (older) page; null on the last one. */
  next_cursor: string | null;
}

export interface InboxMarks {
  read?: boolean;
  seen?: boolean;
  archived?: boolean;
}

export interface MarkResult {
  /** The ids whose state changed. */
  changed: string[];
  counts: InboxCounts;
}

export type Channel = "in_app" | "email" | "webhook" | "push" | (string & {});
export type ChannelSwitches = Record<string, boolean>;

export interface Preferences {
  channels: Channel[];
  defaults: Record<string, ChannelSwitches>;
  overrides: Record<string, ChannelSwitches>;
  effective: Record<string, ChannelSwitches>;
}

/** A change of preferences: per domain, per channel, on / off, or null to drop the override. */
export type PreferenceChange = Record<string, Record<string, boolean | null>>;

/** The gateway's `inbox` frame: the user's inbox state changed (on this device or another). */
export interface InboxFrame {
  type: "inbox";
  counts: InboxCounts;
  ids: string[];
  set: InboxMarks;
  /** A mark-all (with or without a filter). */
  all?: true;
  /** After a preference change: every muted in-app domain. */
  muted?: string[];
}

/** A change of state as applyInboxChange takes it (an InboxFrame fits). */
export interface InboxChange {
  ids?: string[];
  set?: InboxMarks;
  all?: boolean;
  muted?: string[];
  counts?: InboxCounts;
}

export interface InboxClientOptions {
  /** The inbox API's origin (and path prefix behind an ingress); relative URLs resolve against the page. */
  baseUrl: string;
  /** A JWT, or a function giving one (called again near its `exp` and after a 401). */
  token: string | (() => string | Promise<string>);
  /** Milliseconds per request (default 10000); then a TidingsError `timeout`. */
  timeout?: number;
  /** A fetch implementation (default `globalThis.fetch`). */
  fetch?: (input: string, init?: Record<string, unknown>) => Promise<{
    ok: boolean;
    status: number;
    text(): Promise<string>;
  }>;
}

/**
 * The inbox API. Every refusal rejects with a TidingsError carrying the API's code
 * (`not_found`, `invalid_field`, `forbidden`, `token_expired`…) and `status`; the client's own:
 * `unreachable`, `timeout`, `token_unavailable`, `invalid_field` (a filter it cannot send).
 */
export declare class InboxClient {
  constructor(options: InboxClientOptions);
  /** Ends with `/v1/inbox/`. */
  readonly baseUrl: string;
  timeout: number;
  list(options?: InboxListOptions): Promise<InboxPage>;
  get(id: string): Promise<InboxItem>;
  counts(): Promise<InboxCounts>;
  /** All or nothing: an id the user may not see rejects with `not_found` and changes nothing. */
  mark(ids: string[], set: InboxMarks): Promise<MarkResult>;
  markAll(
    set?: { read?: true; seen?: true; archived?: true },
    filter?: InboxFilter,
  ): Promise<{ counts: InboxCounts }>;
  preferences(): Promise<Preferences>;
  setPreferences(domains: PreferenceChange): Promise<Preferences>;
  preferenceDefaults(): Promise<Preferences>;
  /** Needs the admin role (else `forbidden`). */
  setPreferenceDefaults(domains: PreferenceChange): Promise<Preferences>;
}

export declare function emptyCounts(): InboxCounts;
/** The filter as the API's JSON; throws TidingsError `invalid_field` for unknown keys. */
export declare function inboxFilter(
  filter?: InboxListOptions,
  options?: { paging?: boolean },
): Record<string, string | number | string[]>;
/** The list call's query string (no `?`). */
export declare function inboxQuery(options?: InboxListOptions): string;
export declare function inboxMarks(set: InboxMarks, options?: { only?: boolean }): InboxMarks;
export declare function domainOf(event: string): string;
export declare function inboxItem(notification: Notification): InboxItem;
/** Newest first, one per id; API items bring their state, live ones change nothing known. */
export declare function mergeInbox(
  items: readonly InboxItem[],
  incoming: Iterable<InboxItem | Notification>,
): { items: InboxItem[]; added: InboxItem[] };
/** Counts after live arrivals with a seq above `after`; null stays null. */
export declare function countArrivals(
  counts: InboxCounts | null,
  arrivals: Iterable<Pick<InboxItem, "seq" | "severity"> & Partial<InboxItem>>,
  options?: { after?: number },
): InboxCounts | null;
export declare function applyInboxChange(items: readonly InboxItem[], change: InboxChange): InboxItem[];
/** A JWT's `exp` (unix seconds) or null. */
export declare function tokenExpiry(token: string): number | null;
