// The demo page's inbox: the history the server keeps (the same after a reload and on every
// device), marks, and a small preferences panel. Built on useInbox() and the InboxClient of
// tidings.js, exactly as an application would.

import React from "react";
import { domainOf, SEVERITY_KEYS } from "./tidings.js";
import { severityOf, useInbox, useNotifications } from "./tidings-react.js";

const h = React.createElement;
const { useEffect, useState } = React;

function Card({ title, subtitle, actions, className, children, testid }) {
  return h(
    "section",
    { className: ["card", className].filter(Boolean).join(" "), "data-testid": testid },
    h(
      "header",
      { className: "card__header" },
      h("div", null, h("h2", null, title), subtitle ? h("p", { className: "muted" }, subtitle) : null),
      actions ?? null,
    ),
    children,
  );
}

/** Without an inbox API (a gateway serving the page by itself): say where to get one. */
export function NoInboxCard() {
  return h(
    Card,
    { title: "Inbox", subtitle: "The inbox needs its API: `tidings dev` runs it.", testid: "inbox" },
    h("p", { className: "muted" }, "Run `tidings dev` to see history, marks and preferences here."),
  );
}

function CountsLine({ counts }) {
  if (!counts) return h("span", { className: "muted" }, "counting…");
  const bySeverity = SEVERITY_KEYS.filter((s) => counts.unread_by_severity[s] > 0);
  return h(
    "span",
    { className: "counts", "data-testid": "inbox-counts", "data-unread": counts.unread, "data-total": counts.total },
    h("strong", null, `${counts.unread} unread`),
    ` · ${counts.unseen} unseen · ${counts.total} kept`,
    bySeverity.map((s) => h("span", { key: s, className: `counts__sev sev-${s}` }, `${counts.unread_by_severity[s]} ${s}`)),
  );
}

export function InboxCard() {
  const { items, counts, loading, error, hasMore, loadingMore, loadMore, markRead, markUnread, markAllRead, archive, refresh } =
    useInbox();
  const [onlyUnread, setOnlyUnread] = useState(false);
  const shown = onlyUnread ? items.filter((n) => !n.read) : items;
  return h(
    Card,
    {
      title: "Inbox",
      subtitle: "Kept by the server: the same after a reload and on every device.",
      className: "inbox-card",
      testid: "inbox",
      actions: h(
        "div",
        { className: "card__actions" },
        h("label", { className: "toggle" },
          h("input", { type: "checkbox", checked: onlyUnread, onChange: (e) => setOnlyUnread(e.target.checked) }),
          "unread only"),
        h("button", { type: "button", className: "btn", "data-testid": "inbox-reload", onClick: () => refresh() }, "Reload"),
        h("button", { type: "button", className: "btn", "data-testid": "inbox-markall", disabled: !counts?.unread, onClick: () => markAllRead() }, "Mark all read"),
      ),
    },
    h("p", { className: "inbox__counts" }, h(CountsLine, { counts })),
    error ? h("p", { className: "error", role: "alert" }, `${error.code}: ${error.message}`) : null,
    loading && items.length === 0
      ? h("p", { className: "empty" }, "Loading the inbox…")
      : shown.length === 0
        ? h("p", { className: "empty" }, "Nothing here.")
        : h(
            "ol",
            { className: "inbox", "data-testid": "inbox-list" },
            shown.map((n) =>
              h(
                "li",
                {
                  key: n.id,
                  className: `inbox__item sev-${severityOf(n)}${n.read ? "" : " is-unread"}`,
                  "data-testid": "inbox-item",
                  "data-id": n.id,
                  "data-read": String(n.read),
                },
                h("span", { className: "feed__sev" }, severityOf(n)),
                h("div", { className: "feed__body" },
                  h("div", { className: "feed__title" }, n.title),
                  h("div", { className: "feed__message" }, n.message),
                  h("div", { className: "inbox__meta muted" }, h("code", null, n.event), ` · ${n.room} · `,
                    h("time", { dateTime: n.time }, new Date(n.time).toLocaleString()))),
                h("div", { className: "inbox__actions" },
                  h("button", { type: "button", className: "chip", "data-testid": n.read ? "mark-unread" : "mark-read",
                    onClick: () => (n.read ? markUnread([n.id]) : markRead([n.id])) }, n.read ? "Mark unread" : "Mark read"),
                  h("button", { type: "button", className: "chip", "data-testid": "archive", onClick: () => archive([n.id]) }, "Archive")),
              ),
            ),
          ),
    hasMore
      ? h("button", { type: "button", className: "btn inbox__more", disabled: loadingMore, onClick: () => loadMore() },
          loadingMore ? "Loading…" : "Load older")
      : null,
  );
}

// -- preferences ----------------------------------------------------------------------------------

function domainsOf(config, prefs) {
  const names = new Set(config.events.map((e) => domainOf(e.name)));
  for (const part of ["defaults", "overrides", "effective"]) {
    for (const domain of Object.keys(prefs?.[part] ?? {})) names.add(domain);
  }
  return [...names].sort();
}

export function PreferencesCard({ config }) {
  const { inbox } = useInbox();
  const [prefs, setPrefs] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(null);

  useEffect(() => {
    let live = true;
    inbox.preferences().then((p) => live && setPrefs(p), (err) => live && setError(err));
    return () => {
      live = false;
    };
  }, [inbox]);

  const change = async (domain, value) => {
    setBusy(domain);
    setError(null);
    try {
      setPrefs(await inbox.setPreferences({ [domain]: { in_app: value } }));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(null);
    }
  };

  const rows = prefs
    ? domainsOf(config, prefs).map((domain) => {
        const on = prefs.effective[domain]?.in_app ?? true;
        const override = prefs.overrides[domain]?.in_app;
        const fallback = prefs.defaults[domain]?.in_app ?? true;
        return h(
          "tr",
          { key: domain, "data-testid": "pref", "data-domain": domain, "data-on": String(on) },
          h("td", null, h("code", null, domain)),
          h("td", null,
            h("label", { className: "toggle" },
              h("input", { type: "checkbox", checked: on, disabled: busy !== null, "aria-label": `${domain} in the bell`,
                onChange: (e) => change(domain, e.target.checked) }),
              on ? "in the bell" : "muted")),
          h("td", { className: "muted" },
            override === undefined
              ? `tenant default (${fallback ? "on" : "off"})`
              : h("button", { type: "button", className: "chip", disabled: busy !== null, onClick: () => change(domain, null) },
                  `back to the default (${fallback ? "on" : "off"})`)),
        );
      })
    : null;

  return h(
    Card,
    {
      title: "Preferences",
      subtitle: "In-app, per event domain. Critical notifications always reach the bell.",
      testid: "prefs",
    },
    error ? h("p", { className: "error", role: "alert" }, `${error.code}: ${error.message}`) : null,
    rows ? h("table", { className: "prefs" }, h("tbody", null, rows)) : h("p", { className: "muted" }, "Loading…"),
  );
}

/** Log the inbox frames: a mark made on another device shows up here. */
export function useInboxLog(onLog) {
  const { client } = useNotifications();
  useEffect(() => {
    if (!client) return undefined;
    return client.on("inbox", (frame) => {
      const what = frame.muted
        ? `preferences: muted ${frame.muted.length ? frame.muted.join(", ") : "nothing"}`
        : `${frame.all ? "all" : `${frame.ids.length} notification(s)`} set ${JSON.stringify(frame.set)}`;
      onLog("info", `inbox: ${what}; ${frame.counts.unread} unread`);
    });
  }, [client, onLog]);
}
