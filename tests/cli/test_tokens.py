"""`chronosched token create|list|revoke`, and the operator commands
against a server that requires tokens (--token / CHRONOSCHED_TOKEN)."""

from __future__ import annotations

import json
import re

import pytest

from chronosched import Client
from chronosched_server.cli import main
from tests.cli.conftest import Cli, Result, chronosched
from tests.client.conftest import Running
from tests.support.auth import ADMIN_TOKEN, auth_server

__all__ = ["auth_server"]

pytestmark = pytest.mark.timeout(60)

SECRET = re.compile(r"cs_([0-9a-f]{16})_[A-Za-z0-9_-]{43}")


@pytest.fixture
def run(auth_server: Running, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`chronosched ARGS...` in this process, with the admin token in CHRONOSCHED_TOKEN."""
    monkeypatch.setenv("CHRONOSCHED_SERVER", auth_server.target)
    monkeypatch.setenv("CHRONOSCHED_TOKEN", ADMIN_TOKEN)

    def call(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return call


def test_token_create_prints_the_token_alone_on_the_last_line(run: Cli) -> None:
    assert run("ns", "create", "team-a").code == 0
    made = run(
        "token",
        "create",
        "--namespace",
        "team-a",
        "--scope",
        "write",
        "--expires",
        "30d",
        "--description",
        "ci",
    )
    assert made.code == 0, made.err
    lines = made.out.rstrip("\n").split("\n")
    match = SECRET.fullmatch(lines[-1])
    assert match is not None, made.out
    # Above it, the token's fields (its id among them), as `token list` shows them.
    fields = dict(line.split(None, 1) for line in lines[:-1] if " " in line.strip())
    assert (fields["token_id"].strip(), fields["namespace_id"].strip()) == (match[1], "team-a")
    assert "shown only now" in made.err
    secret = lines[-1]
    # The token works for its namespace, as the CLI's --token.
    listed = run("ns", "list", "-o", "json", "--token", secret)
    assert listed.code == 0 and [n["namespace_id"] for n in json.loads(listed.out)] == ["team-a"]
    denied = run("ns", "create", "team-b", "--token", secret)
    assert denied.code == 1 and "PERMISSION_DENIED" in denied.err

    tokens = json.loads(run("token", "list", "-o", "json").out)
    assert [(t["token_id"], t["scope"], t["namespace_id"], t["description"]) for t in tokens] == [
        (match[1], "SCOPE_WRITE", "team-a", "ci")
    ]
    assert tokens[0]["expire_time"] is not None and "secret" not in tokens[0]
    table = run("token", "list")
    assert table.code == 0 and match[1] in table.out and secret not in table.out

    revoked = run("token", "revoke", match[1], "-o", "json")
    assert revoked.code == 0 and json.loads(revoked.out)["revoke_time"] is not None
    assert json.loads(run("token", "list", "-o", "json").out) == []
    assert [t["token_id"] for t in json.loads(run("token", "list", "--all", "-o", "json").out)] == [match[1]]
    refused = run("ns", "list", "--token", secret)
    assert refused.code == 1 and "UNAUTHENTICATED" in refused.err and "TOKEN_REVOKED" in refused.err


def test_token_create_as_json_carries_the_secret(run: Cli) -> None:
    made = run("token", "create", "--scope", "worker", "--namespace", "*", "-o", "json")
    assert made.code == 0, made.err
    data = json.loads(made.out)
    assert SECRET.fullmatch(data["secret"]) and data["token"]["namespace_id"] == "*"
    assert data["token"]["scope"] == "SCOPE_WORKER"


def test_token_create_refusals(run: Cli) -> None:
    missing = run("token", "create", "--scope", "read")
    assert missing.code == 1 and "namespace_id" in missing.err
    bad = run("token", "create", "--scope", "reader", "--namespace", "x")
    assert bad.code == 2 and "token scope" in bad.err
    nowhere = run("token", "create", "--scope", "read", "--namespace", "nowhere")
    assert nowhere.code == 1 and "NAMESPACE_NOT_FOUND" in nowhere.err


def test_commands_without_a_token_are_refused(auth_server: Running) -> None:
    done = chronosched(auth_server.target, "ns", "list")
    assert done.returncode == 1 and "UNAUTHENTICATED" in done.stderr and "TOKEN_MISSING" in done.stderr
    with Client(auth_server.target, token=ADMIN_TOKEN) as admin:
        admin.create_namespace("team-a")
    last = chronosched(
        auth_server.target,
        "token",
        "create",
        "--scope",
        "read",
        "--namespace",
        "team-a",
        "--token",
        ADMIN_TOKEN,
    )
    assert last.returncode == 0, last.stderr
    secret = last.stdout.splitlines()[-1]
    assert SECRET.fullmatch(secret)
    shown = chronosched(auth_server.target, "ns", "get", "team-a", "--token", secret)
    assert shown.returncode == 0 and "team-a" in shown.stdout


def test_jobs_complete_takes_a_namespace(run: Cli, auth_server: Running) -> None:
    assert run("ns", "create", "team-a").code == 0
    assert run("ns", "create", "team-b").code == 0
    with Client(auth_server.target, token=ADMIN_TOKEN) as admin:
        step = admin.create_definition("team-a", "step", "manual")
        job = admin.tick("team-a", step.def_id)
    elsewhere = run("jobs", "complete", job.job_id, "--namespace", "team-b")
    assert elsewhere.code == 1 and "JOB_NOT_FOUND" in elsewhere.err
    done = run("jobs", "complete", job.job_id, "--namespace", "team-a", "-o", "json")
    assert done.code == 0 and json.loads(done.out)["state"] == "STATE_SUCCEEDED"
