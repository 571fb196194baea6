// #/workers and #/workers/{ns}: the connected workers (GET /api/v1/workers),
// with their kinds, slots and jobs in flight; refreshed every 2 s.

import { listAll, path } from "../api.js";
import { errorBox, h, num, timeEl } from "../dom.js";

export async function renderWorkers(ctx) {
  const { main, params, signal } = ctx;
  const [ns] = params;
  main.append(
    ns
      ? h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Namespaces"), " / ", h("a", { href: `#/dags/${encodeURIComponent(ns)}` }, ns))
      : h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Namespaces")),
    h("h1", {}, ns ? `Workers serving ${ns}` : "Connected workers"),
  );
  const body = h("tbody");
  const status = h("div", { role: "status" });
  main.append(
    h(
      "table",
      { class: "grid", "data-testid": "workers" },
      h("caption", { class: "visually-hidden" }, "Connected workers"),
      h(
        "thead",
        {},
        h("tr", {}, ["Worker", "Namespaces", "Kinds", "Slots", "In flight", "Connected", "Last heard"].map((t) => h("th", { scope: "col" }, t))),
      ),
      body,
    ),
    status,
  );
  await ctx.poll(2000, async () => {
    let workers;
    try {
      ({ items: workers } = await listAll(ns ? path("workers", ns) : "/workers", "workers", { signal }));
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      status.replaceChildren(errorBox(err));
      return;
    }
    status.replaceChildren(workers.length ? h("span", { class: "muted" }, `${num(workers.length)} connected`) : h("p", { class: "muted" }, "No worker is connected."));
    body.replaceChildren(
      ...workers.map((w) =>
        h(
          "tr",
          { "data-worker-id": w.worker_id },
          h("th", { scope: "row" }, w.worker_id, h("div", { class: "muted small mono" }, `stream ${w.stream_id} · replica ${w.replica_id}`)),
          h("td", {}, w.all_namespaces ? "all" : (w.namespaces || []).join(", ")),
          h("td", {}, (w.kinds || []).join(", ")),
          h("td", { class: "num" }, num(w.slots)),
          h(
            "td",
            { class: "num" },
            h("meter", { min: 0, max: w.slots || 1, value: w.jobs_in_flight || 0, "aria-label": "slots in use" }),
            ` ${num(w.jobs_in_flight)}`,
          ),
          h("td", {}, timeEl(w.connect_time)),
          h("td", {}, timeEl(w.heartbeat_time)),
        ),
      ),
    );
  });
}
