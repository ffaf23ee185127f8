// The Tidings demo page: sign in with a dev token, watch notifications arrive live, publish test
// events through the publisher, and follow the connection. Plain ES modules and
// React.createElement: what a front-end team would copy, without a build step.
//
// URL parameters: ?tenant=acme&user=bob&roles=ops,admin&rooms=site-* signs in as that identity
// (a dev token minted by the demo server); no parameters use the dev token `tidings dev` minted.
// With the inbox API (`tidings dev` runs it; config.json's `inbox`), the bell and the inbox card
// show what the server keeps: history after a reload, marks shared by every device.
// Toasts (`enableToast`) show every new notification; ?toast=<ms> sets how long one stays
// (0: until dismissed), ?toast=off turns them off.

import React from "react";
import { createRoot } from "react-dom/client";
import { NotificationBell, NotificationProvider, useNotifications, severityOf } from "./tidings-react.js";
import { InboxCard, NoInboxCard, PreferencesCard, useInboxLog } from "./inbox-cards.js";

const h = React.createElement;
const { useEffect, useMemo, useRef, useState } = React;

const FEED_LIMIT = 500;
const LOG_LIMIT = 60;

async function getJson(url, init) {
  const response = await fetch(url, init);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = body?.error ?? {};
    const where = error.field ? `${error.field}: ` : "";
    throw new Error(`${where}${error.reason ?? response.statusText} (${response.status})`);
  }
  return body;
}

function toastFromUrl() {
  const given = new URLSearchParams(location.search).get("toast");
  if (given === "off") return false;
  const ms = Number(given);
  return given !== null && given !== "" && Number.isFinite(ms) && ms >= 0 ? { duration: ms } : true;
}

function identityFromUrl() {
  const params = new URLSearchParams(location.search);
  if (!params.get("tenant") || !params.get("user")) return null;
  return {
    tenant: params.get("tenant"),
    user: params.get("user"),
    roles: params.get("roles") ?? params.get("role") ?? "",
    rooms: params.get("rooms") ?? "*",
  };
}

async function mint(identity) {
  const query = new URLSearchParams({
    tenant: identity.tenant,
    user: identity.user,
    roles: identity.roles,
    rooms: identity.rooms,
  });
  const answer = await getJson(`api/token?${query}`);
  return { token: answer.token, claims: answer.claims };
}

function clock(date = new Date()) {
  return date.toLocaleTimeString([], { hour12: false });
}

// -- small pieces -------------------------------------------------------------------------------

function Card({ title, subtitle, actions, className, children }) {
  return h(
    "section",
    { className: ["card", className].filter(Boolean).join(" ") },
    h(
      "header",
      { className: "card__header" },
      h("div", null, h("h2", null, title), subtitle ? h("p", { className: "muted" }, subtitle) : null),
      actions ?? null,
    ),
    children,
  );
}

function Field({ label, children, hint }) {
  return h("label", { className: "field" }, h("span", null, label), children, hint ? h("small", null, hint) : null);
}

const STATE_TEXT = {
  connecting: "Connecting",
  connected: "Catching up",
  live: "Live",
  disconnected: "Reconnecting",
  closed: "Offline",
};

function StatePill() {
  const { state } = useNotifications();
  return h(
    "span",
    { className: `pill pill--${state}`, "data-testid": "state", "data-state": state, title: "connection state" },
    h("span", { className: "pill__dot", "aria-hidden": "true" }),
    STATE_TEXT[state] ?? state,
  );
}

// -- header ---------------------------------------------------------------------------------------

function Header({ session }) {
  const { welcome } = useNotifications();
  const who = welcome ?? session.claims ?? {};
  return h(
    "header",
    { className: "topbar" },
    h(
      "div",
      { className: "brand" },
      h("img", { src: "favicon.svg", alt: "", width: 28, height: 28 }),
      h("span", { className: "brand__name" }, "Tidings"),
      h("span", { className: "brand__tag" }, "live notifications demo"),
    ),
    h(
      "div",
      { className: "topbar__right" },
      h(StatePill),
      h(
        "span",
        { className: "whoami", "data-testid": "whoami", title: `${who.user ?? "?"} @ ${who.tenant ?? "?"}` },
        h("strong", null, who.user ?? "?"),
        h("span", { className: "muted" }, ` @ ${who.tenant ?? "?"}`),
      ),
      h(NotificationBell, { label: "Notifications" }),
    ),
  );
}

// -- sign in --------------------------------------------------------------------------------------

const PRESETS = [
  { label: "alice · demo · admin", tenant: "demo", user: "alice", roles: "admin", rooms: "*" },
  { label: "bob · demo · ops", tenant: "demo", user: "bob", roles: "ops", rooms: "site-*" },
  { label: "carol · globex", tenant: "globex", user: "carol", roles: "", rooms: "*" },
];

function SignInCard({ config, session, onSession }) {
  const start = session.claims ?? {};
  const [form, setForm] = useState({
    tenant: start.tenant ?? "demo",
    user: start.user ?? "alice",
    roles: (start.roles ?? []).join(","),
    rooms: (start.rooms ?? ["*"]).join(","),
  });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [pasted, setPasted] = useState("");

  const signIn = async (identity) => {
    setBusy(true);
    setError(null);
    try {
      const minted = await mint(identity);
      const query = new URLSearchParams({ tenant: identity.tenant, user: identity.user });
      if (identity.roles) query.set("roles", identity.roles);
      if (identity.rooms && identity.rooms !== "*") query.set("rooms", identity.rooms);
      history.replaceState(null, "", `?${query}`);
      onSession({ ...minted, source: "minted" });
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };

  const input = (name, placeholder) =>
    h("input", {
      name,
      value: form[name],
      placeholder,
      spellCheck: false,
      onChange: (event) => setForm({ ...form, [name]: event.target.value }),
    });

  if (!config.mint) {
    return h(
      Card,
      { title: "Sign in", subtitle: "This server cannot mint dev tokens: paste a JWT." },
      h(
        "form",
        {
          className: "stack",
          onSubmit: (event) => {
            event.preventDefault();
            if (pasted.trim()) onSession({ token: pasted.trim(), claims: null, source: "pasted" });
          },
        },
        h(Field, { label: "Token" }, h("textarea", { rows: 3, value: pasted, onChange: (e) => setPasted(e.target.value) })),
        h("button", { className: "btn btn--primary", type: "submit" }, "Connect"),
      ),
    );
  }

  return h(
    Card,
    { title: "Sign in", subtitle: "Dev tokens for any tenant, user and role (development only)." },
    h(
      "div",
      { className: "presets" },
      PRESETS.map((preset) =>
        h("button", { key: preset.label, type: "button", className: "chip", disabled: busy, onClick: () => {
          setForm(preset);
          signIn(preset);
        } }, preset.label),
      ),
    ),
    h(
      "form",
      {
        className: "grid2",
        "data-testid": "signin",
        onSubmit: (event) => {
          event.preventDefault();
          signIn(form);
        },
      },
      h(Field, { label: "Tenant" }, input("tenant", "acme")),
      h(Field, { label: "User" }, input("user", "alice")),
      h(Field, { label: "Roles", hint: "comma-separated" }, input("roles", "admin,ops")),
      h(Field, { label: "Room patterns", hint: "e.g. site-* or *" }, input("rooms", "*")),
      h("div", { className: "form__actions" },
        h("button", { className: "btn btn--primary", type: "submit", disabled: busy }, busy ? "Signing in…" : "Sign in"),
        error ? h("span", { className: "error", role: "alert" }, error) : null,
      ),
    ),
  );
}

// -- publish --------------------------------------------------------------------------------------

const SEVERITY_CHOICES = ["info", "success", "warning", "error", "critical"];
const SAMPLE_TITLES = {
  "incident.created": ["Spill reported in hall 3", "Cleanup crew on the way"],
  "audit.assigned": ["Audit assigned to you", "Quarterly fire-safety audit"],
  "work_permit.status_changed": ["Hot-work permit approved", "Permit WP-112 is now active"],
  "quota.warning": ["Storage at 85 %", "Consider archiving old reports"],
  "system.notification": ["Maintenance tonight", "Short downtime at 22:00 UTC"],
};

function PublishCard({ config }) {
  const { welcome } = useNotifications();
  const tenant = welcome?.tenant ?? "";
  const [form, setForm] = useState({
    event: "incident.created",
    audience: "tenant",
    target: "",
    severity: "warning",
    title: SAMPLE_TITLES["incident.created"][0],
    message: SAMPLE_TITLES["incident.created"][1],
  });
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);

  if (!config.publish) {
    return h(
      Card,
      { title: "Publish", subtitle: "Publishing from the page needs `tidings dev`." },
      h("p", { className: "muted" }, "Use `tidings publish --tenant … --event … --title …` meanwhile."),
    );
  }

  const set = (name) => (event) => {
    const value = event.target.value;
    const next = { ...form, [name]: value };
    if (name === "event" && SAMPLE_TITLES[value]) [next.title, next.message] = SAMPLE_TITLES[value];
    setForm(next);
  };

  const publish = async (event) => {
    event.preventDefault();
    setBusy(true);
    setResult(null);
    const body = {
      tenant,
      event: form.event,
      title: form.title,
      message: form.message,
      severity: form.severity,
      data: { from: "demo page" },
    };
    if (form.audience !== "tenant") body.audience = { [form.audience]: form.target };
    try {
      const answer = await getJson("api/publish", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      setResult({ ok: true, text: answer.queued ? `queued (NATS is away) · ${answer.id}` : `published as #${answer.seq}` });
    } catch (err) {
      setResult({ ok: false, text: err.message });
    } finally {
      setBusy(false);
    }
  };

  return h(
    Card,
    { title: "Publish a test event", subtitle: `Through the publisher sidecar, to tenant ${tenant || "…"}.` },
    h(
      "form",
      { className: "grid2", onSubmit: publish, "data-testid": "publish" },
      h(Field, { label: "Event" },
        h("select", { value: form.event, onChange: set("event") },
          config.events.map((e) => h("option", { key: e.name, value: e.name, title: e.description }, e.name)))),
      h(Field, { label: "Severity" },
        h("select", { value: form.severity, onChange: set("severity") },
          SEVERITY_CHOICES.map((s) => h("option", { key: s, value: s }, s)))),
      h(Field, { label: "Audience" },
        h("select", { value: form.audience, onChange: set("audience") },
          h("option", { value: "tenant" }, "whole tenant"),
          h("option", { value: "user" }, "one user"),
          h("option", { value: "role" }, "a role"),
          h("option", { value: "room" }, "a named room"))),
      h(Field, { label: form.audience === "tenant" ? "—" : `${form.audience} id` },
        h("input", { value: form.target, disabled: form.audience === "tenant", onChange: set("target"), placeholder: "bob / ops / site-berlin" })),
      h("div", { className: "span2" }, h(Field, { label: "Title" }, h("input", { name: "title", value: form.title, onChange: set("title"), maxLength: 200 }))),
      h("div", { className: "span2" }, h(Field, { label: "Message" }, h("textarea", { name: "message", rows: 2, value: form.message, onChange: set("message") }))),
      h("div", { className: "form__actions span2" },
        h("button", { className: "btn btn--primary", type: "submit", disabled: busy || !tenant }, busy ? "Publishing…" : "Publish"),
        result ? h("span", { className: result.ok ? "ok" : "error", role: "status", "data-testid": "publish-result" }, result.text) : null,
      ),
    ),
  );
}

// -- rooms ----------------------------------------------------------------------------------------

function RoomsCard() {
  const { client, welcome } = useNotifications();
  const [rooms, setRooms] = useState(client?.rooms ?? []);
  const [name, setName] = useState("site-berlin");
  const [error, setError] = useState(null);

  useEffect(() => {
    if (!client) return undefined;
    setRooms(client.rooms);
    return client.on("rooms", setRooms);
  }, [client]);

  const join = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      await client.subscribe(name.trim());
    } catch (err) {
      setError(`${err.code}: ${err.message}`);
    }
  };

  const automatic = (welcome?.rooms ?? []).filter((r) => !r.startsWith("room:"));
  return h(
    Card,
    { title: "Rooms", subtitle: "Automatic rooms follow the token; named rooms are joined on request." },
    h("div", { className: "tags" },
      automatic.map((r) => h("span", { key: r, className: "tag" }, r)),
      rooms.map((r) => h("span", { key: r, className: "tag tag--named" }, r,
        h("button", { type: "button", "aria-label": `leave ${r}`, onClick: () => client.unsubscribe(r).catch((e) => setError(e.message)) }, "×")))),
    h("form", { className: "inline", onSubmit: join },
      h("input", { value: name, onChange: (e) => setName(e.target.value), placeholder: "site-berlin", "aria-label": "room name" }),
      h("button", { className: "btn", type: "submit", disabled: !client }, "Join room")),
    error ? h("p", { className: "error", role: "alert" }, error) : null,
  );
}

// -- feed and connection log ------------------------------------------------------------------------

function FeedCard({ feed }) {
  const { client } = useNotifications();
  const duplicates = client?.stats.duplicates ?? 0;
  return h(
    Card,
    {
      title: "Live feed",
      subtitle: `${feed.length} delivered · ${duplicates} duplicates dropped · every delivery, newest first`,
      className: "feed-card",
    },
    feed.length === 0
      ? h("p", { className: "empty" }, "Nothing yet. Publish something, or run `tidings publish`.")
      : h(
          "ol",
          { className: "feed", "data-testid": "feed" },
          feed.map((n) =>
            h(
              "li",
              { key: `${n.seq}-${n.id}`, className: `feed__item sev-${severityOf(n)}`, "data-testid": "feed-item", "data-seq": n.seq },
              h("span", { className: "feed__seq" }, `#${n.seq}`),
              h("span", { className: "feed__sev" }, severityOf(n)),
              h("div", { className: "feed__body" },
                h("div", { className: "feed__title" }, n.title),
                h("div", { className: "feed__message" }, n.message),
              ),
              h("div", { className: "feed__meta" },
                h("code", null, n.event),
                h("span", { className: "muted" }, n.room),
                h("time", { dateTime: n.time }, clock(new Date(n.time)))),
            ),
          ),
        ),
  );
}

function ConnectionCard({ log }) {
  const { client, welcome, error } = useNotifications();
  const stats = client?.stats ?? {};
  const position = client?.position;
  return h(
    Card,
    { title: "Connection", subtitle: client ? client.url : "" },
    h("dl", { className: "facts" },
      h("dt", null, "connection"), h("dd", null, welcome?.connection ?? "—"),
      h("dt", null, "resume point"), h("dd", { "data-testid": "position" }, position ? `#${position.seq}` : "—"),
      h("dt", null, "epoch"), h("dd", null, position?.epoch ?? "—"),
      h("dt", null, "frames / connects"), h("dd", null, `${stats.frames ?? 0} / ${stats.connects ?? 0}`),
      h("dt", null, "recovered"), h("dd", null, welcome ? String(welcome.recovered) : "—"),
    ),
    error ? h("p", { className: "error", role: "alert" }, `${error.code}: ${error.message}`) : null,
    h("ol", { className: "log", "data-testid": "log" },
      log.map((entry) => h("li", { key: entry.n, className: `log__item log--${entry.kind}` },
        h("time", null, entry.at), h("span", null, entry.text)))),
  );
}

// -- the app --------------------------------------------------------------------------------------

function Dashboard({ config, session, onSession, feed, log }) {
  return h(
    React.Fragment,
    null,
    h(Header, { session }),
    h(
      "main",
      { className: "layout" },
      h("div", { className: "col" },
        h(SignInCard, { config, session, onSession }),
        h(PublishCard, { config }),
        config.inbox ? h(PreferencesCard, { config }) : null,
        h(RoomsCard)),
      h("div", { className: "col col--wide" },
        config.inbox ? h(InboxCard) : h(NoInboxCard),
        h(FeedCard, { feed }),
        h(ConnectionCard, { log })),
    ),
    h("footer", { className: "footer muted" },
      "Tidings demo · development only · the SDK is ",
      h("code", null, "tidings.js"), " and ", h("code", null, "tidings-react.js"), " from clients/js"),
  );
}

function Wiring({ onLog }) {
  // Log every state change and reset the way an operator would want to read them.
  const { client } = useNotifications();
  useInboxLog(onLog);
  useEffect(() => {
    if (!client) return undefined;
    const offs = [
      client.on("state", (e) => {
        let text = e.state;
        if (e.state === "disconnected") text += ` (${e.reason ?? "?"}${e.closeCode ? `, close ${e.closeCode}` : ""}; retry in ${Math.round(e.delay)} ms)`;
        if (e.state === "connected") text += e.recovered ? " (resumed, nothing missed)" : " (fresh start)";
        onLog(e.state === "live" ? "ok" : e.state === "disconnected" || e.state === "closed" ? "warn" : "info", text);
      }),
      client.on("reset", (r) => onLog("warn", `reset: ${r.reason}; history up to #${r.seq} should be reloaded`)),
      client.on("error", (err) => onLog("warn", `error ${err.code}: ${err.message}`)),
    ];
    return () => offs.forEach((off) => off());
  }, [client]);
  return null;
}

function App() {
  const [config, setConfig] = useState(null);
  const [session, setSession] = useState(null);
  const [problem, setProblem] = useState(null);
  const [feed, setFeed] = useState([]);
  const [log, setLog] = useState([]);
  const counter = useRef(0);

  useEffect(() => {
    (async () => {
      try {
        const loaded = await getJson("config.json");
        setConfig(loaded);
        const wanted = identityFromUrl();
        if (wanted && loaded.mint) setSession({ ...(await mint(wanted)), source: "minted" });
        else if (loaded.token) setSession({ token: loaded.token, claims: loaded.claims, source: "dev" });
        else setSession({ token: null, claims: null, source: "none" });
      } catch (err) {
        setProblem(err.message);
      }
    })();
  }, []);

  const onLog = useMemo(
    () => (kind, text) => {
      counter.current += 1;
      const entry = { n: counter.current, kind, text, at: clock() };
      setLog((previous) => [entry, ...previous].slice(0, LOG_LIMIT));
    },
    [],
  );

  const onSession = (next) => {
    setFeed([]);
    setSession(next);
    const who = next.claims ? `${next.claims.user} @ ${next.claims.tenant}` : "a pasted token";
    onLog("info", `signed in as ${who}`);
  };

  if (problem) return h("div", { className: "boot error" }, `The demo could not start: ${problem}`);
  if (!config || !session) return h("p", { className: "boot" }, "Loading the Tidings demo…");
  if (!session.token) {
    return h("main", { className: "layout layout--narrow" }, h(SignInCard, { config, session: {}, onSession }));
  }

  const claims = session.claims ?? {};
  return h(
    NotificationProvider,
    {
      key: session.token,
      url: config.ws ?? "/ws",
      token: session.token,
      // Survive a page reload: resume from the last seq this tab processed, per identity.
      storage: "session",
      storageKey: `tidings-demo:${claims.tenant ?? "?"}:${claims.user ?? "?"}`,
      max: 200,
      inbox: config.inbox ?? null, // the inbox API's base URL: history, counts, marks
      enableToast: toastFromUrl(), // a toast for each new notification
      onNotification: (n) => setFeed((previous) => [n, ...previous].slice(0, FEED_LIMIT)),
    },
    h(Wiring, { onLog }),
    h(Dashboard, { config, session, onSession, feed, log }),
  );
}

createRoot(document.getElementById("app")).render(h(App));
