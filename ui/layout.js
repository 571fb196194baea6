// The DAG view's layout, pure (no DOM): layers by longest path from the
// roots (parents above children), wide layers collapsed into one summary
// node, and barycenter ordering within layers to keep crossings few.

export const NODE_W = 168;
export const NODE_H = 46;
export const SUMMARY_W = 320;
const GAP_X = 24;
const GAP_Y = 64;
const MARGIN = 24;
// Sweeps of the barycenter heuristic (down, up, down, ...): the gains
// flatten out after a few.
const SWEEPS = 6;
// Placeholders for edges that skip layers: their width, and how many at most.
const VIA_W = 12;
const MAX_DUMMIES = 3000;

/**
 * jobs: [{job_id, key, state, ...}] (any order); edges: [{parent_job_id,
 * child_job_id}]. A layer with more than `maxLayerWidth` jobs becomes one
 * summary node. Returns {nodes, edges, width, height, layers}, where each
 * node is {id, kind: "job"|"summary", layer, x, y, w, h, job?, members?}
 * and each edge {from, to, count, via} between node ids (`via`: the points
 * {x, top, bottom} it passes through in the layers it skips).
 */
export function layoutDag(jobs, edges, { maxLayerWidth = 24 } = {}) {
  const n = jobs.length;
  const index = new Map();
  jobs.forEach((job, i) => index.set(job.job_id, i));
  const parents = Array.from({ length: n }, () => []);
  const children = Array.from({ length: n }, () => []);
  for (const edge of edges) {
    const p = index.get(edge.parent_job_id);
    const c = index.get(edge.child_job_id);
    if (p === undefined || c === undefined || p === c) continue;
    parents[c].push(p);
    children[p].push(c);
  }

  // Longest path from a root (Kahn's order); a cycle cannot be stored, but
  // anything left over lands in layer 0 rather than looping.
  const layerOf = new Int32Array(n);
  const indegree = Int32Array.from(parents, (ps) => ps.length);
  const queue = [];
  for (let i = 0; i < n; i++) if (indegree[i] === 0) queue.push(i);
  for (let head = 0; head < queue.length; head++) {
    const v = queue[head];
    for (const c of children[v]) {
      if (layerOf[v] + 1 > layerOf[c]) layerOf[c] = layerOf[v] + 1;
      if (--indegree[c] === 0) queue.push(c);
    }
  }
  let depth = 0;
  for (let i = 0; i < n; i++) depth = Math.max(depth, layerOf[i] + 1);

  const byLayer = Array.from({ length: depth }, () => []);
  for (let i = 0; i < n; i++) byLayer[layerOf[i]].push(i);
  const byKey = (a, b) => (jobs[a].key < jobs[b].key ? -1 : jobs[a].key > jobs[b].key ? 1 : 0);

  // Visible nodes: a job each, or one summary per wide layer.
  const nodes = [];
  const nodeOf = new Int32Array(n);
  const layers = byLayer.map((members, layer) => {
    members.sort(byKey);
    if (members.length > maxLayerWidth) {
      const id = `summary-${layer}`;
      nodes.push({ id, kind: "summary", layer, members: members.map((i) => jobs[i]), w: SUMMARY_W, h: NODE_H + 12 });
      for (const i of members) nodeOf[i] = nodes.length - 1;
      return [nodes.length - 1];
    }
    return members.map((i) => {
      nodes.push({ id: jobs[i].job_id, kind: "job", layer, job: jobs[i], w: NODE_W, h: NODE_H });
      nodeOf[i] = nodes.length - 1;
      return nodes.length - 1;
    });
  });

  // Edges between visible nodes, merged where a summary stands for many.
  const merged = new Map();
  for (let c = 0; c < n; c++) {
    for (const p of parents[c]) {
      const a = nodeOf[p];
      const b = nodeOf[c];
      if (a === b) continue;
      const key = `${a}>${b}`;
      const seen = merged.get(key);
      if (seen) seen.count++;
      else merged.set(key, { a, b, count: 1, via: [] });
    }
  }

  // An edge that skips layers runs through a thin placeholder in each
  // layer between, so the ordering keeps it clear of the nodes there. Past
  // MAX_DUMMIES (huge, deep graphs) such edges are drawn straight.
  const up = [];
  const down = [];
  const link = (a, b) => {
    (up[b] ||= new Set()).add(a);
    (down[a] ||= new Set()).add(b);
  };
  let skipped = 0;
  for (const e of merged.values()) skipped += Math.max(0, nodes[e.b].layer - nodes[e.a].layer - 1);
  for (const e of merged.values()) {
    let prev = e.a;
    if (skipped <= MAX_DUMMIES) {
      for (let l = nodes[e.a].layer + 1; l < nodes[e.b].layer; l++) {
        nodes.push({ id: `via-${nodes.length}`, kind: "via", layer: l, w: VIA_W, h: NODE_H });
        const d = nodes.length - 1;
        layers[l].push(d);
        e.via.push(d);
        link(prev, d);
        prev = d;
      }
    }
    link(prev, e.b);
  }
  const NONE = new Set();

  // Barycenter ordering: a node's place is the mean place of its
  // neighbours in the layers swept from, as a fraction of their layer's
  // width (layers differ in width).
  const pos = new Float64Array(nodes.length);
  const place = () => {
    for (const layer of layers) layer.forEach((v, i) => (pos[v] = (i + 0.5) / layer.length));
  };
  place();
  for (let sweep = 0; sweep < SWEEPS; sweep++) {
    const downward = sweep % 2 === 0;
    const order = downward ? layers.keys() : [...layers.keys()].reverse();
    for (const l of order) {
      const layer = layers[l];
      if (layer.length < 2) continue;
      const key = new Map();
      for (const v of layer) {
        const near = (downward ? up[v] : down[v]) || NONE;
        if (near.size === 0) key.set(v, pos[v]);
        else {
          let sum = 0;
          for (const u of near) sum += pos[u];
          key.set(v, sum / near.size);
        }
      }
      layer.sort((a, b) => key.get(a) - key.get(b) || pos[a] - pos[b]);
      layer.forEach((v, i) => (pos[v] = (i + 0.5) / layer.length));
    }
  }

  // Coordinates: layers centred on the widest one.
  const widths = layers.map((layer) => layer.reduce((sum, v) => sum + nodes[v].w, 0) + GAP_X * (layer.length - 1));
  const width = Math.max(NODE_W, ...widths) + 2 * MARGIN;
  let y = MARGIN;
  layers.forEach((layer, l) => {
    let x = (width - widths[l]) / 2;
    const rowH = Math.max(...layer.map((v) => nodes[v].h));
    for (const v of layer) {
      nodes[v].x = x;
      nodes[v].y = y + (rowH - nodes[v].h) / 2;
      x += nodes[v].w + GAP_X;
    }
    y += rowH + GAP_Y;
  });
  const height = Math.max(y - GAP_Y + MARGIN, NODE_H + 2 * MARGIN);
  const outEdges = [...merged.values()].map(({ a, b, count, via }) => ({
    from: nodes[a].id,
    to: nodes[b].id,
    count,
    via: via.map((d) => ({ x: nodes[d].x + VIA_W / 2, top: nodes[d].y, bottom: nodes[d].y + nodes[d].h })),
  }));
  const shown = nodes.filter((node) => node.kind !== "via");
  return { nodes: shown, edges: outEdges, width, height, layers: layers.length };
}
