"""The cron scheduler through the real `chronosched up` and Envoy: a command
definition on an every-second schedule fires, its jobs run on the local
workers, and the ledger and pause/resume are reachable over REST."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from tests.support.rest import NOT_FOUND, Json, create_definition, error, is_uuid, ok
from tests.support.waiting import stays_blocking, wait_until

pytestmark = pytest.mark.timeout(120)


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_cron_fires_run_and_the_ledger_pauses_and_resumes_over_rest(api: httpx.Client, ns: str) -> None:
    d = create_definition(
        api, ns, "beat", kind="command", payload_template={"argv": ["true"]}, cron_spec="* * * * * *"
    )
    fires_url = f"/api/v1/definitions/{ns}/{d['def_id']}/fires"
    schedule_url = f"/api/v1/schedules/{ns}/beat"

    def fires() -> list[Json]:
        listed: list[Json] = ok(api.get(fires_url, params={"page_size": 1000}))["fires"]
        return listed

    wait_until(lambda: len(fires()) >= 3, within=15, what="three fires", every=0.1)
    page = ok(api.get(fires_url, params={"page_size": 2}))
    assert len(page["fires"]) == 2 and page["next_page_token"]
    newest, older = page["fires"]
    assert parse(newest["scheduled_time"]) > parse(older["scheduled_time"])
    assert newest["status"] == "STATUS_FIRED" and newest["reason"] == "" and is_uuid(newest["job_id"])
    assert (newest["namespace_id"], newest["name"], newest["def_id"], newest["def_version"]) == (
        ns,
        "beat",
        d["def_id"],
        1,
    )
    rest = ok(api.get(fires_url, params={"page_size": 2, "page_token": page["next_page_token"]}))
    assert parse(rest["fires"][0]["scheduled_time"]) < parse(older["scheduled_time"])

    # The fired jobs run on `up`'s local workers.
    job_id = older["job_id"]
    wait_until(
        lambda: ok(api.get(f"/api/v1/jobs/{ns}/{job_id}"))["state"] == "STATE_SUCCEEDED",
        within=30,
        what="a fired job to succeed",
        every=0.1,
    )

    paused = ok(api.post(f"{schedule_url}/pause", json={}))
    assert paused["paused"] is True and paused["def_id"] == d["def_id"] and paused["next_fire_times"] == []
    pause_time = parse(paused["pause_time"])
    # The point is that nothing fires while paused, so this can only watch
    # for a while: 1.5 s spans at least one tick of the every-second spec.
    stays_blocking(
        lambda: all(parse(f["scheduled_time"]) < pause_time for f in fires()),
        for_s=1.5,
        what="no fire after the pause",
    )

    resumed = ok(api.post(f"{schedule_url}/resume", json={}))
    assert resumed["paused"] is False and len(resumed["next_fire_times"]) == 5
    resume_time = parse(resumed["resume_time"])
    wait_until(
        lambda: any(parse(f["scheduled_time"]) > resume_time for f in fires()),
        within=10,
        what="a fire after resume",
        every=0.1,
    )
    # Nothing fired (or was recorded) for the ticks in between.
    assert not any(pause_time <= parse(f["scheduled_time"]) <= resume_time for f in fires())
    assert ok(api.get(schedule_url))["cron_spec"] == "* * * * * *"

    # A version without a spec stops it.
    create_definition(api, ns, "beat", kind="command", payload_template={"argv": ["true"]})
    stopped = ok(api.get(schedule_url))
    assert (stopped["def_version"], stopped["cron_spec"], stopped["next_fire_times"]) == (2, "", [])

    error(api.post(f"/api/v1/schedules/{ns}/missing/pause", json={}), 404, NOT_FOUND)
