// #/definitions/{ns}: the definition names of a namespace with their latest
// versions; #/definitions/{ns}/{def_id}: one version, the other versions of
// its name, its cron schedule (next fire times in the schedule's zone,
// pause/resume) and the fire ledger.

import { call, listAll, path } from "../api.js";
import { confirmAction, errorBox, h, jsonBlock, num, timeEl } from "../dom.js";

const LEDGER_PAGE = 50;

function defLink(ns, def, text) {
  return h("a", { href: `#/definitions/${encodeURIComponent(ns)}/${encodeURIComponent(def.def_id)}` }, text);
}

export async function renderDefinitions(ctx) {
  const { main, params, signal } = ctx;
  const [ns] = params;
  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Namespaces"), " / ", h("a", { href: `#/dags/${encodeURIComponent(ns)}` }, ns)),
    h("h1", {}, `Definitions in ${ns}`),
  );
  let defs;
  let truncated;
  try {
    ({ items: defs, truncated } = await listAll(path("definitions", ns), "definitions", { signal, max: 10000 }));
  } catch (err) {
    main.append(errorBox(err));
    return;
  }
  // Latest version of each name (the list is in creation order).
  const latest = new Map();
  const versions = new Map();
  for (const d of defs) {
    if (!latest.has(d.name) || latest.get(d.name).version < d.version) latest.set(d.name, d);
    versions.set(d.name, (versions.get(d.name) || 0) + 1);
  }
  if (latest.size === 0) {
    main.append(h("p", { class: "muted" }, "No definitions yet."));
    return;
  }
  main.append(
    h(
      "table",
      { class: "grid", "data-testid": "definitions" },
      h("caption", { class: "visually-hidden" }, `Definitions in ${ns}`),
      h("thead", {}, h("tr", {}, ["Name", "Latest", "Kind", "Cron", "Next fire", "Status"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        [...latest.values()]
          .sort((a, b) => (a.name < b.name ? -1 : 1))
          .map((d) =>
            h(
              "tr",
              { "data-name": d.name },
              h("th", { scope: "row" }, defLink(ns, d, d.name)),
              h("td", {}, `v${d.version}`, versions.get(d.name) > 1 ? h("span", { class: "muted" }, ` (${versions.get(d.name)} versions)`) : ""),
              h("td", {}, d.kind),
              h("td", { class: "mono" }, d.cron_spec || "—", d.cron_spec ? h("div", { class: "muted small" }, d.time_zone) : null),
              h("td", {}, d.next_fire_times && d.next_fire_times.length ? timeEl(d.next_fire_times[0]) : "—"),
              h("td", {}, d.retire_time ? h("span", { class: "muted" }, "retired ", timeEl(d.retire_time)) : "live"),
            ),
          ),
      ),
    ),
  );
  if (truncated) main.append(h("p", { class: "muted" }, "Only the first 10,000 versions are listed."));
}

export async function renderDefinition(ctx) {
  const { main, params, signal } = ctx;
  const [ns, defId] = params;
  const nsHref = encodeURIComponent(ns);
  let def;
  try {
    def = await call(path("definitions", ns, defId), { signal });
  } catch (err) {
    main.append(errorBox(err));
    return;
  }
  main.append(
    h(
      "p",
      { class: "crumbs" },
      h("a", { href: "#/" }, "Namespaces"),
      " / ",
      h("a", { href: `#/dags/${nsHref}` }, ns),
      " / ",
      h("a", { href: `#/definitions/${nsHref}` }, "Definitions"),
    ),
    h("h1", {}, `${def.name}@${def.version}`),
  );
  const notice = h("div", { role: "status", "aria-live": "polite" });
  const actions = h("div", { class: "actions" });
  main.append(actions, notice);

  const seconds = (d) => (d ? d : "—");
  main.append(
    h(
      "div",
      { class: "two-col" },
      h(
        "section",
        { "aria-labelledby": "def-h" },
        h("h2", { id: "def-h" }, "This version"),
        h(
          "dl",
          { class: "kv" },
          [
            ["Kind", def.kind],
            ["Created", timeEl(def.create_time)],
            ["Retired", def.retire_time ? timeEl(def.retire_time) : "no"],
            ["Max attempts", String(def.max_attempts)],
            ["Backoff", `${seconds(def.backoff_initial)} ×${def.backoff_multiplier} up to ${seconds(def.backoff_max)}`],
            ["Timeout", seconds(def.execution_timeout)],
            ["Priority", String(def.default_priority ?? 0)],
            ["Delay after parents", seconds(def.delay_after_parents)],
            ["Cron", def.cron_spec ? h("span", { class: "mono", "data-testid": "cron-spec" }, def.cron_spec) : "—"],
            ["Time zone", def.time_zone || "UTC"],
            ["Misfire / overlap", `${def.misfire_policy || "—"} / ${def.overlap_policy || "—"}`],
            ["Def id", h("span", { class: "mono small" }, def.def_id)],
          ].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
        ),
        h("h3", {}, "Payload template"),
        jsonBlock(def.payload_template),
      ),
      h("section", { "aria-labelledby": "versions-h" }, h("h2", { id: "versions-h" }, "Versions of ", def.name), versionsTable()),
    ),
  );

  function versionsTable() {
    const body = h("tbody");
    listAll(path("definitions", ns), "definitions", { query: { name: def.name }, signal })
      .then(({ items }) => {
        body.replaceChildren(
          ...items
            .sort((a, b) => b.version - a.version)
            .map((v) =>
              h(
                "tr",
                { class: v.def_id === def.def_id ? "current" : "", "aria-current": v.def_id === def.def_id ? "page" : null },
                h("th", { scope: "row" }, v.def_id === def.def_id ? `v${v.version} (this)` : defLink(ns, v, `v${v.version}`)),
                h("td", {}, v.kind),
                h("td", { class: "mono" }, v.cron_spec || "—"),
                h("td", {}, timeEl(v.create_time)),
                h("td", {}, v.retire_time ? "retired" : "live"),
              ),
            ),
        );
      })
      .catch((err) => {
        if (err && err.name !== "AbortError") body.replaceChildren(h("tr", {}, h("td", { colspan: 5 }, errorBox(err))));
      });
    return h(
      "table",
      { class: "grid", "data-testid": "versions" },
      h("thead", {}, h("tr", {}, ["Version", "Kind", "Cron", "Created", "Status"].map((t) => h("th", { scope: "col" }, t)))),
      body,
    );
  }

  // The schedule of the name (owned by its latest version) and its ledger.
  const schedule = h("section", { "aria-labelledby": "schedule-h", "data-testid": "schedule" });
  const ledger = h("section", { "aria-labelledby": "ledger-h", "data-testid": "ledger" });
  main.append(schedule, ledger);

  const retire = () =>
    h(
      "button",
      {
        type: "button",
        class: "danger",
        "data-testid": "retire",
        onclick: async () => {
          const ok = await confirmAction(
            `Retire ${def.name}?`,
            "Every version of the name is retired: its schedule stops at once and no new job can be made from it. Jobs already made run to their end.",
            "Retire",
          );
          if (!ok) return;
          try {
            await call(path("definitions", ns, def.def_id), { method: "DELETE" });
            notice.replaceChildren(h("p", { class: "ok" }, "Retired."));
            def = await call(path("definitions", ns, defId), { signal });
            await refresh();
          } catch (err) {
            notice.replaceChildren(errorBox(err));
          }
        },
      },
      "Retire…",
    );

  const pauseResume = (paused) =>
    h(
      "button",
      {
        type: "button",
        "data-testid": paused ? "resume" : "pause",
        onclick: async () => {
          const verb = paused ? "resume" : "pause";
          const ok = await confirmAction(
            paused ? "Resume this schedule?" : "Pause this schedule?",
            paused ? `${def.name} fires again from its next tick.` : `${def.name} does not fire while paused; its ticks are recorded as skipped.`,
            paused ? "Resume" : "Pause",
          );
          if (!ok) return;
          try {
            await call(path("schedules", ns, def.name, verb), { method: "POST", body: {} });
            notice.replaceChildren(h("p", { class: "ok" }, paused ? "Resumed." : "Paused."));
            await refresh();
          } catch (err) {
            notice.replaceChildren(errorBox(err));
          }
        },
      },
      paused ? "Resume…" : "Pause…",
    );

  async function refresh() {
    let sched = null;
    let schedErr = null;
    try {
      sched = await call(path("schedules", ns, def.name), { signal });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      schedErr = err;
    }
    actions.replaceChildren();
    if (ctx.canAct()) {
      if (sched && sched.cron_spec && !sched.retire_time) actions.append(pauseResume(sched.paused));
      if (!def.retire_time) actions.append(retire());
    }
    const zone = (sched && sched.time_zone) || def.time_zone || "UTC";
    const fires = (sched ? sched.next_fire_times : def.next_fire_times) || [];
    schedule.replaceChildren(
      h("h2", { id: "schedule-h" }, "Schedule"),
      schedErr
        ? errorBox(schedErr)
        : !sched.cron_spec
          ? h("p", { class: "muted" }, "This name has no cron schedule.")
          : h(
              "div",
              {},
              h(
                "p",
                { "data-testid": "schedule-state", "data-paused": String(Boolean(sched.paused)) },
                sched.retire_time ? "Retired: no schedule." : sched.paused ? "‖ Paused" : "▶ Active",
                ` · ${sched.cron_spec} in ${zone}, owned by v${sched.def_version}`,
                sched.pause_time ? h("span", { class: "muted" }, " · last paused ", timeEl(sched.pause_time)) : null,
              ),
              fires.length
                ? h(
                    "table",
                    { class: "grid narrow", "data-testid": "next-fires" },
                    h("caption", {}, `Next fire times`),
                    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, `In ${zone}`), h("th", { scope: "col" }, "In your time zone"))),
                    h(
                      "tbody",
                      {},
                      fires.map((t) => h("tr", { "data-time": t }, h("td", {}, timeEl(t, { zone })), h("td", {}, timeEl(t)))),
                    ),
                  )
                : h("p", { class: "muted" }, sched.paused ? "No fire times while paused." : "No upcoming fire times."),
            ),
    );
    let page;
    try {
      page = await call(path("definitions", ns, def.def_id, "fires"), { query: { page_size: LEDGER_PAGE }, signal });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      ledger.replaceChildren(h("h2", { id: "ledger-h" }, "Fire ledger"), errorBox(err));
      return;
    }
    const firesDone = page.fires || [];
    ledger.replaceChildren(
      h("h2", { id: "ledger-h" }, "Fire ledger"),
      firesDone.length === 0
        ? h("p", { class: "muted" }, "No ticks recorded yet.")
        : h(
            "table",
            { class: "grid", "data-testid": "fires" },
            h("caption", { class: "visually-hidden" }, "Fire ledger, newest first"),
            h("thead", {}, h("tr", {}, ["Tick", "Recorded", "Status", "Why", "Version", "Job"].map((t) => h("th", { scope: "col" }, t)))),
            h(
              "tbody",
              {},
              firesDone.map((f) =>
                h(
                  "tr",
                  { "data-status": f.status },
                  h("td", {}, timeEl(f.scheduled_time)),
                  h("td", {}, timeEl(f.fire_time)),
                  h("td", {}, f.status === "STATUS_FIRED" ? "✓ fired" : f.status === "STATUS_SKIPPED" ? "↷ skipped" : f.status),
                  h("td", {}, f.reason || ""),
                  h("td", {}, `v${f.def_version}`),
                  h("td", { class: "mono small" }, f.job_id || "—"),
                ),
              ),
            ),
          ),
      page.next_page_token ? h("p", { class: "muted" }, `The newest ${num(firesDone.length)} ticks.`) : "",
    );
  }
  await ctx.poll(5000, refresh);
}
