"""Definition and DAG files (YAML) read with their line numbers.

The files are composed into PyYAML nodes (`yaml.compose`), which keep each
value's position, and read field by field: every problem names the file, the
line and the field (`dag.yaml:7: jobs[2].definition: ...`), unknown or
repeated keys included, and all problems of a file are reported at once.

Each spec also records where every request field came from (`Origins`), so a
field violation the server reports (`jobs[2].def_id`) can be shown at the
YAML line and under the YAML name (`jobs[2].definition`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from chronosched._calls import parse_ref
from chronosched.cli._values import parse_duration, parse_enum
from chronosched.types import MisfirePolicy, OverlapPolicy


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, where it is."""

    file: str
    #: 1-based; None when no line is known.
    line: int | None
    #: The field's path in the file (`jobs[2].definition`); empty for the file itself.
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SpecError(Exception):
    """A file that cannot be turned into requests; `problems` says why, in
    line order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        ordered = sorted(problems, key=lambda p: p.line or 0)
        super().__init__("\n".join(str(p) for p in ordered))
        self.problems = ordered


@dataclass
class Origins:
    """Where each request field came from: request path -> (line, YAML path)."""

    file: str
    places: dict[str, tuple[int, str]] = field(default_factory=dict)

    def note(self, request_path: str, node: Node, yaml_path: str) -> None:
        self.places[request_path] = (node.start_mark.line + 1, yaml_path)

    def locate(self, request_path: str) -> tuple[int | None, str]:
        """The line and YAML path of a request field. A path recorded as is
        wins; else its longest recorded prefix (`jobs[2].payload.url.host`
        -> `jobs[2].payload`), with the rest appended to the YAML path."""
        path = request_path
        while True:
            found = self.places.get(path)
            if found is not None:
                line, yaml_path = found
                return line, yaml_path + request_path[len(path) :]
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                return None, request_path
            path = path[:cut]

    def problem(self, request_path: str, message: str) -> Problem:
        line, yaml_path = self.locate(request_path)
        return Problem(self.file, line, yaml_path, message)


# --- reading nodes ---------------------------------------------------------------


_MERGE = "tag:yaml.org,2002:merge"


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return "nothing (null)"
    return f"{node.value!r}" if isinstance(node, ScalarNode) else "something else"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Reader:
    """Reads one YAML document's nodes, collecting problems."""

    def __init__(self, file: str, loader: yaml.SafeLoader) -> None:
        self.file = file
        self.loader = loader
        self.problems: list[Problem] = []
        # Key nodes that came in through a merge (`<<`), which later keys override.
        self._merged: set[Node] = set()

    def problem(self, node: Node | None, path: str, message: str) -> None:
        line = None if node is None else node.start_mark.line + 1
        self.problems.append(Problem(self.file, line, path, message))

    def value(self, node: Node, path: str) -> Any:
        """The plain Python value of a node (whole subtree)."""
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or node.start_mark
            self.problems.append(Problem(self.file, mark.line + 1, path, str(getattr(exc, "problem", exc))))
            return None

    def _entries(self, node: MappingNode, path: str) -> dict[str, tuple[Node, Node]] | None:
        """A mapping's entries by text key. A key written twice is a problem;
        a key merged in (`<<: *anchor`) yields to one written here."""
        own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE)
        try:
            self.loader.flatten_mapping(node)
        except yaml.YAMLError as exc:
            self.problem(node, path, str(getattr(exc, "problem", exc)))
            return None
        merged = len(node.value) - own  # flatten_mapping puts merged pairs first
        entries: dict[str, tuple[Node, Node]] = {}
        for n, (key_node, value_node) in enumerate(node.value):
            key = self.value(key_node, path)
            if not isinstance(key, str):
                self.problem(key_node, path, f"keys are text, not {key!r}")
                continue
            if key in entries and n >= merged and entries[key][0] not in self._merged:
                first = entries[key][0].start_mark.line + 1
                self.problem(key_node, _join(path, key), f"given twice (first on line {first})")
                continue
            if n < merged:
                self._merged.add(key_node)
            entries[key] = (key_node, value_node)
        return entries

    def mapping(self, node: Node, path: str, allowed: Sequence[str]) -> dict[str, tuple[Node, Node]] | None:
        """A mapping's entries by key (key node, value node); unknown and
        repeated keys are problems. None if the node is no mapping."""
        if not isinstance(node, MappingNode):
            self.problem(node, path, f"expected a mapping, got {_kind(node)}")
            return None
        entries = self._entries(node, path)
        if entries is None:
            return None
        for key, (key_node, _) in list(entries.items()):
            if key not in allowed:
                where = _join(path, key)
                self.problem(key_node, where, f"unknown key {key!r} (expected one of: {', '.join(allowed)})")
                del entries[key]
        return entries

    def sequence(self, node: Node, path: str) -> list[Node] | None:
        if not isinstance(node, SequenceNode):
            self.problem(node, path, f"expected a list, got {_kind(node)}")
            return None
        return list(node.value)

    def text(self, node: Node, path: str, *, required: bool = True) -> str | None:
        value = self.value(node, path)
        if isinstance(value, str) and (value or not required):
            return value
        self.problem(node, path, "must not be empty" if value == "" else f"expected text, got {_kind(node)}")
        return None

    def integer(self, node: Node, path: str) -> int | None:
        value = self.value(node, path)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        self.problem(node, path, f"expected a whole number, got {_kind(node)}")
        return None

    def number(self, node: Node, path: str) -> float | None:
        value = self.value(node, path)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        self.problem(node, path, f"expected a number, got {_kind(node)}")
        return None

    def boolean(self, node: Node, path: str) -> bool | None:
        value = self.value(node, path)
        if isinstance(value, bool):
            return value
        self.problem(node, path, f"expected true or false, got {_kind(node)}")
        return None

    def duration(self, node: Node, path: str) -> timedelta | None:
        value = self.value(node, path)
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except ValueError as exc:
                self.problem(node, path, str(exc))
                return None
        if value == 0 and not isinstance(value, bool):
            return timedelta(0)
        self.problem(node, path, f"expected a duration with a unit (90s, 5m, 1h30m), got {_kind(node)}")
        return None

    def json_object(
        self, node: Node, path: str, origins: Origins, request_path: str
    ) -> dict[str, Any] | None:
        """A JSON object (payloads), noting the line of every nested key."""
        if not isinstance(node, MappingNode):
            self.problem(node, path, f"expected a mapping, got {_kind(node)}")
            return None
        before = len(self.problems)
        self._note_json(node, path, origins, request_path)
        if len(self.problems) > before:
            return None
        value = self.value(node, path)
        return value if isinstance(value, dict) else None

    def _note_json(self, node: Node, path: str, origins: Origins, request_path: str) -> None:
        origins.note(request_path, node, path)
        if isinstance(node, MappingNode):
            entries = self.mapping_any(node, path)
            for key, (_, value_node) in entries.items():
                self._note_json(value_node, _join(path, key), origins, _join(request_path, key))
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                self._note_json(item, f"{path}[{i}]", origins, f"{request_path}[{i}]")
        else:
            value = self.value(node, path)
            if value is not None and not isinstance(value, (str, int, float, bool)):
                self.problem(node, path, f"not a JSON value: {value!r} (quote it to make it text)")
            elif isinstance(value, float) and not math.isfinite(value):
                self.problem(node, path, f"not a JSON number: {value!r}")

    def mapping_any(self, node: MappingNode, path: str) -> dict[str, tuple[Node, Node]]:
        """A JSON object's entries: any text key."""
        return self._entries(node, path) or {}


def _documents(text: str, file: str) -> Iterator[tuple[_Reader, Node]]:
    """Each non-empty document of a YAML text, with a reader of its own loader."""
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                yield _Reader(file, loader), node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        raise SpecError([Problem(file, line, "", f"not valid YAML: {message}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(file, None, "", f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()


# --- definitions -----------------------------------------------------------------


@dataclass
class DefinitionSpec:
    """One CreateDefinition request, as read from a file."""

    name: str
    kind: str
    #: The keyword arguments of `Client.create_definition` beyond name and kind.
    options: dict[str, Any]
    origins: Origins


_DEFINITION_KEYS = (
    "name",
    "kind",
    "payload_template",
    "cron_spec",
    "time_zone",
    "misfire_policy",
    "overlap_policy",
    "starting_deadline",
    "max_attempts",
    "backoff_initial",
    "backoff_max",
    "backoff_multiplier",
    "execution_timeout",
    "default_priority",
    "delay_after_parents",
)
_DURATION_KEYS = {
    "starting_deadline",
    "backoff_initial",
    "backoff_max",
    "execution_timeout",
    "delay_after_parents",
}


def _policy(parse: Callable[[str], Any]) -> Callable[[_Reader, Node, str], Any]:
    def read(reader: _Reader, node: Node, path: str) -> Any:
        text = reader.text(node, path)
        if text is None:
            return None
        try:
            return parse(text)
        except ValueError as exc:
            reader.problem(node, path, str(exc))
            return None

    return read


_DEFINITION_READERS: dict[str, Callable[[_Reader, Node, str], Any]] = {
    "cron_spec": lambda r, n, p: r.text(n, p),
    "time_zone": lambda r, n, p: r.text(n, p),
    "misfire_policy": _policy(lambda text: parse_enum(MisfirePolicy, text, "misfire policy")),
    "overlap_policy": _policy(lambda text: parse_enum(OverlapPolicy, text, "overlap policy")),
    "max_attempts": lambda r, n, p: r.integer(n, p),
    "default_priority": lambda r, n, p: r.integer(n, p),
    "backoff_multiplier": lambda r, n, p: r.number(n, p),
    **dict.fromkeys(_DURATION_KEYS, lambda r, n, p: r.duration(n, p)),
}


def _definition(reader: _Reader, node: Node, prefix: str) -> DefinitionSpec | None:
    origins = Origins(reader.file)
    entries = reader.mapping(node, prefix, _DEFINITION_KEYS)
    if entries is None:
        return None
    missing = [key for key in ("name", "kind") if key not in entries]
    for key in missing:
        reader.problem(node, _join(prefix, key), "required")
    name = kind = None
    options: dict[str, Any] = {}
    for key, (_, value_node) in entries.items():
        path = _join(prefix, key)
        origins.note(key, value_node, path)
        if key in ("name", "kind"):
            value = reader.text(value_node, path)
            if key == "name":
                name = value
            else:
                kind = value
        elif key == "payload_template":
            options[key] = reader.json_object(value_node, path, origins, key)
        else:
            options[key] = _DEFINITION_READERS[key](reader, value_node, path)
    if name is None or kind is None:
        return None
    return DefinitionSpec(name, kind, options, origins)


def load_definitions(text: str, file: str) -> list[DefinitionSpec]:
    """The definitions of a file: one per YAML document (`---` between
    them). SpecError lists every problem."""
    specs: list[DefinitionSpec] = []
    problems: list[Problem] = []
    documents = list(_documents(text, file))
    for n, (reader, node) in enumerate(documents):
        # Paths name the document only when there are several.
        spec = _definition(reader, node, f"[{n}]" if len(documents) > 1 else "")
        problems += reader.problems
        if spec is not None:
            if len(documents) > 1:
                spec.origins = _unprefixed(spec.origins, f"[{n}]")
            specs.append(spec)
    if not documents:
        problems.append(Problem(file, None, "", "no definition in the file"))
    if problems:
        raise SpecError(problems)
    return specs


def _unprefixed(origins: Origins, prefix: str) -> Origins:
    # Request paths never carry the document prefix; YAML paths keep it.
    out = Origins(origins.file)
    for request_path, (line, yaml_path) in origins.places.items():
        out.places[request_path.removeprefix(prefix + ".")] = (line, yaml_path)
    return out


# --- DAGs ------------------------------------------------------------------------


@dataclass
class JobEntry:
    """One job of a DAG file; `definition` is resolved to a def_id before CreateDag."""

    key: str
    definition: str
    payload: dict[str, Any] | None
    priority: int | None
    #: Line of the `definition` value, for problems found while resolving it.
    definition_line: int


@dataclass
class DagSpec:
    """A CreateDag request, as read from a file (definitions not yet resolved)."""

    name: str
    jobs: list[JobEntry]
    #: (parent key, child key), in request order.
    dependencies: list[tuple[str, str]]
    #: The file's `start` (default true).
    start: bool
    origins: Origins


_DAG_KEYS = ("name", "start", "jobs", "dependencies")


@dataclass(frozen=True)
class _Edge:
    """One dependency and the nodes it was written in (for a depends_on
    entry, the entry is the edge, its parent and, implicitly, its child)."""

    parent: str
    child: str
    node: Node
    path: str
    parent_node: Node
    parent_path: str
    child_node: Node
    child_path: str


def _explicit_edge(reader: _Reader, node: Node, path: str, edges: list[_Edge]) -> None:
    fields = reader.mapping(node, path, _EDGE_KEYS)
    if fields is None:
        return
    for key in _EDGE_KEYS:
        if key not in fields:
            reader.problem(node, _join(path, key), "required")
    if not all(key in fields for key in _EDGE_KEYS):
        return
    parent_node, child_node = fields["parent"][1], fields["child"][1]
    parent = reader.text(parent_node, f"{path}.parent")
    child = reader.text(child_node, f"{path}.child")
    if parent is not None and child is not None:
        edges.append(
            _Edge(parent, child, node, path, parent_node, f"{path}.parent", child_node, f"{path}.child")
        )


_JOB_KEYS = ("key", "definition", "payload", "priority", "depends_on")
_EDGE_KEYS = ("parent", "child")


def load_dag(text: str, file: str) -> DagSpec:
    """The DAG of a file. SpecError lists every problem."""
    documents = list(_documents(text, file))
    if len(documents) != 1:
        found = "nothing" if not documents else f"{len(documents)} documents"
        raise SpecError([Problem(file, None, "", f"expected one DAG, found {found}")])
    reader, node = documents[0]
    spec = _dag(reader, node)
    if reader.problems or spec is None:
        raise SpecError(reader.problems)
    return spec


def _dag(reader: _Reader, node: Node) -> DagSpec | None:
    origins = Origins(reader.file)
    entries = reader.mapping(node, "", _DAG_KEYS)
    if entries is None:
        return None
    name, start = "", True
    if "name" in entries:
        name_node = entries["name"][1]
        origins.note("name", name_node, "name")
        name = reader.text(name_node, "name", required=False) or ""
    if "start" in entries:
        start = bool(reader.boolean(entries["start"][1], "start"))
    if "jobs" not in entries:
        reader.problem(node, "jobs", "required (a list of jobs)")
        return None
    items = reader.sequence(entries["jobs"][1], "jobs") or []
    jobs: list[JobEntry] = []
    edges: list[_Edge] = []
    for i, item in enumerate(items):
        job = _job(reader, item, i, origins, edges)
        if job is not None:
            jobs.append(job)
    # The request lists the depends_on edges first (in job order), then the
    # `dependencies` entries; each request index remembers its YAML place.
    if "dependencies" in entries:
        for n, edge_node in enumerate(reader.sequence(entries["dependencies"][1], "dependencies") or []):
            _explicit_edge(reader, edge_node, f"dependencies[{n}]", edges)
    for n, edge in enumerate(edges):
        request_path = f"dependencies[{n}]"
        origins.note(request_path, edge.node, edge.path)
        origins.note(f"{request_path}.parent", edge.parent_node, edge.parent_path)
        origins.note(f"{request_path}.child", edge.child_node, edge.child_path)
    if len(jobs) != len(items):
        return None
    return DagSpec(name, jobs, [(e.parent, e.child) for e in edges], start, origins)


def _job(
    reader: _Reader,
    node: Node,
    i: int,
    origins: Origins,
    edges: list[_Edge],
) -> JobEntry | None:
    path = f"jobs[{i}]"
    origins.note(path, node, path)
    entries = reader.mapping(node, path, _JOB_KEYS)
    if entries is None:
        return None
    for name in ("key", "definition"):
        if name not in entries:
            reader.problem(node, _join(path, name), "required")
    key: str | None = None
    definition: str | None = None
    payload: dict[str, Any] | None = None
    priority: int | None = None
    definition_line = node.start_mark.line + 1
    if "key" in entries:
        key_node = entries["key"][1]
        origins.note(f"{path}.key", key_node, f"{path}.key")
        key = reader.text(key_node, f"{path}.key")
    if "definition" in entries:
        ref_node = entries["definition"][1]
        origins.note(f"{path}.def_id", ref_node, f"{path}.definition")
        definition_line = ref_node.start_mark.line + 1
        definition = reader.text(ref_node, f"{path}.definition")
        if definition is not None:
            try:
                parse_ref(definition)
            except ValueError as exc:
                reader.problem(ref_node, f"{path}.definition", f"{exc} (or a bare name, or a def_id)")
                definition = None
    if "payload" in entries:
        payload = reader.json_object(entries["payload"][1], f"{path}.payload", origins, f"{path}.payload")
    if "priority" in entries:
        priority_node = entries["priority"][1]
        origins.note(f"{path}.priority", priority_node, f"{path}.priority")
        priority = reader.integer(priority_node, f"{path}.priority")
    if "depends_on" in entries:
        parents = reader.sequence(entries["depends_on"][1], f"{path}.depends_on") or []
        for k, parent_node in enumerate(parents):
            where = f"{path}.depends_on[{k}]"
            parent = reader.text(parent_node, where)
            if parent is not None and key is not None:
                edges.append(_Edge(parent, key, parent_node, where, parent_node, where, parent_node, where))
    if key is None or definition is None:
        return None
    return JobEntry(key, definition, payload, priority, definition_line)
