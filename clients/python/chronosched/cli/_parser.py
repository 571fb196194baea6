"""The operator commands' argparse definitions. Only argparse and the pure
value parsers are imported here, so `chronosched --help` and the server's
own commands do not load grpc or rich; `_commands` runs what was parsed."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from chronosched.cli import _values
from chronosched.types import DagState, JobState, TokenScope

T = TypeVar("T")

#: Where a local `chronosched up` listens for gRPC (chronosched.client.DEFAULT_TARGET).
DEFAULT_SERVER = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 30.0

#: The top-level commands this package adds to `chronosched`.
COMMANDS = ("ns", "def", "dag", "jobs", "workers", "tick", "schedules", "prune", "token")

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, measuring sub-command names at the indentation
    they are printed at: argparse measures them one level out, so a name
    of 9 letters (`schedules`) would wrap onto a line of its own."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if action.help is argparse.SUPPRESS:
            return
        for subaction in self._iter_indented_subactions(action):
            length = len(self._format_action_invocation(subaction)) + self._current_indent
            self._action_max_length = max(self._action_max_length, length)


def _typed(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises ValueError (argparse then
    exits 2 with the message, naming the flag)."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _positive_int(text: str) -> int:
    value = int(text) if text.strip().lstrip("-").isdigit() else None
    if value is None or value < 1:
        raise ValueError(f"expected a whole number of 1 or more, got {text!r}")
    return value


def _limit(text: str) -> int:
    value = int(text) if text.strip().isdigit() else None
    if value is None:
        raise ValueError(f"expected a whole number (0 for no limit), got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise ValueError(f"must be more than 0 seconds, got {text!r}")
    return value


def _dag_state(text: str) -> DagState:
    return _values.parse_enum(DagState, text, "DAG state")


def _job_state(text: str) -> JobState:
    return _values.parse_enum(JobState, text, "job state")


def _duration(text: str) -> timedelta:
    return _values.parse_duration(text)


def _common() -> argparse.ArgumentParser:
    """The options every operator command takes, after its own arguments."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("server and output")
    group.add_argument(
        "--server",
        metavar="HOST:PORT",
        help=f"the gRPC server (env CHRONOSCHED_SERVER; default {DEFAULT_SERVER}, a local `chronosched up`)",
    )
    group.add_argument("--token", help="bearer token sent with every call (env CHRONOSCHED_TOKEN)")
    group.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="talk TLS, trusting the server's certificate if this CA issued it (env CHRONOSCHED_TLS_CA)",
    )
    group.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="client certificate for a server with mutual TLS; needs --tls-key "
        "(env CHRONOSCHED_TLS_CLIENT_CERT)",
    )
    group.add_argument(
        "--tls-key", metavar="FILE", help="the key of --tls-cert (env CHRONOSCHED_TLS_CLIENT_KEY)"
    )
    group.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "yaml"),
        default="table",
        help="table for people (default), json or yaml for scripts (proto field names)",
    )
    group.add_argument(
        "--timeout",
        type=_typed(_seconds),
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"deadline of each call (default {DEFAULT_TIMEOUT:g})",
    )
    return common


class _Builder:
    """Adds leaf commands with the common options and a handler name."""

    def __init__(self, common: argparse.ArgumentParser) -> None:
        self.common = common

    def group(self, sub: Subparsers, name: str, summary: str, description: str) -> Subparsers:
        parser = sub.add_parser(name, help=summary, description=description, formatter_class=HelpFormatter)
        return parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def leaf(
        self, sub: Subparsers, name: str, handler: str, summary: str, **extra: Any
    ) -> argparse.ArgumentParser:
        parser = sub.add_parser(
            name,
            parents=[self.common],
            help=summary,
            description=extra.pop("description", summary[0].upper() + summary[1:] + "."),
            **extra,
        )
        parser.set_defaults(operator=handler)
        return parser


def _namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("namespace", metavar="NS", help="the namespace")


def _definition(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "definition",
        metavar="DEF",
        help="a definition: NAME (its latest version), NAME@VERSION or a def_id",
    )


def _dag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dag", metavar="DAG", help="the DAG's id")


def _job(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", metavar="JOB", help="the job's id")


def _job_namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        metavar="NS",
        help="only if the job is in this namespace (a job elsewhere is not found)",
    )


def _token_scope(text: str) -> TokenScope:
    return _values.parse_enum(TokenScope, text, "token scope")


def _watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval",
        type=_typed(_seconds),
        default=0.5,
        metavar="SECONDS",
        help="how often the DAG is polled while watching (default 0.5)",
    )


def _list_limit(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument(
        "--limit",
        type=_typed(_limit),
        default=default,
        metavar="N",
        help=f"list at most N (default {default}; 0 lists all)",
    )


def add_commands(sub: Subparsers) -> None:
    """Add the operator commands (see COMMANDS) to `chronosched`'s subparsers."""
    b = _Builder(_common())

    # --- ns ---
    ns = b.group(
        sub,
        "ns",
        "create, list, show and delete namespaces",
        "Create, list, show and delete namespaces, the isolation boundary of everything else.",
    )
    p = b.leaf(ns, "create", "ns.create", "create a namespace")
    _namespace(p)
    p.add_argument("--description", default="", help="what the namespace is for")
    b.leaf(ns, "list", "ns.list", "list every namespace")
    p = b.leaf(ns, "get", "ns.get", "show one namespace")
    _namespace(p)
    p = b.leaf(
        ns,
        "delete",
        "ns.delete",
        "delete an empty namespace",
        description="Delete a namespace and everything finished in it; refused while anything in it "
        "could still run or fire.",
    )
    _namespace(p)

    # --- def ---
    defs = b.group(
        sub,
        "def",
        "create, list, show and retire job definitions",
        "Create job definitions from YAML files, list and show their versions and cron fires, "
        "and retire them.",
    )
    p = b.leaf(
        defs,
        "create",
        "def.create",
        "create definitions from a YAML file",
        description="Create the next version of each definition in a YAML file (one per YAML document; "
        "see docs/cli.md for the format).",
    )
    _namespace(p)
    p.add_argument("-f", "--file", required=True, metavar="FILE", help="the YAML file, - for stdin")
    p = b.leaf(defs, "list", "def.list", "list every definition version of a namespace")
    _namespace(p)
    p = b.leaf(defs, "get", "def.get", "show one definition version")
    _namespace(p)
    _definition(p)
    p = b.leaf(defs, "versions", "def.versions", "list the versions of a definition name")
    _namespace(p)
    p.add_argument("name", metavar="NAME", help="the definition's name")
    p = b.leaf(defs, "fires", "def.fires", "list the cron fires of a definition, newest first")
    _namespace(p)
    _definition(p)
    _list_limit(p, 50)
    p = b.leaf(
        defs,
        "retire",
        "def.retire",
        "retire a definition",
        description="Retire the line of versions a definition belongs to: no new jobs of it, and its "
        "schedule stops; jobs already made run to their end.",
    )
    _namespace(p)
    _definition(p)

    # --- dag ---
    dag = b.group(
        sub,
        "dag",
        "submit, list, follow and draw DAGs",
        "Submit DAGs from YAML files, list, start, cancel and delete them, watch them run and draw them.",
    )
    p = b.leaf(
        dag,
        "submit",
        "dag.submit",
        "create a DAG from a YAML file",
        description="Create a DAG with its jobs and dependencies from a YAML file in one call, started "
        "unless the file or --no-start says otherwise (see docs/cli.md for the format).",
    )
    _namespace(p)
    p.add_argument("-f", "--file", required=True, metavar="FILE", help="the YAML file, - for stdin")
    p.add_argument(
        "--watch", action="store_true", help="follow the DAG until it settles; exit 0 if it succeeded"
    )
    p.add_argument("--no-start", action="store_true", help="create it PENDING (start it with `dag start`)")
    _watch_options(p)
    p = b.leaf(dag, "list", "dag.list", "list the live DAGs of a namespace")
    _namespace(p)
    p.add_argument(
        "--state",
        type=_typed(_dag_state),
        help=f"only DAGs in this state ({', '.join(_values.choices(DagState))})",
    )
    _list_limit(p, 1000)
    for name, summary in (
        ("get", "show one DAG"),
        ("start", "start a PENDING DAG"),
        ("cancel", "cancel every unfinished job of a DAG"),
        ("delete", "cancel a DAG and remove it"),
    ):
        p = b.leaf(dag, name, f"dag.{name}", summary)
        _namespace(p)
        _dag(p)
    p = b.leaf(
        dag,
        "watch",
        "dag.watch",
        "follow a DAG until it settles",
        description="Follow a DAG until it settles: redrawn in place on a terminal, one line per change "
        "when piped. Exits 0 if it succeeded, 1 if it failed or was cancelled.",
    )
    _namespace(p)
    _dag(p)
    _watch_options(p)
    p = b.leaf(
        dag,
        "show",
        "dag.show",
        "draw a DAG as a tree, Mermaid or Graphviz",
        description="Draw a DAG as a text tree with each job's state, or print Mermaid or Graphviz (dot) "
        "source. Big DAGs are summarised (see the --max-* options).",
    )
    _namespace(p)
    _dag(p)
    p.add_argument("--format", choices=("tree", "mermaid", "dot"), default="tree", help="default tree")
    p.add_argument(
        "--max-children",
        type=_typed(_limit),
        default=10,
        metavar="N",
        help="show at most N children of a job (or N roots), then one summary (default 10; 0: all)",
    )
    p.add_argument(
        "--max-depth",
        type=_typed(_limit),
        default=20,
        metavar="N",
        help="draw at most N levels (default 20; 0: all)",
    )
    p.add_argument(
        "--max-lines",
        type=_typed(_limit),
        default=400,
        metavar="N",
        help="stop after N entries (default 400; 0: no limit)",
    )

    # --- jobs ---
    jobs = b.group(
        sub,
        "jobs",
        "list and show jobs, record their results",
        "List and show jobs, and record a job's success or failure by hand (jobs no worker runs).",
    )
    p = b.leaf(jobs, "list", "jobs.list", "list the live jobs of a namespace")
    _namespace(p)
    p.add_argument(
        "--state",
        type=_typed(_job_state),
        help=f"only jobs in this state ({', '.join(_values.choices(JobState))})",
    )
    p.add_argument("--dag", metavar="DAG", help="only the jobs of this DAG (its id)")
    _list_limit(p, 1000)
    p = b.leaf(jobs, "get", "jobs.get", "show one job")
    _namespace(p)
    _job(p)
    p = b.leaf(
        jobs,
        "enqueue",
        "jobs.enqueue",
        "enqueue many standalone runs of a definition in one call",
        description="Enqueue standalone runs of a definition in one call, all or none: --count runs with "
        "--payload, or one run per line of FILE (a JSON object: that run's payload). Prints the new "
        "job ids in order.",
    )
    _namespace(p)
    _definition(p)
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--count", type=_typed(_positive_int), default=1, metavar="N", help="how many runs (default 1)"
    )
    how.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        help="one run per non-empty line, each a JSON object: its payload ('-': standard input)",
    )
    p.add_argument(
        "--payload",
        type=_typed(_values.parse_json_object),
        metavar="JSON",
        help="a JSON object, every run's payload (with --file: under each line's)",
    )
    p.add_argument(
        "--priority", type=int, metavar="P", help="every run's priority (default: the definition's)"
    )
    p = b.leaf(
        jobs,
        "complete",
        "jobs.complete",
        "record a job's success",
        description="Record the success of a READY or RUNNING job; with --attempt only if that is its "
        "current attempt.",
    )
    _job(p)
    p.add_argument("--result", type=_typed(_values.parse_json_object), metavar="JSON", help="a JSON object")
    p.add_argument("--attempt", type=_typed(_positive_int), metavar="N", help="fence on this attempt")
    _job_namespace(p)
    p = b.leaf(
        jobs,
        "fail",
        "jobs.fail",
        "record a job's failure",
        description="Record a failure of a READY or RUNNING job: it is retried while it has attempts "
        "left, unless --non-retryable.",
    )
    _job(p)
    p.add_argument("--error", required=True, metavar="TEXT", help="what went wrong")
    p.add_argument("--non-retryable", action="store_true", help="fail it for good, attempts left or not")
    p.add_argument("--attempt", type=_typed(_positive_int), metavar="N", help="fence on this attempt")
    _job_namespace(p)

    # --- workers ---
    workers = b.group(
        sub,
        "workers",
        "list the workers connected to the server",
        "List the workers connected to the server: their open streams on every server replica "
        "of the database, with the namespaces, kinds and slots they serve.",
    )
    p = b.leaf(
        workers,
        "list",
        "workers.list",
        "list the connected workers",
        description="List the connected workers (one row per open stream, in worker id order): "
        "those taking jobs from NS, naming it or serving every namespace, or all the token may see.",
    )
    p.add_argument(
        "namespace",
        metavar="NS",
        nargs="?",
        help="only the workers taking jobs from this namespace (default: every namespace)",
    )
    _list_limit(p, 1000)

    # --- tick ---
    p = b.leaf(
        sub,
        "tick",
        "tick",
        "run a definition once now",
        description="Enqueue one standalone run of a definition now, its payload merged over the "
        "definition's template.",
    )
    _namespace(p)
    _definition(p)
    p.add_argument("--payload", type=_typed(_values.parse_json_object), metavar="JSON", help="a JSON object")

    # --- schedules ---
    schedules = b.group(
        sub,
        "schedules",
        "show, pause and resume cron schedules",
        "Show, pause and resume the cron schedule of a definition name.",
    )
    for name, summary in (
        ("get", "show a definition's schedule and its next fire times"),
        ("pause", "stop a schedule from firing until resumed"),
        ("resume", "let a paused schedule fire again from its next tick"),
    ):
        p = b.leaf(schedules, name, f"schedules.{name}", summary)
        _namespace(p)
        p.add_argument("name", metavar="NAME", help="the definition's name")

    # --- prune ---
    p = b.leaf(
        sub,
        "prune",
        "prune",
        "move finished work into history now",
        description="Move finished DAGs and standalone jobs that ended more than --older-than ago into "
        "the history tables now (the server's retention does it by itself).",
    )
    p.add_argument(
        "--older-than",
        type=_typed(_duration),
        metavar="DURATION",
        help="e.g. 7d, 12h, 30m (default 7d)",
    )
    p.add_argument("--namespace", metavar="NS", help="only this namespace")

    # --- token ---
    token = b.group(
        sub,
        "token",
        "create, list and revoke bearer tokens (admin)",
        "Create, list and revoke the bearer tokens calls present (docs/security.md). Every action "
        "needs an admin token (--token or CHRONOSCHED_TOKEN).",
    )
    p = b.leaf(
        token,
        "create",
        "token.create",
        "create a token and print it once",
        description="Create a bearer token. Its secret is printed once, alone on the last line of the "
        "output; the server keeps only its hash.",
    )
    p.add_argument(
        "--scope",
        required=True,
        type=_typed(_token_scope),
        help=f"what it may do: {', '.join(_values.choices(TokenScope))}",
    )
    p.add_argument(
        "--namespace",
        metavar="NS",
        help="the namespace it is limited to, or '*' for every namespace (not for an admin token)",
    )
    p.add_argument(
        "--expires",
        type=_typed(_duration),
        metavar="DURATION",
        help="it stops working after this long, e.g. 30d, 12h (default: until revoked)",
    )
    p.add_argument("--description", default="", help="who or what holds it")
    p = b.leaf(token, "list", "token.list", "list tokens (never their secrets)")
    p.add_argument(
        "--namespace", metavar="NS", help="only the tokens of this namespace ('*': every-namespace ones)"
    )
    p.add_argument("--all", action="store_true", help="also revoked and expired tokens")
    _list_limit(p, 1000)
    p = b.leaf(token, "revoke", "token.revoke", "revoke a token")
    p.add_argument("token_id", metavar="ID", help="the token's id (`token list` shows it)")
