"""Exit statuses as processes see them: 0 done, 1 the server refused (its
message and field violations on stderr), 2 the server cannot be reached or
the command line is bad. Also --token and the environment defaults."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from chronosched import Client
from chronosched.cli import COMMANDS, DEFAULT_SERVER
from chronosched.client import DEFAULT_TARGET
from chronosched_server.cli import build_parser
from tests.cli.conftest import NS, chronosched, command
from tests.client.conftest import Proxy, Running
from tests.support.processes import clean_env, free_port

pytestmark = pytest.mark.timeout(60)


def test_0_when_done(server: Running) -> None:
    result = chronosched(server.target, "ns", "create", NS)
    assert (result.returncode, result.stderr) == (0, "")
    listed = chronosched(server.target, "ns", "list", "-o", "json")
    assert listed.returncode == 0 and '"namespace_id": "team-a"' in listed.stdout


def test_1_when_the_server_refuses(server: Running) -> None:
    missing = chronosched(server.target, "dag", "get", NS, "01a22acc-7e5d-7000-9757-9954f54fef82")
    assert missing.returncode == 1 and missing.stdout == ""
    assert (
        missing.stderr
        == "chronosched: error: NOT_FOUND [NAMESPACE_NOT_FOUND]: namespace 'team-a' not found\n"
    )

    bad = chronosched(server.target, "ns", "create", "Team_A")
    assert bad.returncode == 1
    assert bad.stderr == (
        "chronosched: error: INVALID_ARGUMENT: invalid request (1 field)\n"
        "  namespace_id: 'Team_A' must match [a-z0-9]([a-z0-9-]{0,61}[a-z0-9])? (1-63 chars)"
        " (INVALID_FORMAT)\n"
    )


def test_2_when_the_server_cannot_be_reached() -> None:
    target = f"127.0.0.1:{free_port()}"
    result = chronosched(target, "ns", "list", "--timeout", "5")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"chronosched: error: cannot reach the server at {target}: ")


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (
            ["dag", "list", NS, "--state", "sleeping"],
            "argument --state: unknown DAG state 'sleeping' (one of: ",
        ),
        (["jobs", "complete", "x", "--result", "[1]"], "argument --result: expected a JSON object"),
        (["prune", "--older-than", "7"], "argument --older-than: not a duration: '7'"),
        (["jobs", "enqueue", NS, "step", "--count", "0"], "argument --count: "),
        (
            ["jobs", "enqueue", NS, "step", "--count", "2", "-f", "runs.jsonl"],
            "argument -f/--file: not allowed with argument --count",
        ),
        (["dag", "show", NS, "d", "--format", "png"], "argument --format: invalid choice: 'png'"),
        (["dag"], "the following arguments are required: ACTION"),
        (
            ["dag", "submit", NS, "-f", "x.yaml", "--watch", "--no-start"],
            "--watch and --no-start do not go together",
        ),
    ],
)
def test_2_on_bad_usage(argv: list[str], complaint: str) -> None:
    # No server: usage is checked before any call.
    result = chronosched(f"127.0.0.1:{free_port()}", *argv)
    assert result.returncode == 2, result
    assert complaint in result.stderr


def test_the_server_and_token_come_from_flags_or_the_environment(server: Running, proxy: Proxy) -> None:
    assert DEFAULT_SERVER == DEFAULT_TARGET  # the parser's copy of the client's default
    # --server wins over CHRONOSCHED_SERVER; CHRONOSCHED_TOKEN is sent as a bearer token.
    env = clean_env({"CHRONOSCHED_SERVER": f"127.0.0.1:{free_port()}", "CHRONOSCHED_TOKEN": "s3cret"})
    result = subprocess.run(
        command("ns", "list", "--server", proxy.target),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [s.authorization for s in proxy.calls("ListNamespaces")] == ["Bearer s3cret"]
    result = subprocess.run(
        command("ns", "list", "--server", proxy.target, "--token", "other"),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert proxy.calls("ListNamespaces")[-1].authorization == "Bearer other"


def test_python_m_chronosched_cli_runs_the_same_commands(server: Running) -> None:
    with Client(server.target) as client:
        client.create_namespace(NS, "alone")
    result = subprocess.run(
        [sys.executable, "-m", "chronosched.cli", "ns", "get", NS, "-o", "json"],
        capture_output=True,
        text=True,
        env=clean_env({"CHRONOSCHED_SERVER": server.target}),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"description": "alone"' in result.stdout


def _leaves() -> dict[str, argparse.ArgumentParser]:
    """Every operator command's parser, by its words (`dag show`)."""
    found: dict[str, argparse.ArgumentParser] = {}

    def visit(parser: argparse.ArgumentParser, words: str) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[words] = parser
        for sub in subs:
            for name, child in sub.choices.items():
                visit(child, f"{words} {name}".strip())

    for name, parser in _top_commands().items():
        if name in COMMANDS:
            visit(parser, name)
    return found


def _top_commands() -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_operator_command_has_a_description_and_the_common_options() -> None:
    leaves = _leaves()
    assert len(leaves) == 32  # 27, token create, list and revoke, workers list and jobs enqueue
    for words, parser in leaves.items():
        description = parser.description or ""
        assert len(description.split()) >= 3 and description.endswith("."), words
        assert parser.prog == f"chronosched {words}"
        options = {o for a in parser._actions for o in a.option_strings}
        assert {"--server", "--token", "-o", "--output", "--timeout"} <= options, words
