// Type declarations of tidings-react.js (React bindings of the Tidings SDK).

import type { ReactElement, ReactNode } from "react";
import type {
  ConnectOptions,
  ConnectionState,
  InboxClient,
  InboxCounts,
  InboxFilter,
  InboxItem,
  Notification,
  PositionStorage,
  ResetEvent,
  Severity,
  TidingsClient,
  TidingsError,
  Welcome,
} from "./tidings.js";

export declare const SEVERITIES: readonly Severity[];
export declare const BELL_CSS: string;
/** The toasts' default stylesheet (`enableToast={{ styles: false }}`: bring your own). */
export declare const TOAST_CSS: string;

export interface ToastOptions {
  /** Milliseconds before a toast goes by itself (default 6000; 0: until dismissed). Paused while
   * the pointer is over the toasts or focus is inside them. */
  duration?: number;
  /** At most this many toasts at once, newest on top (default 3). */
  max?: number;
  /** The toasts' live region's accessible name (default "New notifications"). */
  label?: string;
  /** The dismiss button's label (default "Dismiss"). */
  dismissLabel?: string;
  /** Inject the default stylesheet (default true). */
  styles?: boolean;
  /** Toast only the notifications this returns true for. */
  filter?: (notification: Notification) => boolean;
  /** Called when a toast is clicked. */
  onSelect?: (notification: Notification) => void;
}

/** A notification in the provider's list, with its local read flag. */
export type NotificationItem = Notification & { read: boolean };

export interface NotificationProviderProps {
  /** Use this client (the provider neither starts nor closes it)… */
  client?: TidingsClient;
  /** …or let the provider connect (and close on unmount or when these change). */
  url?: string;
  token?: string;
  getToken?: () => string | Promise<string>;
  rooms?: Iterable<string>;
  storage?: ConnectOptions["storage"] | PositionStorage;
  storageKey?: string;
  /** Any other connect option (backoff, maxAttempts, WebSocket…). */
  options?: Partial<ConnectOptions>;
  /** Notifications already loaded (REST history, server rendering) to start with. */
  history?: Iterable<Notification | NotificationItem>;
  /** Keep at most this many notifications (default 100). */
  max?: number;
  onNotification?: (notification: Notification) => void;
  /** The view has a gap: reload history over REST and pass it to `merge`. */
  onReset?: (reset: ResetEvent) => void;
  /**
   * The server-kept inbox (`useInbox()`; the bell shows its counts and history): the inbox
   * API's base URL (the client then uses `token`/`getToken`), or an InboxClient.
   */
  inbox?: string | InboxClient | null;
  /** Inbox items per page (default 20). */
  pageSize?: number;
  /** What the inbox list shows (default: everything not archived). */
  inboxFilter?: InboxFilter;
  /** Show a toast for every notification delivered from now on (true: the defaults). */
  enableToast?: boolean | ToastOptions;
  children?: ReactNode;
}

export interface NotificationsValue {
  client: TidingsClient | null;
  /** Newest first, one entry per notification id. */
  notifications: NotificationItem[];
  unread: number;
  state: ConnectionState;
  connected: boolean;
  error: TidingsError | null;
  welcome: Welcome | null;
  markRead(id: string | string[]): void;
  markAllRead(): void;
  /** Add notifications (e.g. history from REST); merged by id. */
  merge(items: Iterable<Notification | NotificationItem>): void;
  clear(): void;
  /** The inbox's state and actions; null without the provider's `inbox`. */
  inbox: InboxValue | null;
}

export interface InboxValue {
  inbox: InboxClient;
  /** Newest first, one per id: the API's pages merged with live notifications. */
  items: InboxItem[];
  /** The server's counts, following `inbox` frames and live arrivals; null until loaded. */
  counts: InboxCounts | null;
  loading: boolean;
  loadingMore: boolean;
  /** The last refusal of the API (its code: `not_found`, `unreachable`…), or null. */
  error: TidingsError | null;
  hasMore: boolean;
  /** Load the next (older) page. */
  loadMore(): Promise<void>;
  markRead(ids: string | string[]): Promise<void>;
  markUnread(ids: string | string[]): Promise<void>;
  markSeen(ids: string | string[]): Promise<void>;
  archive(ids: string | string[]): Promise<void>;
  markAllRead(): Promise<void>;
  /** Reload the first page and the counts. */
  refresh(): Promise<void>;
}

export declare function NotificationProvider(props: NotificationProviderProps): ReactElement;

export declare function useNotifications(): NotificationsValue;

/** The toasts of `enableToast`, placed yourself inside the provider (don't use both). */
export declare function NotificationToasts(props: ToastOptions): ReactElement;

/** The server-kept inbox; throws without `<NotificationProvider inbox={…}>`. */
export declare function useInbox(): InboxValue;

export interface NotificationBellProps {
  label?: string;
  /** How many notifications the dropdown shows (default 20). */
  limit?: number;
  emptyText?: string;
  onSelect?: (notification: NotificationItem) => void;
  className?: string;
  /** Inject the default stylesheet (default true); false: bring your own (see BELL_CSS). */
  styles?: boolean;
  /** Start with the dropdown open (default false). */
  defaultOpen?: boolean;
}

export declare function NotificationBell(props: NotificationBellProps): ReactElement;

export declare function severityOf(notification: { severity?: string } | null | undefined): Severity;
