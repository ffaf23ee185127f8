/**
 * React bindings of the Tidings SDK: a provider that owns one client, a hook, and a bell.
 *
 *     <NotificationProvider url="/ws" getToken={fetchJwt}>
 *       <NotificationBell />
 *     </NotificationProvider>
 *
 * Written with React.createElement (no JSX), so it runs without a build step. Notification text
 * is always rendered as text (React escapes it); nothing here sets HTML.
 */

import React from "react";
import {
  applyInboxChange,
  connect,
  countArrivals,
  InboxClient,
  mergeInbox,
  State,
} from "./tidings.js";
import { Toasts } from "./tidings-toast.js";

export { TOAST_CSS } from "./tidings-toast.js";

const h = React.createElement;
const Context = React.createContext(null);

export const SEVERITIES = Object.freeze(["info", "success", "warning", "error", "critical"]);

/** The severity as one of SEVERITIES (anything unknown shows as info). */
export function severityOf(notification) {
  return SEVERITIES.includes(notification?.severity) ? notification.severity : "info";
}

// -- state ------------------------------------------------------------------------------------

const initial = { notifications: [], state: State.CONNECTING, error: null, welcome: null };

function merge(list, incoming, max) {
  // Newest first, one entry per id (REST history and live delivery may overlap), at most max.
  const byId = new Map(list.map((n) => [n.id, n]));
  for (const n of incoming) {
    const known = byId.get(n.id);
    byId.set(n.id, { ...n, read: known?.read ?? n.read ?? false });
  }
  return [...byId.values()]
    .sort((a, b) => (b.seq ?? 0) - (a.seq ?? 0) || String(b.time).localeCompare(String(a.time)))
    .slice(0, max);
}

function reducer(current, action) {
  switch (action.type) {
    case "notifications":
      return { ...current, notifications: merge(current.notifications, action.items, action.max) };
    case "state":
      return { ...current, state: action.state, error: action.error ?? current.error };
    case "welcome":
      return { ...current, welcome: action.welcome, error: null };
    case "error":
      return { ...current, error: action.error };
    case "read": {
      const ids = action.ids;
      return {
        ...current,
        notifications: current.notifications.map((n) =>
          ids === null || ids.has(n.id) ? (n.read ? n : { ...n, read: true }) : n,
        ),
      };
    }
    case "clear":
      return { ...current, notifications: [] };
    default:
      return current;
  }
}

// -- the inbox's state (with `inbox` on the provider) ---------------------------------------------

export const inboxInitial = {
  items: [], // newest first, one per id: the API's pages and live arrivals
  counts: null, // the server's counts, plus live arrivals since
  countedUpTo: 0, // the highest seq the counts are known to include
  cursor: null,
  loading: true,
  loadingMore: false,
  error: null,
  pending: new Set(), // ids that arrived live and no page has shown yet
};

function topSeq(items, floor) {
  return items.reduce((top, item) => Math.max(top, item.seq ?? 0), floor);
}

/**
 * The server's `counts` taken as the badge's: they include everything stored up to their `seq`
 * (one snapshot), so what this client holds above it (received live before the inbox's writer
 * stored it) is added, once. Counts without `seq` (an older API) cover up to `fallback`.
 */
function takeCounts(current, counts, items, fallback) {
  if (counts == null) return { counts: current.counts, countedUpTo: current.countedUpTo };
  const known = Number.isSafeInteger(counts.seq);
  const upto = known ? counts.seq : fallback;
  const { seq: _seq, ...plain } = counts;
  return {
    counts: countArrivals(plain, items, { after: upto }),
    countedUpTo: known || Number.isFinite(fallback) ? upto : current.countedUpTo,
  };
}

/** The inbox state's reducer (exported for its tests; not part of the public API). */
export function inboxReducer(current, action) {
  switch (action.type) {
    case "loading":
      return { ...current, loading: true };
    case "loaded": {
      // A refresh: this page replaces what was loaded, except live arrivals no page has yet.
      const shown = new Set(action.page.items.map((item) => item.id));
      const kept = current.items.filter((item) => current.pending.has(item.id) && !shown.has(item.id));
      const pending = new Set(kept.map((item) => item.id));
      const items = mergeInbox(kept, action.page.items).items;
      return {
        ...current,
        items,
        ...takeCounts(current, action.counts, items, topSeq(action.page.items, 0)),
        cursor: action.page.next_cursor ?? null,
        loading: false,
        error: null,
        pending,
      };
    }
    case "more-loading":
      return { ...current, loadingMore: true };
    case "more": {
      const pending = new Set(current.pending);
      for (const item of action.page.items) pending.delete(item.id);
      return {
        ...current,
        items: mergeInbox(current.items, action.page.items).items,
        cursor: action.page.next_cursor ?? null,
        loadingMore: false,
        pending,
      };
    }
    case "live": {
      const { items, added } = mergeInbox(current.items, action.notifications);
      if (added.length === 0) return current;
      const pending = new Set(current.pending);
      for (const item of added) pending.add(item.id);
      return {
        ...current,
        items,
        counts: countArrivals(current.counts, added, { after: current.countedUpTo }),
        pending,
      };
    }
    case "welcome":
      // The gateway counted at hello (an older API without `seq`: what it replays next, seq ≤
      // welcome.seq, is taken as included).
      return {
        ...current,
        ...takeCounts(current, action.counts, current.items, Math.max(current.countedUpTo, action.seq ?? 0)),
      };
    case "change": {
      const items = applyInboxChange(current.items, action.change);
      // Without `seq` the counts are taken as they come (nothing held is added to them).
      return { ...current, items, ...takeCounts(current, action.change.counts, items, Infinity) };
    }
    case "error":
      return { ...current, error: action.error, loading: false, loadingMore: false };
    default:
      return current;
  }
}

/**
 * The inbox half of the provider: loads the latest page and the counts, merges live arrivals,
 * follows `inbox` frames, and marks through the API. `inbox` is null when the provider has none.
 */
function useInboxState(inbox, client, { pageSize, filter }) {
  const [store, dispatch] = React.useReducer(inboxReducer, inboxInitial);
  const generation = React.useRef(0); // answers to an older refresh are dropped
  const cursor = React.useRef(null);
  cursor.current = store.loadingMore ? undefined : store.cursor;
  const filterKey = JSON.stringify(filter ?? {});

  const refresh = React.useCallback(async () => {
    if (!inbox) return;
    const mine = ++generation.current;
    dispatch({ type: "loading" });
    try {
      const query = { ...JSON.parse(filterKey), limit: pageSize };
      const [page, counts] = await Promise.all([inbox.list(query), inbox.counts()]);
      if (mine === generation.current) dispatch({ type: "loaded", page, counts });
    } catch (error) {
      if (mine === generation.current) dispatch({ type: "error", error });
    }
  }, [inbox, pageSize, filterKey]);

  React.useEffect(() => {
    generation.current += 1;
    if (inbox) refresh();
    return () => {
      generation.current += 1;
    };
  }, [inbox, refresh]);

  React.useEffect(() => {
    if (!inbox || !client) return undefined;
    if (client.inboxCounts && client.welcome) {
      dispatch({ type: "welcome", counts: client.inboxCounts, seq: client.welcome.seq });
    }
    const offs = [
      client.on("welcome", (welcome) => {
        if (welcome.inbox) dispatch({ type: "welcome", counts: welcome.inbox, seq: welcome.seq });
      }),
      client.on("inbox", (frame) => {
        dispatch({ type: "change", change: frame });
        // A mark-all may have had a filter the frame does not repeat, and new preferences may
        // bring a domain back: reload what is shown.
        if (frame.all || frame.muted) refresh();
      }),
      client.on("reset", () => refresh()), // a gap: the page shows what the server has
    ];
    return () => offs.forEach((off) => off());
  }, [inbox, client, refresh]);

  const loadMore = React.useCallback(async () => {
    const from = cursor.current;
    if (!inbox || !from) return;
    const mine = generation.current;
    dispatch({ type: "more-loading" });
    try {
      const page = await inbox.list({ ...JSON.parse(filterKey), limit: pageSize, cursor: from });
      if (mine === generation.current) dispatch({ type: "more", page });
    } catch (error) {
      if (mine === generation.current) dispatch({ type: "error", error });
    }
  }, [inbox, pageSize, filterKey]);

  const mark = React.useCallback(
    async (ids, set) => {
      const list = [].concat(ids);
      if (!inbox || list.length === 0) return;
      dispatch({ type: "change", change: { ids: list, set } }); // at once; the answer confirms
      try {
        const answer = await inbox.mark(list, set);
        dispatch({ type: "change", change: { ids: answer.changed ?? [], set, counts: answer.counts } });
      } catch (error) {
        dispatch({ type: "error", error });
        refresh(); // show what the server has
      }
    },
    [inbox, refresh],
  );

  const markAllRead = React.useCallback(async () => {
    if (!inbox) return;
    dispatch({ type: "change", change: { all: true, set: { read: true } } });
    try {
      const answer = await inbox.markAll({ read: true });
      dispatch({ type: "change", change: { all: true, set: { read: true }, counts: answer.counts } });
    } catch (error) {
      dispatch({ type: "error", error });
      refresh();
    }
  }, [inbox, refresh]);

  const live = React.useCallback((notifications) => dispatch({ type: "live", notifications }), []);

  const value = React.useMemo(
    () =>
      inbox && {
        inbox,
        items: store.items,
        counts: store.counts,
        loading: store.loading,
        loadingMore: store.loadingMore,
        error: store.error,
        hasMore: store.cursor != null,
        loadMore,
        markRead: (ids) => mark(ids, { read: true }),
        markUnread: (ids) => mark(ids, { read: false }),
        markSeen: (ids) => mark(ids, { seen: true }),
        archive: (ids) => mark(ids, { archived: true }),
        markAllRead,
        refresh,
      },
    [inbox, store, loadMore, mark, markAllRead, refresh],
  );
  return { value, live };
}

function useInboxClient(given, tokenOf) {
  // A base URL makes a client that asks the provider for tokens; a client is used as it is.
  return React.useMemo(() => {
    if (given == null || given === false) return null;
    if (typeof given !== "string") return given;
    return new InboxClient({ baseUrl: given, token: tokenOf });
  }, [given, tokenOf]);
}

// -- provider and hook --------------------------------------------------------------------------

/**
 * Owns one client (or uses the `client` prop) and keeps the latest `max` notifications with a
 * local read flag. Connection props: `url`, `token` or `getToken`, `rooms`, `storage`,
 * `storageKey`, `options` (any other connect option). `history`: notifications already loaded
 * (REST, server rendering) to start with. `onReset` is called when the gateway says the view
 * has a gap: reload history over REST and pass it to `merge`.
 *
 * `inbox` (the inbox API's base URL, or an InboxClient) turns on the server-kept inbox
 * (`useInbox()`; the bell then shows the server's counts and history): `pageSize` items per page
 * (default 20), `inboxFilter` (the list's filter, e.g. `{severity: ["error", "critical"]}`).
 * With a base URL the inbox client asks for tokens as the connection does (`token`/`getToken`).
 *
 * `enableToast` (true, or `{duration, max, label, dismissLabel, styles, filter, onSelect}`) shows
 * a toast for every notification delivered from now on (see tidings-toast.js).
 */
export function NotificationProvider(props) {
  const { client: given, url, token, rooms, storage, storageKey, max = 100, children } = props;
  const { pageSize = 20, inboxFilter } = props;
  const [store, dispatch] = React.useReducer(reducer, props.history, (history) => ({
    ...initial,
    notifications: history ? merge([], [...history], max) : [],
  }));
  const [client, setClient] = React.useState(given ?? null);
  const latest = React.useRef(props);
  latest.current = props;
  const roomsKey = rooms ? [...rooms].join(",") : "";
  const tokenIsFunction = typeof props.getToken === "function";
  const tokenOf = React.useCallback(
    async () => (tokenIsFunction ? latest.current.getToken() : latest.current.token),
    [token, tokenIsFunction], // another identity: another inbox client
  );
  const inboxClient = useInboxClient(props.inbox, tokenOf);
  const inbox = useInboxState(inboxClient, client, { pageSize, filter: inboxFilter });
  const inboxLive = inbox.live;

  React.useEffect(() => {
    if (given) {
      setClient(given);
      return undefined;
    }
    const hasGetToken = typeof latest.current.getToken === "function";
    const created = connect({
      ...(latest.current.options ?? {}),
      url,
      token,
      // The prop may change identity every render; always call the latest one.
      getToken: hasGetToken ? () => latest.current.getToken() : undefined,
      rooms: roomsKey ? roomsKey.split(",") : [],
      storage,
      storageKey,
    });
    setClient(created);
    return () => {
      created.close();
    };
  }, [given, url, token, roomsKey, storage, storageKey]);

  React.useEffect(() => {
    if (!client) return undefined;
    dispatch({ type: "state", state: client.state });
    if (client.welcome) dispatch({ type: "welcome", welcome: client.welcome });
    // A frame may carry many notifications: add them to the list in one render.
    let queued = [];
    let scheduled = false;
    const flush = () => {
      scheduled = false;
      const items = queued;
      queued = [];
      if (items.length) {
        dispatch({ type: "notifications", items, max: latest.current.max ?? 100 });
        inboxLive(items);
      }
    };
    const offs = [
      client.on("notification", (n) => {
        queued.push(n);
        if (!scheduled) {
          scheduled = true;
          queueMicrotask(flush);
        }
        latest.current.onNotification?.(n);
      }),
      client.on("state", (e) => dispatch({ type: "state", state: e.state, error: e.error })),
      client.on("welcome", (welcome) => dispatch({ type: "welcome", welcome })),
      client.on("error", (error) => dispatch({ type: "error", error })),
      client.on("reset", (reset) => latest.current.onReset?.(reset)),
    ];
    return () => offs.forEach((off) => off());
  }, [client, inboxLive]);

  const value = React.useMemo(() => {
    const unread = store.notifications.reduce((count, n) => count + (n.read ? 0 : 1), 0);
    return {
      client,
      notifications: store.notifications,
      unread,
      state: store.state,
      connected: store.state === State.CONNECTED || store.state === State.LIVE,
      error: store.error,
      welcome: store.welcome,
      markRead: (id) => dispatch({ type: "read", ids: new Set([].concat(id)) }),
      markAllRead: () => dispatch({ type: "read", ids: null }),
      merge: (items) => dispatch({ type: "notifications", items: [...items], max }),
      clear: () => dispatch({ type: "clear" }),
      inbox: inbox.value,
    };
  }, [client, store, max, inbox.value]);

  const toast = props.enableToast;
  return h(
    Context.Provider,
    { value },
    children,
    toast ? h(Toasts, { ...(typeof toast === "object" ? toast : {}), client }) : null,
  );
}

/**
 * The toasts of `enableToast`, placed yourself (inside the provider; don't use both):
 * props `duration` (ms, default 6000, 0: until dismissed), `max` (default 3), `label`,
 * `dismissLabel`, `styles`, `filter(n)`, `onSelect(n)`.
 */
export function NotificationToasts(props) {
  const { client } = useNotifications();
  return h(Toasts, { ...props, client });
}

/** The provider's notifications, unread count, connection state and actions. */
export function useNotifications() {
  const value = React.useContext(Context);
  if (value === null) {
    throw new Error("useNotifications() needs a <NotificationProvider> above it");
  }
  return value;
}

/**
 * The user's inbox, kept by the server and the same on every device: `items` (newest first,
 * history and live notifications merged by id), exact `counts` that follow `inbox` frames and
 * live arrivals, `loading`, `error`, `hasMore` / `loadMore()` (older pages), and marks that go
 * to the API: `markRead(ids)`, `markUnread(ids)`, `markSeen(ids)`, `archive(ids)`,
 * `markAllRead()`, `refresh()`. Needs `<NotificationProvider inbox={baseUrl or InboxClient}>`.
 */
export function useInbox() {
  const value = React.useContext(Context);
  if (value === null || !value.inbox) {
    throw new Error("useInbox() needs a <NotificationProvider inbox={…}> above it");
  }
  return value.inbox;
}

// -- the bell -----------------------------------------------------------------------------------

const STATE_LABELS = {
  connecting: "Connecting…",
  connected: "Catching up…",
  live: "Live",
  disconnected: "Reconnecting…",
  closed: "Offline",
};

const STYLE_ID = "tidings-bell-styles";
export const BELL_CSS = `
.tidings-bell{--tb-bg:#fff;--tb-fg:#1f2430;--tb-muted:#6b7280;--tb-line:#e5e7eb;--tb-accent:#4f46e5;
  --tb-info:#3b82f6;--tb-success:#16a34a;--tb-warning:#d97706;--tb-error:#dc2626;--tb-critical:#9d174d;
  position:relative;display:inline-block;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--tb-fg)}
.tidings-bell__button{position:relative;display:grid;place-items:center;width:40px;height:40px;border-radius:50%;
  border:1px solid var(--tb-line);background:var(--tb-bg);color:inherit;cursor:pointer;transition:background .15s}
.tidings-bell__button:hover{background:#f3f4f6}
.tidings-bell__button:focus-visible{outline:2px solid var(--tb-accent);outline-offset:2px}
.tidings-bell__badge{position:absolute;top:-4px;right:-6px;min-width:20px;height:20px;padding:0 6px;border-radius:10px;
  background:var(--tb-error);color:#fff;font-size:12px;font-weight:700;line-height:20px;text-align:center;
  box-shadow:0 0 0 2px var(--tb-bg)}
.tidings-bell__dot{position:absolute;bottom:1px;right:1px;width:9px;height:9px;border-radius:50%;
  background:var(--tb-muted);box-shadow:0 0 0 2px var(--tb-bg)}
.tidings-bell[data-state=live] .tidings-bell__dot{background:var(--tb-success)}
.tidings-bell[data-state=connected] .tidings-bell__dot,.tidings-bell[data-state=connecting] .tidings-bell__dot,
.tidings-bell[data-state=disconnected] .tidings-bell__dot{background:var(--tb-warning)}
.tidings-bell__panel{position:absolute;right:0;top:48px;z-index:1000;width:380px;max-width:calc(100vw - 24px);
  background:var(--tb-bg);border:1px solid var(--tb-line);border-radius:12px;overflow:hidden;
  box-shadow:0 12px 32px rgba(15,23,42,.16),0 2px 6px rgba(15,23,42,.08)}
.tidings-bell__header{display:flex;align-items:center;gap:8px;padding:12px 14px;border-bottom:1px solid var(--tb-line)}
.tidings-bell__heading{font-weight:650;flex:1}
.tidings-bell__state{font-size:12px;color:var(--tb-muted)}
.tidings-bell__markall{border:0;background:none;color:var(--tb-accent);font:inherit;font-size:12px;cursor:pointer;padding:2px 4px}
.tidings-bell__markall:disabled{color:var(--tb-muted);cursor:default}
.tidings-bell__list{list-style:none;margin:0;padding:0;max-height:420px;overflow-y:auto}
.tidings-bell__item{border-bottom:1px solid var(--tb-line)}
.tidings-bell__item:last-child{border-bottom:0}
.tidings-bell__entry{display:grid;grid-template-columns:4px 1fr;gap:0 12px;width:100%;padding:10px 14px 10px 0;
  border:0;background:none;text-align:left;font:inherit;color:inherit;cursor:pointer}
.tidings-bell__entry:hover{background:#f9fafb}
.tidings-bell__bar{grid-row:1/4;border-radius:0 3px 3px 0;background:var(--tb-info)}
.tidings-sev-success .tidings-bell__bar{background:var(--tb-success)}
.tidings-sev-warning .tidings-bell__bar{background:var(--tb-warning)}
.tidings-sev-error .tidings-bell__bar{background:var(--tb-error)}
.tidings-sev-critical .tidings-bell__bar{background:var(--tb-critical)}
.tidings-bell__title{font-weight:600;overflow-wrap:anywhere}
.tidings-bell__item.is-unread .tidings-bell__title::after{content:"";display:inline-block;width:7px;height:7px;
  margin-left:6px;border-radius:50%;background:var(--tb-accent);vertical-align:middle}
.tidings-bell__item:not(.is-unread){opacity:.72}
.tidings-bell__message{color:#374151;overflow-wrap:anywhere}
.tidings-bell__meta{display:flex;gap:6px;align-items:center;margin-top:2px;font-size:12px;color:var(--tb-muted)}
.tidings-bell__sev{padding:0 6px;border-radius:4px;font-size:11px;font-weight:600;text-transform:uppercase;
  letter-spacing:.02em;background:#eff6ff;color:var(--tb-info)}
.tidings-sev-success .tidings-bell__sev{background:#f0fdf4;color:var(--tb-success)}
.tidings-sev-warning .tidings-bell__sev{background:#fffbeb;color:var(--tb-warning)}
.tidings-sev-error .tidings-bell__sev{background:#fef2f2;color:var(--tb-error)}
.tidings-sev-critical .tidings-bell__sev{background:#fdf2f8;color:var(--tb-critical)}
.tidings-bell__empty{margin:0;padding:28px 14px;text-align:center;color:var(--tb-muted)}
.tidings-bell__more button{width:100%;padding:10px;border:0;background:none;color:var(--tb-accent);font:inherit;font-size:12px;cursor:pointer}
.tidings-bell__more button:disabled{color:var(--tb-muted);cursor:default}
.tidings-bell__error{margin:0;padding:8px 14px;font-size:12px;color:var(--tb-error);border-bottom:1px solid var(--tb-line)}
`;

function injectStyles() {
  if (typeof document === "undefined" || document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = BELL_CSS;
  document.head.appendChild(style);
}

function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return date.toLocaleString();
}

function BellIcon() {
  return h(
    "svg",
    {
      width: 20,
      height: 20,
      viewBox: "0 0 24 24",
      fill: "none",
      stroke: "currentColor",
      strokeWidth: 2,
      strokeLinecap: "round",
      strokeLinejoin: "round",
      "aria-hidden": "true",
    },
    h("path", { d: "M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9" }),
    h("path", { d: "M13.73 21a2 2 0 0 1-3.46 0" }),
  );
}

/**
 * A bell with an unread badge and a dropdown of the latest notifications (severity colours,
 * click to mark read). With the provider's `inbox`: the badge is the server's unread count, the
 * dropdown the inbox's latest page, older pages load on scroll, and marks go to the server (every
 * device follows). Props: `label`, `limit` (items shown without an inbox, default 20),
 * `emptyText`, `onSelect(notification)`, `className`, `styles` (false: bring your own CSS, see
 * BELL_CSS), `defaultOpen`.
 */
export function NotificationBell(props) {
  const {
    label = "Notifications",
    limit = 20,
    emptyText = "You're all caught up",
    onSelect,
    className,
    styles = true,
    defaultOpen = false,
  } = props;
  const live = useNotifications();
  const { state, inbox } = live;
  // With an inbox: the server's items and counts; without: what arrived since the page opened.
  const unread = inbox ? (inbox.counts?.unread ?? inbox.items.filter((n) => !n.read).length) : live.unread;
  const markRead = (n) => {
    if (!inbox) live.markRead(n.id);
    else if (!n.read) inbox.markRead([n.id]);
  };
  const markAllRead = inbox ? inbox.markAllRead : live.markAllRead;
  const [open, setOpen] = React.useState(defaultOpen);
  const root = React.useRef(null);

  React.useEffect(() => {
    if (styles) injectStyles();
  }, [styles]);

  React.useEffect(() => {
    if (!open) return undefined;
    const onPointer = (event) => {
      if (root.current && !root.current.contains(event.target)) setOpen(false);
    };
    const onKey = (event) => {
      if (event.key === "Escape") setOpen(false);
    };
    document.addEventListener("mousedown", onPointer);
    document.addEventListener("keydown", onKey);
    return () => {
      document.removeEventListener("mousedown", onPointer);
      document.removeEventListener("keydown", onKey);
    };
  }, [open]);

  const stateLabel = STATE_LABELS[state] ?? state;
  const shown = inbox ? inbox.items : live.notifications.slice(0, limit);
  const more = inbox?.hasMore ? inbox : null;
  const onScroll = (event) => {
    // Page back when the list is scrolled near its end.
    const list = event.currentTarget;
    if (more && !more.loadingMore && list.scrollTop + list.clientHeight >= list.scrollHeight - 48) {
      more.loadMore();
    }
  };
  const badge = unread > 99 ? "99+" : String(unread);

  const items = shown.map((n) => {
    const severity = severityOf(n);
    return h(
      "li",
      {
        key: n.id,
        className: `tidings-bell__item tidings-sev-${severity}${n.read ? "" : " is-unread"}`,
        "data-seq": n.seq,
      },
      h(
        "button",
        {
          type: "button",
          className: "tidings-bell__entry",
          onClick: () => {
            markRead(n);
            onSelect?.(n);
          },
        },
        h("span", { className: "tidings-bell__bar", "aria-hidden": "true" }),
        h("span", { className: "tidings-bell__title" }, String(n.title ?? "")),
        n.message ? h("span", { className: "tidings-bell__message" }, String(n.message)) : null,
        h(
          "span",
          { className: "tidings-bell__meta" },
          h("span", { className: "tidings-bell__sev" }, severity),
          h("span", null, String(n.event ?? "")),
          h("span", { "aria-hidden": "true" }, "·"),
          h("time", { dateTime: n.time }, formatTime(n.time)),
        ),
      ),
    );
  });

  return h(
    "div",
    { className: ["tidings-bell", className].filter(Boolean).join(" "), "data-state": state, ref: root },
    h(
      "button",
      {
        type: "button",
        className: "tidings-bell__button",
        "aria-label": unread ? `${label}, ${unread} unread` : label,
        "aria-haspopup": "dialog",
        "aria-expanded": open,
        title: `${label} — ${stateLabel}`,
        onClick: () => setOpen((was) => !was),
      },
      h(BellIcon),
      unread > 0 ? h("span", { className: "tidings-bell__badge", "aria-hidden": "true" }, badge) : null,
      h("span", { className: "tidings-bell__dot", "aria-hidden": "true" }),
    ),
    open
      ? h(
          "div",
          { className: "tidings-bell__panel", role: "dialog", "aria-label": label },
          h(
            "div",
            { className: "tidings-bell__header" },
            h("span", { className: "tidings-bell__heading" }, label),
            h("span", { className: "tidings-bell__state" }, stateLabel),
            h(
              "button",
              {
                type: "button",
                className: "tidings-bell__markall",
                disabled: unread === 0,
                onClick: markAllRead,
              },
              "Mark all read",
            ),
          ),
          inbox?.error
            ? h("p", { className: "tidings-bell__error", role: "alert" }, `${inbox.error.code ?? "error"}: ${inbox.error.message}`)
            : null,
          items.length
            ? h(
                "ul",
                { className: "tidings-bell__list", onScroll },
                items,
                more
                  ? h(
                      "li",
                      { className: "tidings-bell__more", key: "more" },
                      h(
                        "button",
                        { type: "button", disabled: more.loadingMore, onClick: () => more.loadMore() },
                        more.loadingMore ? "Loading…" : "Show older",
                      ),
                    )
                  : null,
              )
            : h("p", { className: "tidings-bell__empty" }, inbox?.loading ? "Loading…" : emptyText),
        )
      : null,
  );
}
