// Compiled (never run) by types.test.mjs: the declarations describe the API the way an
// application uses it, and reject what it must not do.
import { createElement } from "react";
import {
  connect,
  InboxClient,
  State,
  TidingsClient,
  TidingsError,
  type ConnectionState,
  type InboxCounts,
  type InboxFrame,
  type InboxItem,
  type InboxPage,
  type Notification,
  type StateEvent,
} from "../../src/tidings.js";
import {
  NotificationBell,
  NotificationProvider,
  NotificationToasts,
  useInbox,
  useNotifications,
  type NotificationItem,
} from "../../src/tidings-react.js";

declare const console: { log(...values: unknown[]): void }; // no DOM lib: faster checks

const client: TidingsClient = connect({
  url: "/ws",
  getToken: async () => "jwt",
  rooms: ["site-berlin"],
  storage: "session",
  backoff: { base: 250, max: 10_000 },
});
const off: () => void = client.on("notification", (n: Notification) => {
  const seq: number = n.seq;
  const title: string = n.title;
  void [seq, title];
});
off();
client.on("state", (e: StateEvent) => {
  const s: ConnectionState = e.state;
  if (s === State.DISCONNECTED) console.log(e.delay, e.closeCode);
});
client.on("error", (err: TidingsError) => console.log(err.code, err.closeCode));
client.on("reset", (r) => console.log(r.seq, r.epoch, r.reason));
void client.subscribe("room:site-paris").then(() => client.ping()).then((ms: number) => ms);
const position = client.position;
if (position) connect({ url: "wss://x/ws", token: "t", since: position.seq, epoch: position.epoch });
void client.close();

// @ts-expect-error an unknown event name
client.on("notifications", () => {});
// @ts-expect-error a token must be a string
connect({ url: "/ws", token: 42 });

function Inbox() {
  const { notifications, unread, state, markRead, markAllRead } = useNotifications();
  const first: NotificationItem | undefined = notifications[0];
  if (first && !first.read) markRead(first.id);
  if (unread > 10) markAllRead();
  return createElement("span", null, `${state}: ${unread}`);
}

createElement(
  NotificationProvider,
  { url: "/ws", token: "jwt", max: 50, onReset: () => {} },
  createElement(NotificationBell, { label: "Alerts", limit: 10 }),
  createElement(Inbox),
);

// -- the inbox ------------------------------------------------------------------------------------

const inbox = new InboxClient({ baseUrl: "https://inbox.example.com", token: async () => "jwt" });
async function history(): Promise<void> {
  const page: InboxPage = await inbox.list({ status: "unread", severity: ["error", "critical"], since: new Date(), limit: 20 });
  const item: InboxItem | undefined = page.items[0];
  const next: string | null = page.next_cursor;
  if (next) await inbox.list({ cursor: next });
  if (item) {
    const read: boolean = item.read;
    const { changed, counts } = await inbox.mark([item.id], { read: !read });
    const unread: number = counts.unread_by_severity.critical;
    void [changed, unread, (await inbox.get(item.id)).archived];
  }
  const counts: InboxCounts = await inbox.counts();
  await inbox.markAll({ read: true }, { domain: "incident" });
  const prefs = await inbox.setPreferences({ audit: { in_app: false, email: null } });
  const on: boolean | undefined = prefs.effective.audit?.in_app;
  void [counts.unseen, on];
  // @ts-expect-error mark-all only sets flags
  await inbox.markAll({ read: false });
  // @ts-expect-error no such status
  await inbox.list({ status: "new" });
}
void history;
new InboxClient({ baseUrl: "/", token: "jwt", timeout: 5000 });
// @ts-expect-error the token is required
new InboxClient({ baseUrl: "/" });
client.on("inbox", (frame: InboxFrame) => console.log(frame.counts.unread, frame.ids, frame.set.read, frame.all));
const known: InboxCounts | null = client.inboxCounts ?? client.welcome?.inbox ?? null;
void known;

function Bell() {
  const { items, counts, loading, error, hasMore, loadMore, markRead, markUnread, markAllRead, archive, refresh } =
    useInbox();
  if (error) console.log(error.code, error.status);
  if (hasMore && !loading) void loadMore();
  const first = items[0];
  if (first) void (first.read ? markUnread([first.id]) : markRead(first.id)).then(() => archive([first.id]));
  void markAllRead().then(refresh);
  return createElement("span", null, String(counts?.unread ?? 0));
}

createElement(
  NotificationProvider,
  { url: "/ws", getToken: async () => "jwt", inbox: "https://inbox.example.com", pageSize: 30, inboxFilter: { domain: ["incident"] } },
  createElement(Bell),
);
createElement(NotificationProvider, { url: "/ws", token: "jwt", inbox }, createElement(NotificationBell));

// -- toasts ---------------------------------------------------------------------------------------

createElement(NotificationProvider, { url: "/ws", token: "jwt", enableToast: true }, createElement(NotificationBell));
createElement(NotificationProvider, {
  url: "/ws",
  token: "jwt",
  enableToast: { duration: 8000, max: 5, filter: (n: Notification) => n.severity !== "info", onSelect: (n) => console.log(n.id) },
});
createElement(NotificationToasts, { duration: 0, dismissLabel: "Close" });
// @ts-expect-error max is a number
createElement(NotificationProvider, { url: "/ws", token: "jwt", enableToast: { max: "3" } });
