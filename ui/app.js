// The dashboard's shell: hash routes that mirror the REST paths, the token
// box, and the page lifecycle (each page gets a context whose polls and
// requests stop when the user leaves it).

import { ApiError, actionsOptIn, call, getToken, setActionsOptIn, setToken } from "./api.js";
import { h } from "./dom.js";
import { renderDag } from "./pages/dag.js";
import { renderDags } from "./pages/dags.js";
import { renderDefinition, renderDefinitions } from "./pages/definitions.js";
import { renderNamespaces } from "./pages/namespaces.js";
import { renderWorkers } from "./pages/workers.js";

// What the dashboard knows of the caller's rights. There is no "who am I"
// call: ListTokens needs an admin token, so its answer tells admin (200),
// another valid token (403), a bad or missing token (401), or a server
// with auth off (200 without any token).
export const auth = { mode: "unknown", admin: false, note: "" };

async function probeAuth() {
  const token = getToken();
  auth.note = "";
  auth.admin = false;
  try {
    await call("/tokens", { query: { page_size: 1 } });
    auth.mode = token ? "token" : "off";
    auth.admin = Boolean(token);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (err.status === 401) {
      auth.mode = token ? "bad-token" : "on";
      auth.note = err.message;
    } else if (err.status === 403) {
      auth.mode = "token";
    } else {
      auth.mode = "unknown";
      auth.note = err.message;
    }
  }
}

/** Whether to show action buttons (the server decides in the end). */
export function canAct() {
  return auth.mode === "token" || (auth.mode === "off" && actionsOptIn());
}

const ROUTES = [
  [/^$/, renderNamespaces, "Namespaces"],
  [/^namespaces$/, renderNamespaces, "Namespaces"],
  [/^dags\/([^/]+)$/, renderDags, "DAGs"],
  [/^dags\/([^/]+)\/([^/]+)$/, renderDag, "DAG"],
  [/^definitions\/([^/]+)$/, renderDefinitions, "Definitions"],
  [/^definitions\/([^/]+)\/([^/]+)$/, renderDefinition, "Definition"],
  [/^workers$/, renderWorkers, "Workers"],
  [/^workers\/([^/]+)$/, renderWorkers, "Workers"],
];

/** "#/dags/ns/id?job=x" -> {path: "dags/ns/id", params: [...], query}. */
function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [pathPart, queryPart] = raw.split("?");
  const pathText = pathPart.replace(/\/+$/, "");
  return { path: pathText, query: new URLSearchParams(queryPart || "") };
}

let current = null;

function nav() {
  const links = [
    ["#/", "Namespaces"],
    ["#/workers", "Workers"],
  ];
  return h(
    "nav",
    { "aria-label": "Main" },
    h("a", { href: "#/", class: "brand" }, "chronosched"),
    h("ul", {}, links.map(([href, text]) => h("li", {}, h("a", { href }, text)))),
  );
}

function tokenBox() {
  const input = h("input", {
    type: "password",
    id: "token-input",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "cs_…",
    value: getToken(),
  });
  const status = h("p", { id: "token-status", class: "token-status", role: "status" }, describeAuth());
  const save = h("button", { type: "submit", "data-testid": "token-save" }, "Use token");
  const clear = h(
    "button",
    {
      type: "button",
      "data-testid": "token-clear",
      onclick: async () => {
        setToken("");
        input.value = "";
        await refreshAuth();
      },
    },
    "Forget token",
  );
  const optIn = h("input", {
    type: "checkbox",
    id: "actions-opt-in",
    checked: actionsOptIn(),
    onchange: async (ev) => {
      setActionsOptIn(ev.target.checked);
      await refreshAuth();
    },
  });
  const optInRow = h(
    "p",
    { class: "opt-in", hidden: auth.mode !== "off" },
    optIn,
    h("label", { for: "actions-opt-in" }, " Show actions (this server takes calls without a token)"),
  );
  const form = h(
    "form",
    {
      class: "token-form",
      onsubmit: async (ev) => {
        ev.preventDefault();
        setToken(input.value.trim());
        await refreshAuth();
        // Out of the way once the token is taken; open while it is refused.
        const box = document.getElementById("token-box");
        if (box && auth.mode !== "bad-token") box.open = false;
      },
    },
    h("label", { for: "token-input" }, "Bearer token"),
    input,
    save,
    clear,
  );
  return h(
    "details",
    { class: "token-box", id: "token-box" },
    h("summary", {}, h("span", { id: "token-summary" }, summaryText())),
    h(
      "div",
      { class: "token-panel" },
      form,
      h("p", { class: "muted" }, "Kept in this tab only (sessionStorage), sent as an Authorization header to /api/v1."),
      optInRow,
      status,
    ),
  );
}

function summaryText() {
  switch (auth.mode) {
    case "token":
      return auth.admin ? "Token: admin" : "Token: set";
    case "bad-token":
      return "Token: refused";
    case "off":
      return canAct() ? "Auth off · actions on" : "Auth off · read-only";
    case "on":
      return "Token: none (read-only)";
    default:
      return "Token";
  }
}

function describeAuth() {
  switch (auth.mode) {
    case "token":
      return auth.admin
        ? "Admin token: every action is allowed."
        : "Token accepted. Its scope cannot be read by a client, so actions are shown; the server refuses what the token may not do.";
    case "bad-token":
      return `The server refused this token: ${auth.note}`;
    case "off":
      return "This server does not check tokens (auth off). The dashboard stays read-only unless you turn actions on.";
    case "on":
      return `This server needs a token: ${auth.note}`;
    default:
      return auth.note ? `Could not tell whether the server checks tokens: ${auth.note}` : "";
  }
}

async function refreshAuth() {
  await probeAuth();
  const box = document.getElementById("token-box");
  const open = box ? box.open : false;
  const fresh = tokenBox();
  fresh.open = open;
  if (box) box.replaceWith(fresh);
  route();
}

function route() {
  if (current) current.stop();
  const main = document.getElementById("main");
  const { path: hashPath, query } = parseHash();
  const found = ROUTES.map(([re, render, title]) => [re.exec(hashPath), render, title]).find(([m]) => m);
  main.replaceChildren();
  if (!found) {
    main.append(h("h1", {}, "Not found"), h("p", {}, "No page at ", h("code", {}, `#/${hashPath}`), ". ", h("a", { href: "#/" }, "Namespaces")));
    return;
  }
  const [match, render, title] = found;
  const params = match.slice(1).map(decodeURIComponent);
  document.title = `${[title, ...params.slice(0, 1)].join(" · ")} — chronosched`;
  current = new PageContext(main, params, query);
  const ctx = current;
  render(ctx).catch((err) => {
    if (ctx.stopped || (err && err.name === "AbortError")) return;
    main.append(h("div", { class: "error", role: "alert" }, `Error: ${err && err.message ? err.message : err}`));
  });
}

/** What a page gets: its element, route params, and polls that stop with it. */
export class PageContext {
  constructor(main, params, query) {
    this.main = main;
    this.params = params;
    this.query = query;
    this.stopped = false;
    this.controller = new AbortController();
    this.timers = new Set();
  }

  get signal() {
    return this.controller.signal;
  }

  canAct() {
    return canAct();
  }

  /** Run fn now and again `everyMs` after each run ends, until the page is left. */
  poll(everyMs, fn) {
    const tick = async () => {
      if (this.stopped) return;
      let wait = everyMs;
      try {
        const next = await fn();
        if (typeof next === "number") wait = next;
        if (next === false) return;
      } catch (err) {
        if (this.stopped || (err && err.name === "AbortError")) return;
        console.error(err);
      }
      if (this.stopped) return;
      const id = setTimeout(() => {
        this.timers.delete(id);
        tick();
      }, wait);
      this.timers.add(id);
    };
    return tick();
  }

  stop() {
    this.stopped = true;
    this.controller.abort();
    for (const id of this.timers) clearTimeout(id);
    this.timers.clear();
  }
}

async function start() {
  const header = document.getElementById("top");
  // The skip link must not touch the hash: the hash is the route.
  document.getElementById("skip").addEventListener("click", (ev) => {
    ev.preventDefault();
    document.getElementById("main").focus();
  });
  await probeAuth().catch(() => {});
  header.replaceChildren(nav(), tokenBox());
  window.addEventListener("hashchange", route);
  route();
}

start();
