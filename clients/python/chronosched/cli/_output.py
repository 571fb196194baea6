"""How the operator CLI prints: tables (rich) for people, JSON or YAML for
scripts, and errors on stderr.

JSON and YAML carry the data with the proto field names, as the REST API
does: enums by their protobuf names (`STATE_RUNNING`), times as RFC 3339 in
UTC, durations as protobuf JSON durations (`90s`); a field the server left
unset is null.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO

import yaml
from google.protobuf import duration_pb2, timestamp_pb2
from rich.console import Console
from rich.table import Table
from rich.text import Text

from chronosched.cli._values import ENUM_PREFIX, format_duration
from chronosched.types import Waiting

#: How each state looks in a terminal.
STATE_STYLE = {
    "PENDING": "dim",
    "READY": "yellow",
    "RUNNING": "cyan",
    "SUCCEEDED": "green",
    "FAILED": "bold red",
    "CANCELLED": "magenta",
    "SKIPPED": "dim",
    "FIRED": "green",
}


def data(value: Any) -> Any:
    """A client value as JSON-ready data with proto names (see the module doc)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, enum.Enum):
        prefix = ENUM_PREFIX.get(type(value), "")
        return prefix + value.name
    if isinstance(value, datetime):
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(value)
        return stamp.ToJsonString()
    if isinstance(value, timedelta):
        span = duration_pb2.Duration()
        span.FromTimedelta(value)
        return span.ToJsonString()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [data(v) for v in value]
    raise TypeError(f"cannot print a {type(value).__name__}")


def cell(value: Any) -> str | Text:
    """A value as a table cell: short state names (coloured in a terminal),
    times to the second, durations short, objects as compact JSON, a job's
    `waiting` as its reason and sentence."""
    if value is None:
        return "-"
    if isinstance(value, enum.Enum):
        return Text(value.name, style=STATE_STYLE.get(value.name, ""))
    if isinstance(value, Waiting):
        return f"{value.reason.name}: {value.message}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, tuple):
        return ", ".join(str(cell(v)) for v in value) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# Wider than any table: tables are never shortened to fit.
_WIDE = 100_000


class Output:
    """Where and how a command prints."""

    def __init__(self, fmt: str, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.format = fmt
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.is_terminal = self.stdout.isatty()
        #: For the live view and the tree: as wide as the terminal.
        self.console = Console(file=self.stdout, highlight=False, soft_wrap=False)
        # Tables are as wide as their contents, on a terminal too: rich would
        # otherwise shorten cells to fit, and an id cut short is worse than a
        # line the terminal wraps; piped, a script cutting columns must not
        # meet wrapped cells.
        self._tables = Console(
            file=self.stdout,
            highlight=False,
            soft_wrap=False,
            width=_WIDE,
            force_terminal=self.is_terminal,
        )

    # --- data ---------------------------------------------------------------------

    def emit(self, value: Any, table: Callable[[], Table | None]) -> None:
        """Print `value` as JSON/YAML data, or the table `table()` builds."""
        if self.format == "json":
            self.stdout.write(json.dumps(data(value), indent=2, ensure_ascii=False) + "\n")
        elif self.format == "yaml":
            self.stdout.write(yaml.safe_dump(data(value), sort_keys=False, allow_unicode=True))
        else:
            rendered = table()
            if rendered is not None:
                self.table(rendered)
        self.stdout.flush()

    def table(self, table: Table) -> None:
        if self.is_terminal:
            self._tables.print(table)
            return
        # Cells are padded to their column's width; piped, the padding at the
        # end of a line is only noise for diff and grep.
        with self._tables.capture() as captured:
            self._tables.print(table)
        self.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))

    def line(self, text: str | Text) -> None:
        """One line for people (table mode only)."""
        if self.format == "table":
            if isinstance(text, Text) and self.is_terminal:
                self.console.print(text)
            else:
                self.stdout.write(str(text) + "\n")
            self.stdout.flush()

    def error(self, text: str) -> None:
        self.stderr.write(text.rstrip("\n") + "\n")
        self.stderr.flush()


def list_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """An aligned table without borders, a header per column."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    return table


def fields_table(value: Any, skip: Sequence[str] = ()) -> Table:
    """One object as `field  value` lines (proto field names)."""
    table = Table(box=None, pad_edge=False, show_edge=False, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for f in dataclasses.fields(value):
        if f.name not in skip:
            table.add_row(f.name, cell(getattr(value, f.name)))
    return table
