// Compiled (never run) by types.test.mjs: the declarations describe the API the way an
// application uses it, and reject what it must not do.
import { createElement } from "react";
import {
  connect,
  State,
  TidingsClient,
  TidingsError,
  type ConnectionState,
  type Notification,
  type StateEvent,
} from "../../src/tidings.js";
import {
  NotificationBell,
  NotificationProvider,
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
