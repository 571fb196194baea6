"""`dag watch` and `dag submit --watch`: a DAG followed until it settles.

The client's `DagRun.watch()` polls the DAG and reports what changed. On a
terminal, a rich `Live` view is redrawn in place (a progress bar of finished
jobs, the count in each state, the running jobs with their elapsed time);
piped, one plain line is printed per change, flushed at once, so a log or a
script reading the pipe sees each change as it is seen. Both return the DAG
as it settled; the caller turns its state into the exit status.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from chronosched.cli._output import STATE_STYLE
from chronosched.cli._show import title
from chronosched.cli._values import format_duration
from chronosched.dag import DagRun
from chronosched.types import Dag, DagEvent, Job, JobEvent, JobState

#: How many running jobs the live view lists.
RUNNING_SHOWN = 10


class Board:
    """What is known of the watched DAG: the DAG and every job as last seen,
    the count in each state, the running jobs. Updated from the watching
    thread, read by rich's refresh thread: `lock` guards both."""

    def __init__(self, dag: Dag) -> None:
        self.dag = dag
        self.jobs: dict[str, Job] = {}
        self.counts: Counter[JobState] = Counter()
        self.running: dict[str, Job] = {}
        self.lock = threading.Lock()
        #: True once the first look (every job and the DAG) was applied.
        self.complete = False

    def apply(self, event: JobEvent | DagEvent) -> None:
        with self.lock:
            if isinstance(event, DagEvent):
                self.dag = event.dag
                self.complete = True
                return
            job = event.job
            before = self.jobs.get(job.key)
            if before is not None:
                self.counts[before.state] -= 1
            self.counts[job.state] += 1
            self.jobs[job.key] = job
            if job.state is JobState.RUNNING:
                self.running[job.key] = job
            else:
                self.running.pop(job.key, None)

    @property
    def finished(self) -> int:
        return sum(n for state, n in self.counts.items() if state.is_finished)

    def counts_text(self) -> str:
        return ", ".join(f"{self.counts[s]:,} {s.name}" for s in JobState if self.counts[s]) or "no jobs"


def _elapsed(since: datetime | None, until: datetime | None = None) -> str:
    if since is None:
        return "-"
    seconds = max(((until or datetime.now(UTC)) - since).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    return format_duration(timedelta(seconds=round(seconds)))


def _settled_line(board: Board) -> str:
    dag = board.dag
    total = len(board.jobs)
    took = _elapsed(dag.start_time, dag.end_time) if dag.start_time else "-"
    return (
        f"dag {title(dag)}: {dag.state.name}, {board.finished:,}/{total:,} finished "
        f"({board.counts_text()}) in {took}"
    )


# --- piped: one line per change -------------------------------------------------


def _job_line(board: Board, event: JobEvent) -> str:
    job = event.job
    before = "new" if event.previous is None else event.previous.state.name
    line = f"[{board.finished:,}/{len(board.jobs):,}] {job.key}: {before} -> {job.state.name}"
    if event.previous is not None and event.previous.attempt != job.attempt:
        line += f" (attempt {job.attempt}/{job.max_attempts})"
    if job.state is JobState.FAILED and job.error:
        line += ": " + job.error.splitlines()[0][:200]
    return line


def watch_plain(run: DagRun, out: TextIO, interval: float) -> Dag:
    """Print one line per change until the DAG settles; return it."""
    board = Board(run.dag)

    def say(text: str) -> None:
        out.write(f"{datetime.now(UTC):%H:%M:%S} {text}\n")
        out.flush()

    for event in run.watch(interval=interval):
        first_look = not board.complete
        board.apply(event)
        if first_look:
            # The first look reports every job: one line sums it up.
            if isinstance(event, DagEvent):
                say(
                    f"dag {title(board.dag)}: {board.dag.state.name}, "
                    f"{board.finished:,}/{len(board.jobs):,} finished ({board.counts_text()})"
                )
        elif isinstance(event, JobEvent):
            say(_job_line(board, event))
        else:
            previous = "new" if event.previous is None else event.previous.state.name
            say(f"dag {board.dag.dag_id}: {previous} -> {event.dag.state.name}")
    say(_settled_line(board))
    return board.dag


# --- on a terminal: redrawn in place ---------------------------------------------


class _View:
    """The live view; rich renders it at every refresh, so elapsed times tick
    between polls."""

    def __init__(self, board: Board) -> None:
        self.board = board

    def __rich__(self) -> RenderableType:
        board = self.board
        with board.lock:
            dag = board.dag
            total = len(board.jobs)
            finished = board.finished
            counts = [(s, board.counts[s]) for s in JobState if board.counts[s]]
            running = sorted(board.running.values(), key=lambda j: (j.start_time or dag.create_time, j.key))
        heading = Text.assemble(
            (f"dag {title(dag)}  ", "bold"),
            (dag.state.name, STATE_STYLE.get(dag.state.name, "")),
            f"  {_elapsed(dag.start_time, dag.end_time)}",
        )
        bar = Table.grid(padding=(0, 1))
        bar.add_column(width=40)
        bar.add_column()
        bar.add_row(
            ProgressBar(total=max(total, 1), completed=finished, width=40),
            f"{finished:,}/{total:,} finished" + (f" ({100 * finished // total}%)" if total else ""),
        )
        states = Text("  ").join(
            Text.assemble((state.name, STATE_STYLE.get(state.name, "")), f" {n:,}") for state, n in counts
        )
        parts: list[RenderableType] = [heading, bar, states]
        if running:
            table = Table(box=None, pad_edge=False, header_style="bold", title_justify="left")
            for column in ("RUNNING", "ATTEMPT", "WORKER", "ELAPSED"):
                table.add_column(column, no_wrap=True)
            for job in running[:RUNNING_SHOWN]:
                table.add_row(
                    job.key,
                    f"{job.attempt}/{job.max_attempts}",
                    job.worker_id or "-",
                    _elapsed(job.start_time),
                )
            parts.append(table)
            if len(running) > RUNNING_SHOWN:
                parts.append(Text(f"… and {len(running) - RUNNING_SHOWN:,} more running", style="dim"))
        return Group(*parts)


def watch_live(run: DagRun, console: Console, interval: float) -> Dag:
    """Redraw the live view until the DAG settles; return it. The last view
    stays on the screen, with a closing line under it."""
    board = Board(run.dag)
    view = _View(board)
    with Live(view, console=console, refresh_per_second=4, transient=False) as live:
        for event in run.watch(interval=interval):
            board.apply(event)
        live.refresh()
    console.print(_settled_line(board), highlight=False)
    return board.dag


def wait_quietly(run: DagRun, interval: float) -> Dag:
    """Wait for the DAG to settle without printing (JSON/YAML output)."""
    return run.wait(interval=interval).dag
