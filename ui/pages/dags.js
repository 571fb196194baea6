// #/dags/{ns}: the DAGs of a namespace (GET /api/v1/dags/{ns}), filtered by
// state (?state= in the hash, so a filtered list can be shared), 50 a page.

import { call, path } from "../api.js";
import { DAG_STATES, badge, errorBox, h, progress, span, stateName, timeEl } from "../dom.js";

const PAGE_SIZE = 50;

export async function renderDags(ctx) {
  const { main, params, query, signal } = ctx;
  const [ns] = params;
  const state = query.get("state") || "";
  const nsHref = encodeURIComponent(ns);
  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Namespaces"), " / ", ns),
    h("h1", {}, `DAGs in ${ns}`),
    h(
      "p",
      { class: "links" },
      h("a", { href: `#/definitions/${nsHref}` }, "Definitions"),
      " · ",
      h("a", { href: `#/workers/${nsHref}` }, "Workers"),
    ),
  );
  const select = h(
    "select",
    {
      id: "state-filter",
      onchange: (ev) => {
        const v = ev.target.value;
        window.location.hash = `#/dags/${nsHref}${v ? `?state=${v}` : ""}`;
      },
    },
    h("option", { value: "" }, "all states"),
    DAG_STATES.map((s) => h("option", { value: s, selected: s === state }, stateName(s))),
  );
  main.append(h("div", { class: "toolbar" }, h("label", { for: "state-filter" }, "State "), select));

  const body = h("tbody");
  const status = h("p", { class: "muted", role: "status" });
  const prev = h("button", { type: "button", disabled: true }, "← Previous");
  const next = h("button", { type: "button", disabled: true }, "Next →");
  main.append(
    h(
      "table",
      { class: "grid", "data-testid": "dags" },
      h("caption", { class: "visually-hidden" }, `DAGs in ${ns}`),
      h(
        "thead",
        {},
        h("tr", {}, ["Name", "State", "Progress", "Started", "Duration"].map((t) => h("th", { scope: "col" }, t))),
      ),
      body,
    ),
    status,
    h("div", { class: "pager" }, prev, next),
  );

  // Page tokens seen so far: tokens[i] fetches page i.
  const tokens = [""];
  let page = 0;
  let nextToken = "";
  const load = async () => {
    let resp;
    try {
      resp = await call(path("dags", ns), { query: { page_size: PAGE_SIZE, page_token: tokens[page], state }, signal });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      status.replaceChildren(errorBox(err));
      return;
    }
    nextToken = resp.next_page_token || "";
    const dags = resp.dags || [];
    body.replaceChildren(
      ...dags.map((dag) => {
        const total = dag.job_count || 0;
        const done = total - (dag.unfinished_job_count || 0);
        return h(
          "tr",
          { "data-dag-id": dag.dag_id, "data-state": stateName(dag.state) },
          h(
            "th",
            { scope: "row" },
            h("a", { href: `#/dags/${nsHref}/${encodeURIComponent(dag.dag_id)}` }, dag.name || "(unnamed)"),
            h("div", { class: "muted small mono" }, dag.dag_id),
          ),
          h("td", {}, badge(dag.state)),
          h("td", {}, progress(done, total, `jobs finished of ${dag.name || dag.dag_id}`)),
          h("td", {}, timeEl(dag.start_time)),
          h("td", {}, span(dag.start_time, dag.end_time)),
        );
      }),
    );
    status.textContent = dags.length ? `Page ${page + 1}` : state ? `No ${stateName(state)} DAGs.` : "No DAGs yet.";
    prev.disabled = page === 0;
    next.disabled = !nextToken;
  };
  prev.addEventListener("click", () => {
    page = Math.max(0, page - 1);
    load();
  });
  next.addEventListener("click", () => {
    if (!nextToken) return;
    tokens[page + 1] = nextToken;
    page += 1;
    load();
  });
  await ctx.poll(3000, load);
}
