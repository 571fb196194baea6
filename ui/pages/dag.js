// #/dags/{ns}/{dag_id}: the DAG drawn in layers (ui/layout.js), each job
// coloured and labelled with its state, polled every second while the DAG
// runs; a timeline of job runs; a details panel for the selected job.

import { call, listAll, path } from "../api.js";
import {
  JOB_STATES,
  TERMINAL,
  badge,
  confirmAction,
  errorBox,
  h,
  jsonBlock,
  num,
  progress,
  span,
  stateClass,
  stateIcon,
  stateName,
  svg,
  timeEl,
} from "../dom.js";
import { layoutDag } from "../layout.js";

const POLL_MS = 1000;
// Lists are read 1000 at a time, the API's largest page.
const PAGE = 1000;
// Wider layers become one summary node.
const MAX_LAYER_WIDTH = 24;
// Rows of the timeline; a bigger DAG shows its earliest-started runs.
const TIMELINE_ROWS = 200;
// A summary node's details list this many of its jobs.
const SUMMARY_LIST = 100;

const REASONS = {
  REASON_DAG_NOT_STARTED: "DAG not started",
  REASON_PARENTS: "Waiting for parents",
  REASON_NOT_DUE: "Not due yet",
  REASON_NO_WORKER: "No worker for its kind",
  REASON_WORKERS_FULL: "Workers busy",
  REASON_DISPATCHING: "Being dispatched",
};

function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export async function renderDag(ctx) {
  const { main, params, signal } = ctx;
  const [ns, dagId] = params;
  const nsHref = encodeURIComponent(ns);
  const t0 = performance.now();

  const title = h("h1", {}, "DAG");
  const facts = h("div", { class: "facts", "data-testid": "dag-facts" });
  const actions = h("div", { class: "actions" });
  const notice = h("div", { class: "notice", role: "status", "aria-live": "polite" });
  main.append(
    h(
      "p",
      { class: "crumbs" },
      h("a", { href: "#/" }, "Namespaces"),
      " / ",
      h("a", { href: `#/dags/${nsHref}` }, ns),
      " / ",
      h("span", { class: "mono" }, dagId),
    ),
    title,
    facts,
    actions,
    notice,
  );

  const graph = svg("svg", {
    id: "dag-graph",
    class: "graph",
    role: "group",
    "aria-label": "DAG graph: parents above children. Tab to a job, Enter for its details.",
    tabindex: "0",
  });
  const zoom = zoomControls(graph);
  const details = h(
    "aside",
    { class: "details", id: "job-details", "aria-labelledby": "details-title" },
    h("h2", { id: "details-title" }, "Details"),
    h("p", { class: "muted" }, "Select a job (click it, or Tab to it and press Enter)."),
  );
  const legend = h(
    "ul",
    { class: "legend", "aria-label": "Job states" },
    JOB_STATES.map((s) => h("li", {}, badge(s))),
  );
  const timeline = h("div", { class: "timeline", id: "dag-timeline" });
  main.append(
    h(
      "div",
      { class: "dag-layout" },
      h("section", { class: "graph-wrap", "aria-label": "Graph" }, zoom.bar, graph, legend),
      details,
    ),
    h("h2", {}, "Timeline"),
    timeline,
  );

  // --- state ---------------------------------------------------------------
  let dag = null;
  let jobs = new Map();
  let edges = [];
  let layout = null;
  const nodeEls = new Map();
  let selected = ctx.query.get("job") || "";
  let selectedSummary = "";
  const defNames = new Map();

  const fetchJobs = async () =>
    (await listAll(path("dags", ns, dagId, "jobs"), "jobs", { pageSize: PAGE, signal })).items;
  const fetchEdges = async () =>
    (await listAll(path("dags", ns, dagId, "dependencies"), "dependencies", { pageSize: PAGE, signal })).items;

  try {
    const [d, js, es] = await Promise.all([
      call(path("dags", ns, dagId), { signal }),
      fetchJobs(),
      fetchEdges(),
    ]);
    dag = d;
    jobs = new Map(js.map((j) => [j.job_id, j]));
    edges = es;
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    main.append(errorBox(err));
    return;
  }
  const fetched = performance.now();
  drawGraph();
  showFacts();
  showActions();
  drawTimeline();
  const drawn = performance.now();
  graph.dataset.drawn = "true";
  graph.dataset.loadMs = String(Math.round(drawn - t0));
  graph.dataset.fetchMs = String(Math.round(fetched - t0));
  if (selected) await showDetails();

  // --- drawing -------------------------------------------------------------

  function drawGraph() {
    layout = layoutDag([...jobs.values()], edges, { maxLayerWidth: MAX_LAYER_WIDTH });
    nodeEls.clear();
    const defs = svg(
      "defs",
      {},
      svg(
        "marker",
        { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto" },
        svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }),
      ),
    );
    const at = new Map(layout.nodes.map((node) => [node.id, node]));
    const edgeLayer = svg("g", { class: "edges" });
    for (const edge of layout.edges) {
      const a = at.get(edge.from);
      const b = at.get(edge.to);
      const x1 = a.x + a.w / 2;
      const y1 = a.y + a.h;
      const x2 = b.x + b.w / 2;
      const y2 = b.y;
      // Vertical tangents at both ends; straight through the layers skipped.
      let d = `M${x1},${y1}`;
      let cx = x1;
      let cy = y1;
      const curveTo = (x, y) => {
        const mid = (cy + y) / 2;
        d += ` C${cx},${mid} ${x},${mid} ${x},${y}`;
        cx = x;
        cy = y;
      };
      for (const p of edge.via) {
        curveTo(p.x, p.top);
        d += ` L${p.x},${p.bottom}`;
        cy = p.bottom;
      }
      curveTo(x2, y2 - 2);
      edgeLayer.append(
        svg(
          "path",
          {
            class: "edge",
            d,
            "data-from": edge.from,
            "data-to": edge.to,
            "data-count": edge.count,
            "marker-end": "url(#arrow)",
          },
          edge.count > 1 ? svg("title", {}, `${num(edge.count)} dependencies`) : null,
        ),
      );
    }
    const nodeLayer = svg("g", { class: "nodes" });
    for (const node of layout.nodes) {
      const el = node.kind === "job" ? jobNode(node) : summaryNode(node);
      nodeEls.set(node.id, el);
      nodeLayer.append(el);
    }
    graph.replaceChildren(defs, edgeLayer, nodeLayer);
    // As tall as a small graph needs; a big one gets 32rem and pans.
    graph.style.height = `${Math.round(Math.min(512, Math.max(160, layout.height + 16)))}px`;
    graph.dataset.nodes = String(layout.nodes.length);
    graph.dataset.edges = String(layout.edges.length);
    zoom.setContent(layout.width, layout.height);
    refreshStates();
    markSelected();
  }

  function jobNode(node) {
    const job = node.job;
    const stateText = svg("text", { x: 30, y: 36, class: "node-state" });
    const icon = svg("text", { x: 12, y: 36, class: "node-icon", "aria-hidden": "true" });
    const tip = svg("title", {}, job.key);
    const g = svg(
      "g",
      {
        class: "node",
        transform: `translate(${node.x},${node.y})`,
        tabindex: "0",
        role: "button",
        "data-node-id": node.id,
        "data-job-id": job.job_id,
        "data-key": job.key,
        "data-layer": node.layer,
        "data-y": Math.round(node.y),
      },
      tip,
      svg("rect", { width: node.w, height: node.h, rx: 6, class: "node-box" }),
      svg("text", { x: 12, y: 18, class: "node-key" }, truncate(job.key, 20)),
      icon,
      stateText,
    );
    g.update = (j) => {
      const st = stateName(j.state);
      g.setAttribute("class", `node ${stateClass(j.state)}${j.job_id === selected ? " selected" : ""}`);
      g.dataset.state = st;
      g.setAttribute("aria-label", `${j.key}: ${st}${j.attempt > 1 ? `, attempt ${j.attempt} of ${j.max_attempts}` : ""}`);
      icon.textContent = stateIcon(j.state);
      // Lists carry Job.waiting too: the reason on hover, without a click.
      tip.textContent = j.waiting && j.waiting.message ? `${j.key}: ${st}, ${j.waiting.message}` : `${j.key}: ${st}`;
      stateText.textContent = j.attempt > 1 ? `${st} · try ${j.attempt}/${j.max_attempts}` : st;
    };
    return g;
  }

  function summaryNode(node) {
    const ids = node.members.map((j) => j.job_id);
    const bar = svg("g", { class: "summary-bar" });
    const line1 = svg("text", { x: 12, y: 18, class: "node-key" });
    const line2 = svg("text", { x: 12, y: 36, class: "node-state" });
    const g = svg(
      "g",
      {
        class: "node summary",
        transform: `translate(${node.x},${node.y})`,
        tabindex: "0",
        role: "button",
        "data-node-id": node.id,
        "data-summary": "true",
        "data-layer": node.layer,
        "data-count": ids.length,
        "data-y": Math.round(node.y),
      },
      svg("rect", { width: node.w, height: node.h, rx: 6, class: "node-box" }),
      line1,
      line2,
      bar,
    );
    g.memberIds = ids;
    g.update = () => {
      const counts = countStates(ids);
      const parts = JOB_STATES.filter((s) => counts[s]).map((s) => `${num(counts[s])} ${stateName(s)}`);
      const text = `${num(ids.length)} jobs: ${parts.join(", ")}`;
      line1.textContent = `${num(ids.length)} jobs (layer ${node.layer + 1})`;
      line2.textContent = truncate(
        JOB_STATES.filter((s) => counts[s]).map((s) => `${stateIcon(s)} ${num(counts[s])}`).join("  "),
        44,
      );
      g.setAttribute("aria-label", text);
      g.dataset.states = JSON.stringify(Object.fromEntries(JOB_STATES.filter((s) => counts[s]).map((s) => [stateName(s), counts[s]])));
      g.dataset.state = "SUMMARY";
      g.setAttribute("class", `node summary${node.id === selectedSummary ? " selected" : ""}`);
      let x = 12;
      const width = node.w - 24;
      bar.replaceChildren(
        ...JOB_STATES.filter((s) => counts[s]).map((s) => {
          const w = (width * counts[s]) / ids.length;
          const r = svg("rect", { x, y: node.h - 14, width: Math.max(w, 1), height: 8, class: `seg ${stateClass(s)}` });
          x += w;
          return r;
        }),
      );
      const title = g.querySelector("title") || svg("title");
      title.textContent = text;
      g.prepend(title);
    };
    return g;
  }

  function countStates(ids) {
    const counts = {};
    for (const id of ids) {
      const j = jobs.get(id);
      if (j) counts[j.state] = (counts[j.state] || 0) + 1;
    }
    return counts;
  }

  function refreshStates() {
    for (const [id, el] of nodeEls) {
      if (el.memberIds) el.update();
      else if (jobs.has(id)) el.update(jobs.get(id));
    }
  }

  function markSelected() {
    for (const [id, el] of nodeEls) el.classList.toggle("selected", id === selected || id === selectedSummary);
  }

  function showFacts() {
    const total = dag.job_count || 0;
    const done = total - (dag.unfinished_job_count || 0);
    title.textContent = dag.name || "(unnamed DAG)";
    facts.dataset.state = stateName(dag.state);
    facts.replaceChildren(
      h(
        "dl",
        { class: "inline" },
        h("dt", {}, "State"),
        h("dd", { "data-testid": "dag-state" }, badge(dag.state)),
        h("dt", {}, "Finished"),
        h("dd", {}, progress(done, total, "jobs finished")),
        h("dt", {}, "Started"),
        h("dd", {}, timeEl(dag.start_time)),
        h("dt", {}, "Duration"),
        h("dd", {}, span(dag.start_time, dag.end_time)),
        h("dt", {}, "Graph"),
        h(
          "dd",
          {},
          `${num(layout.layers)} layers`,
          layout.nodes.some((n) => n.kind === "summary") ? ` · layers over ${MAX_LAYER_WIDTH} jobs summarised` : "",
        ),
      ),
    );
  }

  function showActions() {
    actions.replaceChildren();
    if (!ctx.canAct() || TERMINAL.has(dag.state)) return;
    actions.append(
      h(
        "button",
        {
          type: "button",
          class: "danger",
          "data-testid": "cancel-dag",
          onclick: async () => {
            const ok = await confirmAction(
              "Cancel this DAG?",
              `${dag.name || dagId}: its unfinished jobs are cancelled; finished ones keep their state.`,
              "Cancel DAG",
            );
            if (!ok) return;
            await act(() => call(path("dags", ns, dagId, "cancel"), { method: "POST", body: {} }), "DAG cancelled.");
          },
        },
        "Cancel DAG…",
      ),
    );
  }

  async function act(fn, done) {
    notice.replaceChildren();
    try {
      await fn();
      notice.replaceChildren(h("p", { class: "ok" }, done));
      await update(true);
    } catch (err) {
      notice.replaceChildren(errorBox(err));
    }
  }

  function drawTimeline() {
    const runs = [...jobs.values()].filter((j) => j.start_time).sort((a, b) => (a.start_time < b.start_time ? -1 : 1));
    if (runs.length === 0) {
      timeline.replaceChildren(h("p", { class: "muted" }, "No job has run on a worker yet."));
      return;
    }
    const shown = runs.slice(0, TIMELINE_ROWS);
    const now = Date.now();
    const start = Date.parse(shown[0].start_time);
    const end = Math.max(...shown.map((j) => (j.end_time ? Date.parse(j.end_time) : now)), start + 1000);
    const width = Math.max(timeline.clientWidth || 900, 400);
    const labelW = 190;
    const rowH = 18;
    const scale = (t) => labelW + ((width - labelW - 10) * (t - start)) / (end - start);
    const rows = shown.map((j, i) => {
      const x1 = scale(Date.parse(j.start_time));
      const x2 = scale(j.end_time ? Date.parse(j.end_time) : now);
      const st = stateName(j.state);
      const label = `${j.key}${j.attempt > 1 ? ` (attempt ${j.attempt}/${j.max_attempts})` : ""}`;
      return svg(
        "g",
        { class: `run ${stateClass(j.state)}`, "data-job-id": j.job_id, "data-state": st, transform: `translate(0,${i * rowH})` },
        svg("title", {}, `${label}: ${st}, ${span(j.start_time, j.end_time)}`),
        svg("text", { x: 0, y: 13, class: "run-label" }, truncate(label, 26)),
        svg("rect", { x: x1, y: 3, width: Math.max(x2 - x1, 2), height: rowH - 6, rx: 2, class: `bar ${j.attempt > 1 ? "retried" : ""}` }),
      );
    });
    const axis = svg(
      "g",
      { class: "axis", transform: `translate(0,${shown.length * rowH + 4})` },
      svg("text", { x: labelW, y: 12 }, new Date(start).toLocaleTimeString()),
      svg("text", { x: width - 10, y: 12, "text-anchor": "end" }, `${new Date(end).toLocaleTimeString()} (${((end - start) / 1000).toFixed(1)}s)`),
    );
    timeline.replaceChildren(
      svg(
        "svg",
        { width, height: shown.length * rowH + 22, class: "timeline-svg", role: "img", "aria-label": `Start and end of ${shown.length} job runs` },
        ...rows,
        axis,
      ),
      runs.length > shown.length
        ? h("p", { class: "muted" }, `The first ${num(shown.length)} of ${num(runs.length)} started jobs. Attempts before the current one are counted, not drawn: the API keeps each job's current attempt.`)
        : h("p", { class: "muted small" }, "One bar per job: its current attempt's start to its end (or now). A retried job says which attempt it is on."),
    );
  }

  // --- selection and details ------------------------------------------------

  function select(nodeId) {
    const el = nodeEls.get(nodeId);
    if (el && el.memberIds) {
      selectedSummary = nodeId;
      selected = "";
    } else {
      selected = nodeId;
      selectedSummary = "";
    }
    const q = selected ? `?job=${encodeURIComponent(selected)}` : "";
    history.replaceState(null, "", `#/dags/${nsHref}/${encodeURIComponent(dagId)}${q}`);
    markSelected();
    showDetails();
  }

  graph.addEventListener("click", (ev) => {
    const g = ev.target.closest("g.node");
    if (g && !zoom.dragged()) select(g.dataset.nodeId);
  });
  graph.addEventListener("keydown", (ev) => {
    const g = ev.target.closest && ev.target.closest("g.node");
    if (g && (ev.key === "Enter" || ev.key === " ")) {
      ev.preventDefault();
      select(g.dataset.nodeId);
    }
  });
  graph.addEventListener("focusin", (ev) => {
    const g = ev.target.closest && ev.target.closest("g.node");
    if (g) {
      const node = layout.nodes.find((n) => n.id === g.dataset.nodeId);
      if (node) zoom.reveal(node);
    }
  });

  let detailsFor = "";
  let detailsState = "";
  const detailsData = h("div", { class: "details-data" });
  const detailsActions = h("div", { class: "details-actions" });

  async function showDetails() {
    if (selectedSummary) {
      detailsFor = "";
      const el = nodeEls.get(selectedSummary);
      const members = el.memberIds.map((id) => jobs.get(id)).filter(Boolean);
      // The jobs worth a look first: running, ready, failed, then the rest.
      const order = ["STATE_RUNNING", "STATE_READY", "STATE_FAILED", ...JOB_STATES];
      const byState = [...new Set(order)].map((s) => [s, members.filter((j) => j.state === s)]).filter(([, list]) => list.length);
      const listed = [];
      for (const [, list] of byState) listed.push(...list);
      details.replaceChildren(
        h("h2", { id: "details-title" }, `${num(members.length)} jobs in layer ${Number(el.dataset.layer) + 1}`),
        h("ul", { class: "chips" }, byState.map(([s, list]) => h("li", { class: "chip" }, badge(s), ` ${num(list.length)}`))),
        h(
          "ul",
          { class: "member-list" },
          listed.slice(0, SUMMARY_LIST).map((j) =>
            h("li", {}, h("button", { type: "button", class: "link", onclick: () => selectMember(j.job_id) }, `${stateIcon(j.state)} ${j.key}`), " ", h("span", { class: "muted" }, stateName(j.state))),
          ),
        ),
        listed.length > SUMMARY_LIST ? h("p", { class: "muted" }, `… and ${num(listed.length - SUMMARY_LIST)} more.`) : "",
      );
      return;
    }
    if (!selected) return;
    if (detailsFor !== selected) {
      detailsFor = selected;
      detailsState = "";
      details.replaceChildren(h("h2", { id: "details-title" }, "Job"), detailsData, detailsActions);
      detailsData.replaceChildren(h("p", { class: "muted" }, "Loading…"));
      detailsActions.replaceChildren();
    }
    const id = selected;
    let job;
    try {
      job = await call(path("jobs", ns, id), { signal });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      if (id === selected) detailsData.replaceChildren(errorBox(err));
      return;
    }
    if (id !== selected) return;
    jobs.set(job.job_id, { ...jobs.get(job.job_id), ...job });
    const el = nodeEls.get(job.job_id);
    if (el) el.update(job);
    let defName = defNames.get(job.def_id);
    if (defName === undefined) {
      try {
        defName = (await call(path("definitions", ns, job.def_id), { signal })).name || "";
      } catch {
        defName = "";
      }
      defNames.set(job.def_id, defName);
    }
    renderJob(job, defName);
    if (detailsState !== job.state) {
      detailsState = job.state;
      renderJobActions(job);
    }
  }

  function selectMember(jobId) {
    selectedSummary = "";
    selected = jobId;
    markSelected();
    history.replaceState(null, "", `#/dags/${nsHref}/${encodeURIComponent(dagId)}?job=${encodeURIComponent(jobId)}`);
    showDetails();
  }

  function renderJob(job, defName) {
    const w = job.waiting;
    const rows = [
      ["Key", h("span", { "data-testid": "job-key" }, job.key)],
      ["State", h("span", { "data-testid": "job-state" }, badge(job.state))],
      [
        "Definition",
        h(
          "a",
          { href: `#/definitions/${nsHref}/${encodeURIComponent(job.def_id)}`, "data-testid": "job-definition" },
          `${defName || job.def_id}@${job.def_version}`,
        ),
      ],
      ["Kind", job.kind],
      ["Attempt", h("span", { "data-testid": "job-attempt" }, `${job.attempt}/${job.max_attempts}`)],
      ["Priority", String(job.priority ?? 0)],
      ["Worker", job.worker_id || "—"],
      ["Created", timeEl(job.create_time)],
      ["Due", timeEl(job.due_time)],
      ["Started", timeEl(job.start_time)],
      ["Ended", timeEl(job.end_time)],
      ["Lease until", timeEl(job.lease_expire_time)],
      ["Updated", timeEl(job.update_time)],
      ["Job id", h("span", { class: "mono small" }, job.job_id)],
    ];
    const waiting =
      w && w.reason && w.reason !== "REASON_UNSPECIFIED"
        ? h(
            "section",
            { class: "waiting", "data-testid": "waiting", "data-reason": w.reason, "aria-label": "Why it waits" },
            h("h3", {}, "Why it waits: ", h("span", { "data-testid": "waiting-reason" }, REASONS[w.reason] || w.reason)),
            h("p", { "data-testid": "waiting-message" }, w.message || ""),
            w.parents && w.parents.length
              ? h(
                  "ul",
                  {},
                  w.parents.map((p) =>
                    h("li", {}, h("button", { type: "button", class: "link", onclick: () => selectMember(p.job_id) }, p.key), " ", badge(p.state)),
                  ),
                )
              : null,
            w.reason === "REASON_PARENTS" && w.unfinished_parents > (w.parents || []).length
              ? h("p", { class: "muted" }, `${num(w.unfinished_parents)} parents unfinished in all.`)
              : null,
            w.due_time ? h("p", {}, "Not before ", timeEl(w.due_time), w.retry_after_attempt ? ` (backing off after attempt ${w.retry_after_attempt})` : "") : null,
            w.slots_total ? h("p", {}, `Slots in use: ${num(w.slots_in_use)}/${num(w.slots_total)} on workers for kind ${w.kind || job.kind}`) : null,
          )
        : job.state === "STATE_PENDING" || job.state === "STATE_READY"
          ? h("p", { class: "muted", "data-testid": "waiting-none" }, "The server gave no waiting explanation.")
          : null;
    detailsData.replaceChildren(
      ...[
        waiting,
        h("dl", { class: "kv" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
        job.error ? h("section", {}, h("h3", {}, "Error"), h("pre", { class: "json error-text", "data-testid": "job-error" }, job.error)) : null,
        job.result && Object.keys(job.result).length
          ? h("section", {}, h("h3", {}, "Result"), h("div", { "data-testid": "job-result" }, jsonBlock(job.result)))
          : null,
        h("section", {}, h("h3", {}, "Payload (merged)"), jsonBlock(job.payload)),
      ].filter(Boolean),
    );
  }

  function renderJobActions(job) {
    detailsActions.replaceChildren();
    if (!ctx.canAct() || !(job.state === "STATE_READY" || job.state === "STATE_RUNNING")) return;
    const result = h("textarea", { id: "complete-result", rows: 2, spellcheck: "false" }, "{}");
    const error = h("input", { id: "fail-error", type: "text", value: "failed from the dashboard" });
    const final = h("input", { id: "fail-final", type: "checkbox" });
    const status = h("div", { role: "status" });
    const complete = async () => {
      let parsed;
      try {
        parsed = JSON.parse(result.value || "{}");
      } catch (err) {
        status.replaceChildren(errorBox(new Error(`the result is not JSON: ${err.message}`)));
        return;
      }
      if (!(await confirmAction("Mark this job as succeeded?", `${job.key}: records a success for attempt ${job.attempt}.`, "Complete job"))) return;
      try {
        await call(path("jobs", ns, job.job_id, "complete"), { method: "POST", body: { result: parsed, attempt: job.attempt } });
        // On the page, not in the panel: the panel's actions go once the job is done.
        notice.replaceChildren(h("p", { class: "ok" }, `${job.key}: success recorded.`));
        await update(true);
      } catch (err) {
        status.replaceChildren(errorBox(err));
      }
    };
    const fail = async () => {
      const text = final.checked ? "for good (no retry)" : "(retried if attempts are left)";
      if (!(await confirmAction("Mark this job as failed?", `${job.key}: records a failure of attempt ${job.attempt} ${text}.`, "Fail job"))) return;
      try {
        await call(path("jobs", ns, job.job_id, "fail"), {
          method: "POST",
          body: { error: error.value, attempt: job.attempt, non_retryable: final.checked },
        });
        notice.replaceChildren(h("p", { class: "ok" }, `${job.key}: failure recorded.`));
        await update(true);
      } catch (err) {
        status.replaceChildren(errorBox(err));
      }
    };
    detailsActions.append(
      h("h3", {}, "Record an outcome"),
      h("label", { for: "complete-result" }, "Result (JSON)"),
      result,
      h("button", { type: "button", "data-testid": "complete-job", onclick: complete }, "Complete…"),
      h("label", { for: "fail-error" }, "Error"),
      error,
      h("span", {}, final, h("label", { for: "fail-final" }, " no retry")),
      h("button", { type: "button", class: "danger", "data-testid": "fail-job", onclick: fail }, "Fail…"),
      status,
    );
  }

  // --- live updates -----------------------------------------------------------

  let lastPollMs = 0;
  async function update(force) {
    const began = performance.now();
    const d = await call(path("dags", ns, dagId), { signal });
    const changed = force || !TERMINAL.has(d.state) || d.update_time !== dag.update_time;
    const wasTerminal = TERMINAL.has(dag.state);
    dag = d;
    if (changed) {
      const js = await fetchJobs();
      const topologyChanged = js.length !== jobs.size || js.some((j) => !jobs.has(j.job_id));
      jobs = new Map(js.map((j) => [j.job_id, j]));
      if (topologyChanged) {
        edges = await fetchEdges();
        drawGraph();
      } else {
        refreshStates();
      }
      drawTimeline();
    }
    showFacts();
    if (TERMINAL.has(dag.state) !== wasTerminal || force) showActions();
    if (selected || selectedSummary) await showDetails();
    lastPollMs = performance.now() - began;
  }

  // A read starts every second while the DAG can change; a big DAG whose
  // pages take more than half a second to read is read no more often than
  // every twice its read time, so the tab and the server stay calm.
  await ctx.poll(POLL_MS, async () => {
    if (performance.now() - t0 < POLL_MS / 2) return POLL_MS;
    await update(false);
    graph.dataset.polls = String(Number(graph.dataset.polls || 0) + 1);
    if (TERMINAL.has(dag.state)) return 5000;
    return lastPollMs > POLL_MS / 2 ? lastPollMs : POLL_MS - lastPollMs;
  });
}

/** Pan (drag, arrow keys) and zoom (wheel, buttons) by the SVG's viewBox. */
function zoomControls(graph) {
  let content = { w: 1, h: 1 };
  let view = { x: 0, y: 0, w: 1, h: 1 };
  let moved = false;
  const apply = () => graph.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
  const size = () => ({ w: graph.clientWidth || 800, h: graph.clientHeight || 500 });
  const fit = () => {
    const { w, h: hh } = size();
    // Never blow small graphs up; shrink big ones to fit, but not below
    // what stays readable (then pan and zoom).
    let scale = Math.min(1, w / content.w, hh / content.h);
    scale = Math.max(scale, Math.min(1, w / content.w, 0.35));
    view = { w: w / scale, h: hh / scale, x: (content.w - w / scale) / 2, y: 0 };
    apply();
  };
  const zoomBy = (factor, cx = view.x + view.w / 2, cy = view.y + view.h / 2) => {
    const w = Math.min(Math.max(view.w * factor, 100), Math.max(content.w, content.h) * 4);
    const f = w / view.w;
    view = { x: cx - (cx - view.x) * f, y: cy - (cy - view.y) * f, w, h: view.h * f };
    apply();
  };
  const pan = (dx, dy) => {
    view.x += dx * view.w;
    view.y += dy * view.h;
    apply();
  };
  const button = (label, text, fn) => h("button", { type: "button", "aria-label": label, title: label, onclick: fn }, text);
  const bar = h(
    "div",
    { class: "zoom-bar", role: "toolbar", "aria-label": "Zoom" },
    button("Zoom in", "+", () => zoomBy(1 / 1.25)),
    button("Zoom out", "−", () => zoomBy(1.25)),
    button("Fit the graph", "Fit", fit),
    h("span", { class: "muted small" }, "Drag to pan, wheel to zoom; arrow keys pan when the graph has focus."),
  );
  graph.addEventListener(
    "wheel",
    (ev) => {
      ev.preventDefault();
      const rect = graph.getBoundingClientRect();
      const cx = view.x + ((ev.clientX - rect.left) / rect.width) * view.w;
      const cy = view.y + ((ev.clientY - rect.top) / rect.height) * view.h;
      zoomBy(ev.deltaY > 0 ? 1.15 : 1 / 1.15, cx, cy);
    },
    { passive: false },
  );
  let drag = null;
  graph.addEventListener("pointerdown", (ev) => {
    drag = { x: ev.clientX, y: ev.clientY, view: { ...view } };
    moved = false;
  });
  graph.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const dx = ev.clientX - drag.x;
    const dy = ev.clientY - drag.y;
    if (!moved && Math.hypot(dx, dy) < 4) return;
    if (!moved) graph.setPointerCapture(ev.pointerId);
    moved = true;
    const rect = graph.getBoundingClientRect();
    view.x = drag.view.x - (dx / rect.width) * view.w;
    view.y = drag.view.y - (dy / rect.height) * view.h;
    apply();
  });
  const end = () => {
    drag = null;
  };
  graph.addEventListener("pointerup", end);
  graph.addEventListener("pointercancel", end);
  graph.addEventListener("keydown", (ev) => {
    if (ev.target !== graph) return;
    const step = { ArrowLeft: [-0.1, 0], ArrowRight: [0.1, 0], ArrowUp: [0, -0.1], ArrowDown: [0, 0.1] }[ev.key];
    if (step) {
      ev.preventDefault();
      pan(...step);
    } else if (ev.key === "+" || ev.key === "=") zoomBy(1 / 1.25);
    else if (ev.key === "-") zoomBy(1.25);
  });
  return {
    bar,
    setContent(w, hh) {
      const first = content.w === 1;
      content = { w, h: hh };
      if (first) fit();
    },
    /** Bring a node into view (keyboard focus moving off screen). */
    reveal(node) {
      const inside =
        node.x >= view.x && node.y >= view.y && node.x + node.w <= view.x + view.w && node.y + node.h <= view.y + view.h;
      if (inside) return;
      view.x = node.x + node.w / 2 - view.w / 2;
      view.y = node.y + node.h / 2 - view.h / 2;
      apply();
    },
    dragged: () => moved,
  };
}
