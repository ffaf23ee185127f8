/**
 * Toasts for new notifications: what `<NotificationProvider enableToast>` shows (the React
 * bindings render `Toasts` with the provider's client; `NotificationToasts` places them yourself).
 *
 * Accessible the way the WAI-ARIA practices ask: the stack is one polite live region
 * (`role="status"`, present before the first toast, so screen readers announce what is added);
 * each toast has a dismiss button, Escape dismisses the focused toast (or the newest one when
 * focus is elsewhere on the page), and the auto-dismiss timers pause while the pointer is over the
 * stack or focus is inside it. Severity colours as the bell's (`--tb-*`). Text only: titles and
 * messages are React text children, never HTML.
 */

import React from "react";

const h = React.createElement;
const SEVERITIES = ["info", "success", "warning", "error", "critical"];

const STYLE_ID = "tidings-toast-styles";
export const TOAST_CSS = `
.tidings-toasts{--tb-bg:#fff;--tb-fg:#1f2430;--tb-muted:#6b7280;--tb-line:#e5e7eb;--tb-accent:#4f46e5;
  --tb-info:#3b82f6;--tb-success:#16a34a;--tb-warning:#d97706;--tb-error:#dc2626;--tb-critical:#9d174d;
  position:fixed;z-index:2000;right:16px;bottom:16px;display:flex;flex-direction:column;gap:8px;
  width:360px;max-width:calc(100vw - 32px);pointer-events:none;
  font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--tb-fg)}
.tidings-toast{pointer-events:auto;display:grid;grid-template-columns:4px 1fr auto;gap:0 12px;padding:12px 8px 12px 0;
  background:var(--tb-bg);border:1px solid var(--tb-line);border-radius:10px;overflow:hidden;
  box-shadow:0 10px 28px rgba(15,23,42,.18),0 2px 6px rgba(15,23,42,.08)}
.tidings-toast:focus-within{outline:2px solid var(--tb-accent);outline-offset:2px}
.tidings-toast__bar{grid-row:1/3;background:var(--tb-info)}
.tidings-toast.tidings-sev-success .tidings-toast__bar{background:var(--tb-success)}
.tidings-toast.tidings-sev-warning .tidings-toast__bar{background:var(--tb-warning)}
.tidings-toast.tidings-sev-error .tidings-toast__bar{background:var(--tb-error)}
.tidings-toast.tidings-sev-critical .tidings-toast__bar{background:var(--tb-critical)}
.tidings-toast__title{font-weight:600;overflow-wrap:anywhere}
.tidings-toast__message{grid-column:2;color:#374151;overflow-wrap:anywhere}
.tidings-toast__close{grid-column:3;grid-row:1;align-self:start;width:28px;height:28px;border:0;border-radius:6px;
  background:none;color:var(--tb-muted);font:inherit;font-size:18px;line-height:1;cursor:pointer}
.tidings-toast__close:hover{background:#f3f4f6;color:var(--tb-fg)}
.tidings-toast__close:focus-visible{outline:2px solid var(--tb-accent)}
@media (prefers-reduced-motion:no-preference){.tidings-toast{animation:tidings-toast-in .18s ease-out}}
@keyframes tidings-toast-in{from{opacity:0;transform:translateY(8px)}}
`;

function injectStyles() {
  if (typeof document === "undefined" || document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = TOAST_CSS;
  document.head.appendChild(style);
}

/** The options of `enableToast` (true: the defaults) with defaults filled in; null when off. */
export function toastOptions(enableToast) {
  if (!enableToast) return null;
  const given = typeof enableToast === "object" ? enableToast : {};
  const duration = given.duration ?? 6000;
  const max = given.max ?? 3;
  if (!(duration >= 0) || !(Number.isInteger(max) && max >= 1)) {
    throw new TypeError("enableToast: `duration` must be ≥ 0 ms (0: until dismissed), `max` an integer ≥ 1");
  }
  return {
    duration,
    max,
    label: given.label ?? "New notifications",
    dismissLabel: given.dismissLabel ?? "Dismiss",
    styles: given.styles ?? true,
    filter: typeof given.filter === "function" ? given.filter : null,
    onSelect: typeof given.onSelect === "function" ? given.onSelect : null,
  };
}

/** One toast: its own timer, paused (with the time left kept) while the stack is paused. */
function Toast({ toast, paused, duration, dismissLabel, onDismiss, onSelect }) {
  const n = toast.notification;
  const severity = SEVERITIES.includes(n.severity) ? n.severity : "info";
  const left = React.useRef(duration);
  React.useEffect(() => {
    if (paused || !(duration > 0)) return undefined;
    const started = Date.now();
    const timer = setTimeout(() => onDismiss(toast.key), left.current);
    return () => {
      clearTimeout(timer);
      left.current = Math.max(0, left.current - (Date.now() - started));
    };
  }, [paused, duration, toast.key, onDismiss]);
  const title = String(n.title ?? "");
  const titleId = `tidings-toast-${toast.key}`;
  return h(
    "div",
    {
      className: `tidings-toast tidings-sev-${severity}`,
      "data-severity": severity,
      "data-id": n.id,
      "aria-labelledby": titleId,
      tabIndex: -1,
      onKeyDown: (event) => {
        if (event.key === "Escape") {
          event.stopPropagation(); // this one, not the newest (the page's listener)
          onDismiss(toast.key);
        }
      },
      onClick: onSelect
        ? (event) => {
            if (!event.target.closest?.(".tidings-toast__close")) onSelect(n);
          }
        : undefined,
    },
    h("span", { className: "tidings-toast__bar", "aria-hidden": "true" }),
    h("span", { className: "tidings-toast__title", id: titleId }, title),
    h(
      "button",
      {
        type: "button",
        className: "tidings-toast__close",
        "aria-label": `${dismissLabel}: ${title}`,
        title: dismissLabel,
        onClick: () => onDismiss(toast.key),
      },
      h("span", { "aria-hidden": "true" }, "×"),
    ),
    n.message ? h("span", { className: "tidings-toast__message" }, String(n.message)) : null,
  );
}

/**
 * A stack of toasts for the notifications `client` delivers from now on (not history), newest
 * on top, at most `max`; props are `toastOptions`' (`duration`, `max`, `label`, `dismissLabel`,
 * `styles`, `filter(n)`, `onSelect(n)`) plus `client`.
 */
export function Toasts(props) {
  const { client } = props;
  const options = toastOptions(props);
  const { duration, max, label, dismissLabel, styles } = options;
  const latest = React.useRef(options);
  latest.current = options;
  const [toasts, setToasts] = React.useState([]);
  const [hovered, setHovered] = React.useState(false);
  const [focused, setFocused] = React.useState(false);
  const next = React.useRef(0);
  const region = React.useRef(null);

  React.useEffect(() => {
    if (styles) injectStyles();
  }, [styles]);

  React.useEffect(() => {
    if (!client) return undefined;
    return client.on("notification", (n) => {
      if (latest.current.filter && !latest.current.filter(n)) return;
      next.current += 1;
      const toast = { key: next.current, notification: n };
      setToasts((shown) => [toast, ...shown].slice(0, latest.current.max));
    });
  }, [client]);

  React.useEffect(() => {
    setToasts((shown) => (shown.length > max ? shown.slice(0, max) : shown));
  }, [max]);

  const dismiss = React.useCallback((key) => {
    setToasts((shown) => {
      const index = shown.findIndex((t) => t.key === key);
      if (index < 0) return shown;
      const inside = region.current?.contains(document.activeElement);
      const rest = shown.filter((t) => t.key !== key);
      if (inside) {
        // Keep the keyboard user in the stack: focus the next toast, if any.
        const target = rest[Math.min(index, rest.length - 1)];
        queueMicrotask(() => {
          const element = target && region.current?.querySelector(`[data-key="${target.key}"] .tidings-toast__close`);
          if (element) element.focus();
        });
      }
      return rest;
    });
  }, []);

  React.useEffect(() => {
    if (toasts.length === 0) return undefined;
    const onKey = (event) => {
      // Escape elsewhere on the page dismisses the newest toast (a focused toast handles its own).
      if (event.key === "Escape" && !event.defaultPrevented) dismiss(toasts[0].key);
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [toasts, dismiss]);

  const paused = hovered || focused;
  return h(
    "div",
    {
      className: "tidings-toasts",
      role: "status",
      "aria-live": "polite",
      "aria-relevant": "additions",
      "aria-label": label,
      "data-paused": paused ? "true" : "false",
      ref: region,
      onMouseEnter: () => setHovered(true),
      onMouseLeave: () => setHovered(false),
      onFocus: () => setFocused(true),
      onBlur: (event) => {
        if (!event.currentTarget.contains(event.relatedTarget)) setFocused(false);
      },
    },
    toasts.map((toast) =>
      h(
        "div",
        { key: toast.key, "data-key": toast.key, className: "tidings-toast__slot" },
        h(Toast, {
          toast,
          paused,
          duration,
          dismissLabel,
          onDismiss: dismiss,
          onSelect: options.onSelect,
        }),
      ),
    ),
  );
}
