// Small helpers: building elements (never from HTML strings, so nothing the
// API returns is ever parsed as markup), states, times and the confirm box.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: h("a", {href: "#/"}, "text", otherNode). */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

// --- states -------------------------------------------------------------------
// Okabe-Ito colours (distinguishable with the common colour-vision
// deficiencies), and every state also carries an icon and its name.

export const JOB_STATES = [
  "STATE_PENDING",
  "STATE_READY",
  "STATE_RUNNING",
  "STATE_SUCCEEDED",
  "STATE_FAILED",
  "STATE_CANCELLED",
  "STATE_SKIPPED",
];
export const DAG_STATES = ["STATE_PENDING", "STATE_RUNNING", "STATE_SUCCEEDED", "STATE_FAILED", "STATE_CANCELLED"];
export const TERMINAL = new Set(["STATE_SUCCEEDED", "STATE_FAILED", "STATE_CANCELLED", "STATE_SKIPPED"]);

const ICONS = {
  STATE_PENDING: "○",
  STATE_READY: "◔",
  STATE_RUNNING: "▶",
  STATE_SUCCEEDED: "✓",
  STATE_FAILED: "✗",
  STATE_CANCELLED: "⊘",
  STATE_SKIPPED: "↷",
};

/** "STATE_RUNNING" -> "RUNNING". */
export function stateName(state) {
  return String(state || "STATE_UNSPECIFIED").replace(/^STATE_/, "");
}

export function stateIcon(state) {
  return ICONS[state] || "?";
}

/** The CSS class of a state's colour. */
export function stateClass(state) {
  return `st-${stateName(state).toLowerCase()}`;
}

/** A state as a badge: icon and name, coloured. */
export function badge(state) {
  return h(
    "span",
    { class: `badge ${stateClass(state)}`, "data-state": stateName(state) },
    h("span", { "aria-hidden": "true" }, stateIcon(state)),
    " ",
    stateName(state),
  );
}

// --- numbers and times -------------------------------------------------------------

export function num(n) {
  return Number(n || 0).toLocaleString("en-US");
}

const LOCAL = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

/** A time in the browser's zone, with UTC on hover. */
export function timeEl(iso, { zone } = {}) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const date = new Date(iso);
  const text = zone
    ? new Intl.DateTimeFormat(undefined, {
        timeZone: zone,
        year: "numeric",
        month: "short",
        day: "2-digit",
        hour: "2-digit",
        minute: "2-digit",
        second: "2-digit",
        timeZoneName: "short",
      }).format(date)
    : LOCAL.format(date);
  return h("time", { datetime: date.toISOString(), title: `UTC ${date.toISOString()}` }, text);
}

/** "1h 02m", "3.4s", from milliseconds. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 0) ms = 0;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${String(mm).padStart(2, "0")}m`;
  if (mm) return `${mm}m ${String(ss).padStart(2, "0")}s`;
  return `${ss}s`;
}

/** How long something started at `start` ran (until `end`, or now). */
export function span(start, end) {
  if (!start) return "—";
  return duration((end ? Date.parse(end) : Date.now()) - Date.parse(start));
}

/** A progress bar: finished of total. */
export function progress(done, total, label) {
  const pct = total ? Math.round((100 * done) / total) : 0;
  return h(
    "span",
    { class: "progress" },
    h("progress", { max: total || 1, value: done, "aria-label": label || "progress" }),
    h("span", { class: "progress-text" }, `${num(done)}/${num(total)}`),
    h("span", { class: "visually-hidden" }, ` (${pct}%)`),
  );
}

/** JSON, pretty. */
export function jsonBlock(value) {
  return h("pre", { class: "json" }, JSON.stringify(value ?? {}, null, 2));
}

/** An error from the API, as its own message. */
export function errorBox(err) {
  const message = err && err.message ? err.message : String(err);
  const status = err && err.status ? ` (HTTP ${err.status})` : "";
  return h("div", { class: "error", role: "alert" }, h("strong", {}, "Error" + status + ": "), message);
}

// --- confirmation ---------------------------------------------------------------

/**
 * Ask before an action: a modal <dialog> (focus moves into it and back).
 * Resolves true only on the confirm button.
 */
export function confirmAction(title, text, confirmLabel) {
  return new Promise((resolve) => {
    const yes = h("button", { type: "submit", value: "yes", class: "danger", "data-testid": "confirm-yes" }, confirmLabel);
    const no = h("button", { type: "submit", value: "no", "data-testid": "confirm-no" }, "Cancel");
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": "confirm-title" },
      h(
        "form",
        { method: "dialog" },
        h("h2", { id: "confirm-title" }, title),
        h("p", {}, text),
        h("div", { class: "buttons" }, no, yes),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "yes");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}
