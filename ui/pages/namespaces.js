// #/ : every namespace with its DAGs by state, its READY and RUNNING jobs
// and the workers serving it. There is no count call in the API, so counts
// come from one page of up to 1000 items each ("1,000+" beyond).

import { call, listAll, path } from "../api.js";
import { DAG_STATES, badge, errorBox, h, num } from "../dom.js";

const CAP = 1000;

function capped(page, field) {
  const n = (page[field] || []).length;
  return page.next_page_token ? `${num(n)}+` : num(n);
}

async function summary(ns, signal) {
  const q = (extra) => ({ query: { page_size: CAP, ...extra }, signal });
  const [dags, ready, running, workers] = await Promise.all([
    call(path("dags", ns), q({})),
    call(path("jobs", ns), q({ state: "STATE_READY" })),
    call(path("jobs", ns), q({ state: "STATE_RUNNING" })),
    call(path("workers", ns), q({})),
  ]);
  const byState = new Map();
  for (const dag of dags.dags || []) byState.set(dag.state, (byState.get(dag.state) || 0) + 1);
  const more = dags.next_page_token ? "+" : "";
  return {
    dagStates: DAG_STATES.filter((s) => byState.has(s)).map((s) => [s, `${num(byState.get(s))}${more}`]),
    dagTotal: capped(dags, "dags"),
    ready: capped(ready, "jobs"),
    running: capped(running, "jobs"),
    workers: capped(workers, "workers"),
  };
}

export async function renderNamespaces(ctx) {
  const { main, signal } = ctx;
  main.append(h("h1", {}, "Namespaces"));
  const body = h("tbody");
  const table = h(
    "table",
    { class: "grid", "data-testid": "namespaces" },
    h("caption", { class: "visually-hidden" }, "Namespaces"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Namespace", "DAGs by state", "Jobs ready", "Jobs running", "Workers", "Links"].map((t) => h("th", { scope: "col" }, t)),
      ),
    ),
    body,
  );
  main.append(table);
  let namespaces;
  try {
    ({ items: namespaces } = await listAll("/namespaces", "namespaces", { signal }));
  } catch (err) {
    main.append(errorBox(err));
    return;
  }
  if (namespaces.length === 0) {
    main.append(h("p", { class: "muted" }, "No namespaces yet (POST /api/v1/namespaces makes one)."));
  }
  const rows = new Map();
  for (const ns of namespaces) {
    const id = ns.namespace_id;
    const cells = {
      dags: h("td", { class: "muted", "data-cell": "dags" }, "…"),
      ready: h("td", { class: "num", "data-cell": "ready" }, "…"),
      running: h("td", { class: "num", "data-cell": "running" }, "…"),
      workers: h("td", { class: "num", "data-cell": "workers" }, "…"),
    };
    rows.set(id, cells);
    body.append(
      h(
        "tr",
        { "data-namespace": id },
        h(
          "th",
          { scope: "row" },
          h("a", { href: `#/dags/${encodeURIComponent(id)}` }, id),
          ns.description ? h("div", { class: "muted small" }, ns.description) : null,
        ),
        cells.dags,
        cells.ready,
        cells.running,
        cells.workers,
        h(
          "td",
          { class: "links" },
          h("a", { href: `#/dags/${encodeURIComponent(id)}` }, "DAGs"),
          " · ",
          h("a", { href: `#/definitions/${encodeURIComponent(id)}` }, "Definitions"),
          " · ",
          h("a", { href: `#/workers/${encodeURIComponent(id)}` }, "Workers"),
        ),
      ),
    );
  }
  // Refreshed every 5 s (a calm overview, not a live view), or slower when
  // there are so many namespaces that reading them takes longer; at most
  // six namespaces are read at a time.
  await ctx.poll(5000, async () => {
    const began = performance.now();
    const queue = [...namespaces];
    const worker = async () => {
      for (let ns = queue.shift(); ns; ns = queue.shift()) await refresh(ns);
    };
    await Promise.all(Array.from({ length: 6 }, worker));
    return Math.max(5000, 2 * (performance.now() - began));
  });

  async function refresh(ns) {
    const cells = rows.get(ns.namespace_id);
    try {
      const s = await summary(ns.namespace_id, signal);
      cells.dags.className = "";
      cells.dags.replaceChildren(
        s.dagStates.length
          ? h("span", { class: "chips" }, s.dagStates.map(([state, n]) => h("span", { class: "chip" }, badge(state), " ", n)))
          : h("span", { class: "muted" }, "none"),
      );
      cells.ready.textContent = s.ready;
      cells.running.textContent = s.running;
      cells.workers.textContent = s.workers;
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      cells.dags.replaceChildren(errorBox(err));
    }
  }
}
