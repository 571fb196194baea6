"""Which event loop `chronosched server` runs on (chronosched_server.eventloop)."""

from __future__ import annotations

import asyncio

import pytest

from chronosched_server import eventloop
from chronosched_server.cli import main as server_main


async def _which() -> tuple[str, str]:
    return eventloop.running(), type(asyncio.get_running_loop()).__module__


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvloop is a dependency wherever the suite runs (Linux); without it
    # this fails, as the server would then quietly run slower.
    monkeypatch.delenv(eventloop.ENV, raising=False)
    assert eventloop.chosen() == "uvloop"
    name, module = eventloop.run(_which())
    assert name == "uvloop" and module.startswith("uvloop")


@pytest.mark.parametrize("value", ["asyncio", " AsyncIO "])
def test_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(eventloop.ENV, value)
    name, module = eventloop.run(_which())
    assert name == "asyncio" and module.startswith("asyncio")


def test_an_unknown_loop_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.ENV, "trio")
    with pytest.raises(ValueError, match=r"CHRONOSCHED_EVENT_LOOP='trio': expected one of uvloop, asyncio"):
        eventloop.run(_which())


def test_the_server_refuses_an_unknown_loop_before_starting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(eventloop.ENV, "trio")
    assert server_main(["server", "--database-url", "postgresql:///nowhere"]) == 2
    err = capsys.readouterr().err
    assert "chronosched server: error: CHRONOSCHED_EVENT_LOOP='trio': expected one of uvloop, asyncio" in err
