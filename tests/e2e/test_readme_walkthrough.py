"""The README's "Use it over REST" walk-through, run as written (only the
host and port changed) with bash, curl and jq against a `chronosched up` of
its own, then checked through the API: its first DAG succeeds, and the cron
definition it retires at the end never fires again."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from chronosched_server.cron import parse_schedule
from tests.e2e.conftest import UpProcess
from tests.support.processes import clean_env
from tests.support.rest import Json, ok
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(240)

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Use it over REST"
README_HOST = "http://127.0.0.1:8080"
CRON = "*/5 * * * * *"  # the walk-through's cron example


def walkthrough_script() -> str:
    """The first ```sh block of the README section."""
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    found = re.search(r"^```sh\n(.*?)^```$", section, re.S | re.M)
    assert found, f"no ```sh block in the README section {SECTION!r}"
    return found[1]


def json_values(output: str) -> list[Any]:
    """Every JSON value curl printed, in order (bodies follow each other
    without separators)."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    pos = 0
    while True:
        while pos < len(output) and output[pos].isspace():
            pos += 1
        if pos == len(output):
            return values
        value, pos = decoder.raw_decode(output, pos)
        values.append(value)


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def reasons(body: Json) -> list[str]:
    return [d.get("reason", "") for d in body.get("details", [])]


def test_the_readme_walkthrough_runs_as_written(data_root: Path, tmp_path: Path) -> None:
    for tool in ("bash", "curl", "jq"):
        if shutil.which(tool) is None:
            pytest.fail(f"the README walk-through needs `{tool}` on PATH; install it to run this test")
    up = UpProcess(data_dir=data_root / "data", log_path=tmp_path / "up.log")
    up.start()
    try:
        up.wait_ready()
        script = walkthrough_script()
        assert script.count(README_HOST) >= 2, "the walk-through's API and healthz URLs moved"
        script = "set -euo pipefail\n" + script.replace(README_HOST, up.base_url)
        with httpx.Client(base_url=up.base_url, timeout=30) as api:
            # `up` says it is ready only once its two local workers have
            # connected, and the walk-through lists them straight away.
            assert "workers: 2 local, connected" in up.log_path.read_text(errors="replace")
            workers = ok(api.get("/api/v1/workers")).get("workers", [])
            assert len(workers) == 2, workers
            control = _control_schedule(api)
            run = subprocess.run(
                ["bash", "-c", script],
                capture_output=True,
                text=True,
                env=clean_env(),
                timeout=120,
                check=False,
            )
            assert run.returncode == 0, f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
            _check(api, json_values(run.stdout), control)
    except BaseException:
        print(up.log_tail())
        raise
    finally:
        up.stop()


def _control_schedule(api: httpx.Client) -> str:
    """A live schedule on the walk-through's spec, in a namespace of its own:
    its fires show how far the schedulers have got."""
    ns = f"control-{uuid.uuid4().hex[:8]}"
    ok(api.post("/api/v1/namespaces", json={"namespace_id": ns}))
    body = {"name": "control", "kind": "command", "payload_template": {"argv": ["true"]}, "cron_spec": CRON}
    created = ok(api.post(f"/api/v1/definitions/{ns}", json=body))
    return f"/api/v1/definitions/{ns}/{created['def_id']}/fires"


def _fires(api: httpx.Client, url: str) -> list[Json]:
    listed: list[Json] = ok(api.get(url, params={"page_size": 1000}))["fires"]
    return listed


def _check(api: httpx.Client, printed: list[Any], control_fires: str) -> None:
    # What it printed: the namespace delete refused with counts, the retired
    # definition, and a healthy server last.
    assert printed and printed[-1].get("status") == "SERVING", printed[-3:]
    refused = [v for v in printed if isinstance(v, dict) and "NAMESPACE_NOT_EMPTY" in reasons(v)]
    assert len(refused) == 1 and refused[0]["code"] == 9, refused
    retired = [v for v in printed if isinstance(v, dict) and v.get("name") == "beat" and v.get("retire_time")]
    assert len(retired) == 1, printed
    beat = retired[0]
    assert beat["cron_spec"] == CRON and beat["next_fire_times"] == []

    # Why b and a were not running, in the order asked, and the workers list.
    waits = [v for v in printed if isinstance(v, dict) and "reason" in v and "message" in v]
    assert [w["reason"] for w in waits] == [
        "REASON_DAG_NOT_STARTED",
        "REASON_PARENTS",
        "REASON_NO_WORKER",
    ], waits
    assert waits[1]["message"] == "waiting on 1 unfinished parent: a (READY)"
    assert waits[2]["message"] == "no connected worker serves kind manual in this namespace"
    (workers,) = [v for v in printed if isinstance(v, dict) and "workers" in v]
    assert len(workers["workers"]) == 2 and all("command" in w["kinds"] for w in workers["workers"])
    # Its first DAG ran on `up`'s workers.
    dags = ok(api.get("/api/v1/dags/team-a", params={"page_size": 100}))["dags"]
    (etl,) = [d for d in dags if d["name"] == "etl"]
    wait_until(
        lambda: ok(api.get(f"/api/v1/dags/team-a/{etl['dag_id']}"))["state"] == "STATE_SUCCEEDED",
        within=60,
        what="the walk-through's first DAG to succeed",
        every=0.2,
    )

    # The retired schedule: marked so, and silent from the retire on.
    schedule = ok(api.get("/api/v1/schedules/team-a/beat"))
    assert schedule["retire_time"] == beat["retire_time"] and schedule["next_fire_times"] == []
    retire_time = parse(beat["retire_time"])
    fires_url = f"/api/v1/definitions/team-a/{beat['def_id']}/fires"
    after_retire = _fires(api, fires_url)
    assert all(parse(f["fire_time"]) < retire_time for f in after_retire), after_retire
    # The retired name's next tick after the retire: once the control
    # schedule (same spec) has fired it, every scheduler has passed it.
    (next_tick,) = parse_schedule(CRON).next_times(retire_time, 1)
    wait_until(
        lambda: any(parse(f["scheduled_time"]) >= next_tick for f in _fires(api, control_fires)),
        within=30,
        what=f"the control schedule to fire its tick at {next_tick.isoformat()}",
        every=0.2,
    )
    assert _fires(api, fires_url) == after_retire
