"""`dag show`: a DAG drawn as a text tree, or as Mermaid / Graphviz source.

One walk decides what is drawn, for every format: depth first from the
roots, children in key order. A job is drawn in full (with its children)
the first time it is met; under its other parents it appears again marked
as seen. Big DAGs are summarised rather than printed whole, so a DAG of
10,000 jobs draws in a few dozen lines:

- a job (or the list of roots) with more than `max_children` children shows
  the first ones and one `… and 9,950 more (states)` entry;
- below `max_depth` levels, children become one `… N more below` entry;
- after `max_lines` entries the drawing stops with a `… cut` entry.

The tree adds to a waiting job what it cannot show by itself (no worker,
workers full, a due time); waiting on parents or on the DAG's start shows in
the drawing already.

The walk is iterative and linear in what it draws; the graph is built once
in O(jobs + edges).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from chronosched.types import Dag, Dependency, Job, JobState, Waiting, WaitingReason


@dataclass(frozen=True)
class Limits:
    """How much of a big DAG is drawn (0 turns a limit off)."""

    max_children: int = 10
    max_depth: int = 20
    max_lines: int = 400


@dataclass(frozen=True)
class Graph:
    """A DAG's jobs (in key order) and edges, by index."""

    dag: Dag
    keys: list[str]
    states: list[JobState]
    children: list[list[int]]
    roots: list[int]
    #: A Mermaid/Graphviz-safe id per job: `j_` + the key with every
    #: character outside [A-Za-z0-9_] replaced, made unique.
    ids: list[str]
    #: Per job, what the tree adds after its state: why it waits, when the
    #: drawing does not show it already (see `waiting_note`); "" otherwise.
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, dag: Dag, jobs: Iterable[Job], edges: Iterable[Dependency]) -> Graph:
        ordered = sorted(jobs, key=lambda j: j.key)
        index = {job.job_id: i for i, job in enumerate(ordered)}
        children: list[list[int]] = [[] for _ in ordered]
        has_parent = bytearray(len(ordered))
        for edge in edges:
            parent, child = index.get(edge.parent_job_id), index.get(edge.child_job_id)
            if parent is None or child is None:
                continue  # a job that appeared between the two reads; the next show has it
            children[parent].append(child)
            has_parent[child] = 1
        for kids in children:
            kids.sort()  # indexes are in key order
        keys = [job.key for job in ordered]
        return cls(
            dag=dag,
            keys=keys,
            states=[job.state for job in ordered],
            children=children,
            roots=[i for i in range(len(ordered)) if not has_parent[i]],
            ids=_unique_ids(keys),
            notes=[waiting_note(job.waiting) for job in ordered],
        )


def waiting_note(waiting: Waiting | None) -> str:
    """A short why for a waiting job in the tree. Waiting on parents or on
    the DAG's start shows in the drawing itself, and a job about to be
    dispatched waits on nothing: those get no note."""
    if waiting is None:
        return ""
    if waiting.reason is WaitingReason.NO_WORKER:
        return f"no worker for kind {waiting.kind}"
    if waiting.reason is WaitingReason.WORKERS_FULL:
        return f"workers full: {waiting.slots_in_use} of {waiting.slots_total} slots in use"
    if waiting.reason is WaitingReason.NOT_DUE and waiting.due_time is not None:
        what = f"attempt {waiting.retry_after_attempt + 1}" if waiting.retry_after_attempt else "due"
        return f"{what} at {waiting.due_time:%Y-%m-%dT%H:%M:%SZ}"
    return ""


_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def _unique_ids(keys: Sequence[str]) -> list[str]:
    taken: set[str] = set()
    out: list[str] = []
    for key in keys:
        base = "j_" + _UNSAFE.sub("_", key)
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate)
        out.append(candidate)
    return out


class Kind(Enum):
    JOB = "job"  # drawn in full
    SEEN = "seen"  # drawn before, under another parent
    MORE = "more"  # siblings summarised
    DEEPER = "deeper"  # children below max_depth
    CUT = "cut"  # max_lines reached


@dataclass(frozen=True)
class Item:
    """One entry of the drawing, in depth-first order."""

    kind: Kind
    #: 1 for the roots.
    depth: int
    #: The last entry among its siblings.
    last: bool
    node: int = -1
    #: The job it hangs under; -1 at the top.
    parent: int = -1
    #: MORE / DEEPER: the jobs it stands for.
    hidden: tuple[int, ...] = ()


@dataclass
class _Frame:
    parent: int
    depth: int
    entries: list[tuple[int, bool] | tuple[tuple[int, ...], bool]]
    pos: int = 0


def _entries(nodes: list[int], limit: int) -> list[tuple[int, bool] | tuple[tuple[int, ...], bool]]:
    entries: list[tuple[int, bool] | tuple[tuple[int, ...], bool]]
    if limit and len(nodes) > limit:
        entries = [(n, False) for n in nodes[:limit]]
        entries.append((tuple(nodes[limit:]), True))
        return entries
    entries = [(n, False) for n in nodes]
    if entries:
        entries[-1] = (nodes[-1], True)
    return entries


def walk(graph: Graph, limits: Limits) -> list[Item]:
    """What is drawn, in order (see the module doc)."""
    items: list[Item] = []
    drawn = bytearray(len(graph.keys))
    stack = [_Frame(-1, 1, _entries(graph.roots, limits.max_children))]
    while stack:
        frame = stack[-1]
        if frame.pos == len(frame.entries):
            stack.pop()
            continue
        entry, last = frame.entries[frame.pos]
        frame.pos += 1
        if limits.max_lines and len(items) >= limits.max_lines:
            items.append(Item(Kind.CUT, 1, True))
            break
        if isinstance(entry, tuple):
            items.append(Item(Kind.MORE, frame.depth, last, parent=frame.parent, hidden=entry))
            continue
        if drawn[entry]:
            items.append(Item(Kind.SEEN, frame.depth, last, entry, frame.parent))
            continue
        drawn[entry] = 1
        items.append(Item(Kind.JOB, frame.depth, last, entry, frame.parent))
        kids = graph.children[entry]
        if not kids:
            continue
        if limits.max_depth and frame.depth >= limits.max_depth:
            items.append(Item(Kind.DEEPER, frame.depth + 1, True, parent=entry, hidden=tuple(kids)))
        else:
            stack.append(_Frame(entry, frame.depth + 1, _entries(kids, limits.max_children)))
    return items


def _counts(states: Iterable[JobState]) -> str:
    counted = Counter(states)
    return ", ".join(f"{counted[s]:,} {s.name}" for s in JobState if counted[s])


def _summary(graph: Graph, item: Item, limits: Limits) -> str:
    if item.kind is Kind.MORE:
        return f"… and {len(item.hidden):,} more ({_counts(graph.states[i] for i in item.hidden)})"
    if item.kind is Kind.DEEPER:
        return f"… {len(item.hidden):,} more below (--max-depth {limits.max_depth})"
    return f"… cut at {limits.max_lines:,} lines (--max-lines)"


def title(dag: Dag) -> str:
    """`name (dag_id)`, or the id alone for a DAG without a name."""
    return f"{dag.name} ({dag.dag_id})" if dag.name else dag.dag_id


def _footer(graph: Graph, items: Sequence[Item]) -> str | None:
    drawn = sum(1 for item in items if item.kind is Kind.JOB)
    if drawn == len(graph.keys):
        return None
    return (
        f"({drawn:,} of {len(graph.keys):,} jobs drawn; --max-children, --max-depth and "
        "--max-lines draw more, -o json lists them all)"
    )


# --- the text tree ---------------------------------------------------------------

#: A line of the tree as (text before the state, the state or None, text after).
Line = tuple[str, JobState | None, str]


def tree(graph: Graph, limits: Limits) -> list[Line]:
    """The DAG as a tree, first line its title and progress."""
    dag = graph.dag
    finished = dag.job_count - dag.unfinished_job_count
    lines: list[Line] = [
        (f"{title(dag)} [{dag.state.name}] {finished:,}/{dag.job_count:,} finished", None, "")
    ]
    items = walk(graph, limits)
    guides: list[str] = [""]
    for item in items:
        del guides[item.depth :]
        prefix = "".join(guides[1:]) + ("└── " if item.last else "├── ")
        guides.append("    " if item.last else "│   ")
        if item.kind is Kind.JOB:
            note = graph.notes[item.node] if graph.notes else ""
            after = f"] ({note})" if note else "]"
            lines.append((f"{prefix}{graph.keys[item.node]} [", graph.states[item.node], after))
        elif item.kind is Kind.SEEN:
            lines.append((f"{prefix}{graph.keys[item.node]} [", graph.states[item.node], "] (see above)"))
        else:
            lines.append((prefix + _summary(graph, item, limits), None, ""))
    footer = _footer(graph, items)
    if footer is not None:
        lines.append((footer, None, ""))
    return lines


def plain(lines: Iterable[Line]) -> str:
    return "".join(
        f"{before}{'' if state is None else state.name}{after}\n" for before, state, after in lines
    )


# --- diagrams --------------------------------------------------------------------

# Fill and border of each state, shared by Mermaid and Graphviz.
_COLOURS: dict[JobState, tuple[str, str]] = {
    JobState.PENDING: ("#eeeeee", "#9e9e9e"),
    JobState.READY: ("#fff3cd", "#b08800"),
    JobState.RUNNING: ("#cfe2ff", "#0d6efd"),
    JobState.SUCCEEDED: ("#d1e7dd", "#198754"),
    JobState.FAILED: ("#f8d7da", "#dc3545"),
    JobState.CANCELLED: ("#e2d9f3", "#6f42c1"),
    JobState.SKIPPED: ("#f5f5f5", "#bdbdbd"),
    JobState.UNSPECIFIED: ("#ffffff", "#000000"),
}


def mermaid(graph: Graph, limits: Limits) -> str:
    """Mermaid flowchart source: a node per job (its key), coloured by its
    state's class; summaries as dashed nodes."""
    out = ["flowchart TD"]
    used: set[JobState] = set()
    extra = 0
    items = walk(graph, limits)
    for item in items:
        parent = graph.ids[item.parent] if item.parent >= 0 else None
        if item.kind in (Kind.JOB, Kind.SEEN):
            node = graph.ids[item.node]
            if item.kind is Kind.JOB:
                state = graph.states[item.node]
                used.add(state)
                out.append(f'    {node}["{graph.keys[item.node]}"]:::{state.name.lower()}')
            if parent is not None:
                out.append(f"    {parent} --> {node}")
        elif item.kind is Kind.CUT:
            out.append(f"    %% cut at {limits.max_lines:,} lines (--max-lines)")
        else:
            extra += 1
            out.append(f'    more_{extra}["{_summary(graph, item, limits)}"]:::more')
            if parent is not None:
                out.append(f"    {parent} -.-> more_{extra}")
    for state in JobState:
        if state in used:
            fill, stroke = _COLOURS[state]
            out.append(f"    classDef {state.name.lower()} fill:{fill},stroke:{stroke}")
    if extra:
        out.append("    classDef more fill:#ffffff,stroke:#9e9e9e,stroke-dasharray:3 3")
    return "\n".join(out) + "\n"


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot(graph: Graph, limits: Limits) -> str:
    """Graphviz DOT source: a box per job (its key), filled by its state."""
    dag = graph.dag
    finished = dag.job_count - dag.unfinished_job_count
    heading = f"{title(dag)} [{dag.state.name}] {finished:,}/{dag.job_count:,} finished"
    out = [
        "digraph dag {",
        f"    label={_dot_text(heading)};",
        "    labelloc=t;",
        "    rankdir=TB;",
        '    node [shape=box, style="rounded,filled", fontname="Helvetica"];',
    ]
    extra = 0
    for item in walk(graph, limits):
        parent = graph.ids[item.parent] if item.parent >= 0 else None
        if item.kind in (Kind.JOB, Kind.SEEN):
            node = graph.ids[item.node]
            if item.kind is Kind.JOB:
                fill, stroke = _COLOURS[graph.states[item.node]]
                label = _dot_text(graph.keys[item.node])
                out.append(f'    {node} [label={label}, fillcolor="{fill}", color="{stroke}"];')
            if parent is not None:
                out.append(f"    {parent} -> {node};")
        elif item.kind is Kind.CUT:
            out.append(f"    // cut at {limits.max_lines:,} lines (--max-lines)")
        else:
            extra += 1
            label = _dot_text(_summary(graph, item, limits))
            out.append(f'    more_{extra} [label={label}, style="dashed", fillcolor="#ffffff"];')
            if parent is not None:
                out.append(f"    {parent} -> more_{extra} [style=dashed];")
    out.append("}")
    return "\n".join(out) + "\n"
