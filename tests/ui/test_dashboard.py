"""The dashboard in a real headless Chromium against a real `chronosched up`.

Each test makes its own namespace through the REST API, drives the page like
a user (links, clicks, keyboard), reads what is drawn from the SVG's data
attributes and writes a screenshot to test-output/ui-screenshots/.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from chronosched_server.local.envoy import UI_CONTENT_TYPES, UI_DIR, ui_files
from tests.support.up import UpProcess
from tests.support.waiting import wait_until
from tests.ui.conftest import WIDTH, screenshot

pytestmark = pytest.mark.timeout(120)

Json = dict[str, Any]


def ok(resp: httpx.Response) -> Json:
    assert resp.status_code == 200, (
        f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
    )
    body: Json = resp.json()
    return body


def create_definition(api: httpx.Client, ns: str, name: str, **fields: Any) -> str:
    body = {"name": name, "kind": "manual", **fields}
    def_id: str = ok(api.post(f"/api/v1/definitions/{ns}", json=body))["def_id"]
    return def_id


def create_dag(
    api: httpx.Client, ns: str, name: str, def_id: str, keys: list[str], deps: list[tuple[str, str]]
) -> tuple[str, dict[str, str]]:
    """A started DAG of `manual` jobs (no worker runs them: they wait until
    the test records an outcome). Returns its id and job ids by key."""
    dag = ok(
        api.post(
            f"/api/v1/dags/{ns}",
            json={
                "name": name,
                "jobs": [{"key": k, "def_id": def_id} for k in keys],
                "dependencies": [{"parent": p, "child": c} for p, c in deps],
                "start": True,
            },
        )
    )
    ids: dict[str, str] = {}
    token = ""
    while True:
        page = ok(
            api.get(
                f"/api/v1/dags/{ns}/{dag['dag_id']}/jobs", params={"page_size": 1000, "page_token": token}
            )
        )
        ids.update({j["key"]: j["job_id"] for j in page["jobs"]})
        token = page["next_page_token"]
        if not token:
            return dag["dag_id"], ids


def node_states(page: Page) -> dict[str, str]:
    states: dict[str, str] = page.eval_on_selector_all(
        "#dag-graph g.node[data-key]",
        "els => Object.fromEntries(els.map(e => [e.dataset.key, e.dataset.state]))",
    )
    return states


def connected_workers(api: httpx.Client, up: UpProcess, path: str = "/api/v1/workers") -> list[Json]:
    """The workers list once all of `up`'s local workers are on it (right
    after `up` starts, the second may still be connecting)."""
    expected = len(up.state.get("worker_pids", []))
    assert expected, "`up` runs local workers"

    def listed() -> list[Json] | None:
        workers: list[Json] = ok(api.get(path))["workers"]
        return workers if len(workers) == expected else None

    return wait_until(listed, within=15, what=f"{expected} connected workers at {path}")


def no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTH, f"the page is {width} px wide at a {WIDTH}-px viewport"


def test_dag_view_draws_the_graph_and_follows_it_live(
    page: Page, api: httpx.Client, up: UpProcess, ns: str
) -> None:
    approve = create_definition(api, ns, "approve")
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    dag_id, ids = create_dag(api, ns, "diamond", approve, ["a", "b", "c", "d"], edges)

    workers = len(connected_workers(api, up, f"/api/v1/workers/{ns}"))
    # From the front page, by links, as a user gets there.
    page.goto(f"{up.base_url}/ui/")
    overview = page.locator(f'tr[data-namespace="{ns}"]')
    expect(overview.locator('[data-cell="dags"] [data-state="RUNNING"]')).to_have_count(1)
    expect(overview.locator('[data-cell="ready"]')).to_have_text("1")
    expect(overview.locator('[data-cell="running"]')).to_have_text("0")
    expect(overview.locator('[data-cell="workers"]')).to_have_text(str(workers))
    screenshot(page, "namespaces")
    page.get_by_role("link", name=ns, exact=True).click()
    expect(page).to_have_url(re.compile(rf"/ui/#/dags/{ns}$"))
    row = page.locator(f'tr[data-dag-id="{dag_id}"]')
    expect(row).to_have_attribute("data-state", "RUNNING")
    expect(row).to_contain_text("0/4")
    row.get_by_role("link", name="diamond").click()
    expect(page).to_have_url(re.compile(rf"/ui/#/dags/{ns}/{dag_id}$"))
    expect(page.locator("#dag-graph[data-drawn]")).to_have_count(1)

    assert node_states(page) == {"a": "READY", "b": "PENDING", "c": "PENDING", "d": "PENDING"}
    drawn = page.eval_on_selector_all(
        "#dag-graph path.edge", "els => els.map(e => [e.dataset.from, e.dataset.to])"
    )
    assert sorted(map(tuple, drawn)) == sorted((ids[p], ids[c]) for p, c in edges)
    # Parents above children.
    y = page.eval_on_selector_all(
        "#dag-graph g.node", "els => Object.fromEntries(els.map(e => [e.dataset.key, Number(e.dataset.y)]))"
    )
    assert all(y[p] < y[c] for p, c in edges), y
    # Every state is written out, not only coloured.
    expect(page.locator('g.node[data-key="a"] text.node-state')).to_have_text("READY")
    expect(page.get_by_test_id("dag-state")).to_contain_text("RUNNING")
    no_horizontal_scroll(page)
    screenshot(page, "dag-mid-run")

    # A change made through the API shows within 3 s.
    ok(api.post(f"/api/v1/jobs/{ns}/{ids['a']}/complete", json={"result": {"rows": 3}}))
    began = time.monotonic()
    expect(page.locator('g.node[data-key="a"]')).to_have_attribute("data-state", "SUCCEEDED", timeout=3000)
    print(f"node a showed SUCCEEDED {time.monotonic() - began:.2f}s after CompleteJob returned")
    expect(page.locator('g.node[data-key="b"]')).to_have_attribute("data-state", "READY", timeout=3000)
    expect(page.locator('g.node[data-key="c"]')).to_have_attribute("data-state", "READY", timeout=3000)
    assert node_states(page)["d"] == "PENDING"
    screenshot(page, "dag-after-complete")


def test_a_dag_run_by_workers_is_followed_to_its_end(
    page: Page, api: httpx.Client, up: UpProcess, ns: str
) -> None:
    """`up`'s local workers run `command` jobs: the view follows RUNNING and
    SUCCEEDED as they happen and the timeline draws each run."""
    quick = create_definition(api, ns, "quick", kind="command", payload_template={"argv": ["true"]})
    slow = create_definition(api, ns, "slow", kind="command", payload_template={"argv": ["sleep", "2"]})
    dag = ok(
        api.post(
            f"/api/v1/dags/{ns}",
            json={
                "name": "etl",
                "jobs": [
                    {"key": "extract", "def_id": quick},
                    {"key": "transform-a", "def_id": slow},
                    {"key": "transform-b", "def_id": slow},
                    {"key": "load", "def_id": quick},
                ],
                "dependencies": [
                    {"parent": "extract", "child": "transform-a"},
                    {"parent": "extract", "child": "transform-b"},
                    {"parent": "transform-a", "child": "load"},
                    {"parent": "transform-b", "child": "load"},
                ],
                "start": True,
            },
        )
    )
    page.goto(f"{up.base_url}/ui/#/dags/{ns}/{dag['dag_id']}")
    expect(page.locator('g.node[data-key="transform-a"]')).to_have_attribute(
        "data-state", "RUNNING", timeout=10_000
    )
    expect(page.locator('g.node[data-key="extract"]')).to_have_attribute("data-state", "SUCCEEDED")
    expect(page.locator('#dag-timeline g.run[data-state="RUNNING"]')).not_to_have_count(0)
    screenshot(page, "dag-running")
    expect(page.get_by_test_id("dag-state")).to_contain_text("SUCCEEDED", timeout=15_000)
    expect(page.locator('#dag-graph g.node[data-state="SUCCEEDED"]')).to_have_count(4)
    expect(page.locator('#dag-timeline g.run[data-state="SUCCEEDED"]')).to_have_count(4)
    page.locator('g.node[data-key="transform-b"]').click()
    expect(page.get_by_test_id("job-result")).to_contain_text("exit_code")
    screenshot(page, "dag-succeeded")


def test_a_waiting_job_says_why(page: Page, api: httpx.Client, up: UpProcess, ns: str) -> None:
    """Needs the server side of Job.waiting (GetJob fills it)."""
    approve = create_definition(api, ns, "approve", payload_template={"who": "ops"})
    dag_id, ids = create_dag(api, ns, "gate", approve, ["first", "second"], [("first", "second")])
    page.goto(f"{up.base_url}/ui/#/dags/{ns}/{dag_id}")
    expect(page.locator("#dag-graph[data-drawn]")).to_have_count(1)

    # By keyboard: focus the node, Enter opens its details.
    page.locator('g.node[data-key="second"]').focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("job-key")).to_have_text("second")
    expect(page).to_have_url(re.compile(rf"\?job={ids['second']}$"))
    waiting = ok(api.get(f"/api/v1/jobs/{ns}/{ids['second']}"))["waiting"]
    assert waiting["reason"] == "REASON_PARENTS", waiting
    expect(page.get_by_test_id("waiting")).to_have_attribute("data-reason", "REASON_PARENTS")
    expect(page.get_by_test_id("waiting-reason")).to_have_text("Waiting for parents")
    expect(page.get_by_test_id("waiting-message")).to_have_text(waiting["message"])
    expect(page.get_by_test_id("job-definition")).to_have_text("approve@1")
    expect(page.get_by_test_id("job-attempt")).to_have_text("1/3")
    screenshot(page, "waiting-job-parents")

    # READY, but no worker serves kind `manual`.
    page.locator('g.node[data-key="first"]').click()
    expect(page.get_by_test_id("job-key")).to_have_text("first")
    waiting = ok(api.get(f"/api/v1/jobs/{ns}/{ids['first']}"))["waiting"]
    assert waiting["reason"] == "REASON_NO_WORKER", waiting
    expect(page.get_by_test_id("waiting")).to_have_attribute("data-reason", "REASON_NO_WORKER")
    expect(page.get_by_test_id("waiting-message")).to_have_text(waiting["message"])
    expect(page.locator("#job-details")).to_contain_text('"who": "ops"')
    # Times in the browser's zone, UTC on hover.
    created = page.locator("#job-details time").first
    expect(created).to_have_attribute("title", re.compile(r"^UTC \d{4}-\d\d-\d\dT.*Z$"))
    # Auth is off and nobody opted in: read-only.
    expect(page.get_by_test_id("complete-job")).to_have_count(0)
    expect(page.get_by_test_id("cancel-dag")).to_have_count(0)
    no_horizontal_scroll(page)
    screenshot(page, "waiting-job-no-worker")


def test_a_schedule_shows_its_next_fires_and_ledger_and_pauses(
    page: Page, api: httpx.Client, up: UpProcess, ns: str
) -> None:
    def_id = create_definition(api, ns, "tick", cron_spec="*/2 * * * * *", time_zone="Asia/Tokyo")
    wait_until(
        lambda: ok(api.get(f"/api/v1/definitions/{ns}/{def_id}/fires"))["fires"] or None,
        within=15,
        what="the schedule's first fire",
    )
    page.goto(f"{up.base_url}/ui/#/definitions/{ns}")
    page.get_by_role("link", name="tick", exact=True).click()
    expect(page).to_have_url(re.compile(rf"#/definitions/{ns}/{def_id}$"))
    expect(page.get_by_test_id("cron-spec")).to_have_text("*/2 * * * * *")
    fires = page.get_by_test_id("next-fires")
    expect(fires.locator("tbody tr")).to_have_count(5)
    expect(fires.locator("thead")).to_contain_text("In Asia/Tokyo")
    # Shown in the schedule's zone (UTC+9), two seconds apart.
    first_cells = fires.locator("tbody tr td:first-child")
    for text in first_cells.all_inner_texts():
        assert "GMT+9" in text, text
    times = fires.locator("tbody tr").evaluate_all("rows => rows.map(r => Date.parse(r.dataset.time))")
    assert [b - a for a, b in itertools.pairwise(times)] == [2000] * 4, times
    ledger = page.get_by_test_id("fires").locator("tbody tr")
    expect(ledger.first).to_have_attribute("data-status", "STATUS_FIRED")
    expect(page.get_by_test_id("pause")).to_have_count(0)
    no_horizontal_scroll(page)
    screenshot(page, "schedule")

    # Auth is off: actions appear once the user opts in, and ask first.
    page.locator("#token-box summary").click()
    page.locator("#actions-opt-in").check()
    page.get_by_test_id("pause").click()
    dialog = page.locator("dialog.confirm")
    expect(dialog).to_contain_text("Pause this schedule?")
    page.get_by_test_id("confirm-yes").click()
    expect(page.get_by_test_id("schedule-state")).to_have_attribute("data-paused", "true")
    assert ok(api.get(f"/api/v1/schedules/{ns}/tick"))["paused"] is True
    expect(page.get_by_test_id("resume")).to_be_visible()
    screenshot(page, "schedule-paused")
    # Backing out of the confirmation changes nothing.
    page.get_by_test_id("resume").click()
    page.get_by_test_id("confirm-no").click()
    expect(dialog).to_have_count(0)
    assert ok(api.get(f"/api/v1/schedules/{ns}/tick"))["paused"] is True

    # Retiring the name stops its schedule for good.
    page.get_by_test_id("retire").click()
    expect(dialog).to_contain_text("Retire tick?")
    page.get_by_test_id("confirm-yes").click()
    expect(page.get_by_test_id("schedule-state")).to_contain_text("Retired")
    assert ok(api.get(f"/api/v1/definitions/{ns}/{def_id}"))["retire_time"]
    expect(page.get_by_test_id("retire")).to_have_count(0)
    expect(page.get_by_test_id("resume")).to_have_count(0)


def test_job_actions_ask_first_then_record_outcomes(
    page: Page, api: httpx.Client, up: UpProcess, ns: str
) -> None:
    approve = create_definition(api, ns, "approve")
    dag_id, ids = create_dag(api, ns, "chain", approve, ["a", "b", "c"], [("a", "b"), ("b", "c")])
    page.goto(f"{up.base_url}/ui/#/dags/{ns}/{dag_id}")
    expect(page.locator("#dag-graph[data-drawn]")).to_have_count(1)
    # Auth is off: actions only after opting in (kept for the tab).
    page.locator("#token-box summary").click()
    page.locator("#actions-opt-in").check()
    page.locator("#token-box summary").click()

    page.locator('g.node[data-key="a"]').click()
    page.locator("#complete-result").fill('{"rows": 7}')
    page.get_by_test_id("complete-job").click()
    expect(page.locator("dialog.confirm")).to_contain_text("Mark this job as succeeded?")
    page.get_by_test_id("confirm-yes").click()
    expect(page.locator('g.node[data-key="a"]')).to_have_attribute("data-state", "SUCCEEDED")
    assert ok(api.get(f"/api/v1/jobs/{ns}/{ids['a']}"))["result"] == {"rows": 7}
    expect(page.get_by_test_id("job-result")).to_contain_text('"rows": 7')

    page.locator('g.node[data-key="b"]').click()
    expect(page.get_by_test_id("job-key")).to_have_text("b")
    page.locator("#fail-error").fill("bad input")
    page.locator("#fail-final").check()
    page.get_by_test_id("fail-job").click()
    page.get_by_test_id("confirm-yes").click()
    expect(page.locator('g.node[data-key="b"]')).to_have_attribute("data-state", "FAILED")
    expect(page.locator('g.node[data-key="c"]')).to_have_attribute("data-state", "SKIPPED")
    expect(page.get_by_test_id("dag-state")).to_contain_text("FAILED")
    expect(page.get_by_test_id("job-error")).to_have_text("bad input")
    expect(page.locator(".notice")).to_have_text("b: failure recorded.")
    assert ok(api.get(f"/api/v1/dags/{ns}/{dag_id}"))["state"] == "STATE_FAILED"
    # A finished job offers nothing to record.
    expect(page.get_by_test_id("fail-job")).to_have_count(0)
    screenshot(page, "dag-failed-by-action")


def test_the_dag_list_filters_by_state_and_pages(
    page: Page, api: httpx.Client, up: UpProcess, ns: str
) -> None:
    approve = create_definition(api, ns, "approve")
    running, _ = create_dag(api, ns, "running-one", approve, ["x"], [])
    for i in range(51):
        ok(api.post(f"/api/v1/dags/{ns}", json={"name": f"draft-{i:02d}"}))
    page.goto(f"{up.base_url}/ui/#/dags/{ns}")
    rows = page.locator('[data-testid="dags"] tbody tr')
    expect(rows).to_have_count(50)
    previous = page.get_by_role("button", name="← Previous")
    expect(previous).to_be_disabled()
    page.get_by_role("button", name="Next →").click()
    expect(rows).to_have_count(2)
    expect(page.get_by_role("button", name="Next →")).to_be_disabled()
    expect(previous).to_be_enabled()
    page.locator("#state-filter").select_option("STATE_RUNNING")
    expect(page).to_have_url(re.compile(r"\?state=STATE_RUNNING$"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-dag-id", running)
    expect(rows.first).to_contain_text("0/1")
    no_horizontal_scroll(page)
    screenshot(page, "dag-list")


def test_the_workers_page_lists_the_connected_workers(page: Page, api: httpx.Client, up: UpProcess) -> None:
    workers = connected_workers(api, up)
    page.goto(f"{up.base_url}/ui/")
    page.get_by_role("link", name="Workers", exact=True).first.click()
    rows = page.locator('[data-testid="workers"] tbody tr')
    expect(rows).to_have_count(len(workers))
    for worker in workers:
        row = page.locator(f'tr[data-worker-id="{worker["worker_id"]}"]')
        expect(row).to_contain_text(", ".join(worker["kinds"]))
        expect(row.locator("td.num").first).to_have_text(str(worker["slots"]))
    no_horizontal_scroll(page)
    screenshot(page, "workers")


def test_a_10000_job_dag_opens_summarised_without_freezing(
    page: Page, api: httpx.Client, up: UpProcess, ns: str
) -> None:
    approve = create_definition(api, ns, "approve")
    mids = [f"m{i:02d}" for i in range(99)]
    leaves = [f"l{i:04d}" for i in range(9900)]
    deps = [("root", m) for m in mids] + [(mids[i % 99], leaf) for i, leaf in enumerate(leaves)]
    began = time.monotonic()
    dag_id, _ = create_dag(api, ns, "wide", approve, ["root", *mids, *leaves], deps)
    print(f"10,000-job DAG created and listed through REST in {time.monotonic() - began:.1f}s")

    page.goto(f"{up.base_url}/ui/")
    expect(page.get_by_test_id("namespaces")).to_be_visible()
    # Measured in the browser: from the route change to the drawn graph
    # (both lists read in 1000-job pages, laid out, drawn).
    measured = page.evaluate(
        """(hash) => new Promise((resolve) => {
             const t0 = performance.now();
             window.location.hash = hash;
             const check = () => {
               const g = document.querySelector('#dag-graph[data-drawn]');
               if (g) resolve({ms: performance.now() - t0, fetchMs: Number(g.dataset.fetchMs),
                               nodes: Number(g.dataset.nodes), edges: Number(g.dataset.edges)});
               else setTimeout(check, 5);
             };
             check();
           })""",
        f"#/dags/{ns}/{dag_id}",
    )
    print(
        f"10,000-job DAG view drawn {measured['ms']:.0f} ms after the route change "
        f"(reading jobs and edges: {measured['fetchMs']} ms; "
        f"{measured['nodes']} nodes, {measured['edges']} edges drawn)"
    )
    # Performance is not asserted in tests (the machine is shared): the
    # figure is printed (the target is under 2 s on two cores), and only a
    # tab that froze fails here.
    assert measured["ms"] < 10_000, measured
    # Wide layers became summary nodes; the root stays a job.
    assert (measured["nodes"], measured["edges"]) == (3, 2)
    expect(page.locator('g.node[data-key="root"]')).to_have_attribute("data-state", "READY")
    summaries = page.locator("g.node[data-summary]")
    expect(summaries).to_have_count(2)
    assert sorted(int(c) for c in summaries.evaluate_all("els => els.map(e => e.dataset.count)")) == [
        99,
        9900,
    ]
    big = page.locator('g.node[data-summary][data-count="9900"]')
    expect(big).to_have_attribute("aria-label", "9,900 jobs: 9,900 PENDING")
    big.click()
    expect(page.locator("#job-details")).to_contain_text("9,900 jobs in layer 3")
    expect(page.locator("#job-details .member-list li")).to_have_count(100)
    no_horizontal_scroll(page)
    screenshot(page, "dag-10000-jobs")


def test_every_ui_file_is_served_and_api_errors_show_as_the_apis_message(
    page: Page, api: httpx.Client, up: UpProcess, ns: str
) -> None:
    redirect = api.get("/ui", follow_redirects=False)
    assert redirect.status_code == 301 and redirect.headers["location"].endswith("/ui/")
    index = api.get("/ui/")
    assert index.status_code == 200 and index.content == (UI_DIR / "index.html").read_bytes()
    for rel in ui_files():
        resp = api.get(f"/ui/{rel}")
        assert resp.status_code == 200, rel
        assert resp.headers["content-type"] == UI_CONTENT_TYPES["." + rel.rsplit(".", 1)[1]], rel
        assert resp.content == (UI_DIR / rel).read_bytes(), f"{rel}: Envoy serves a stale copy (restart it)"
        assert "script-src 'self'" in resp.headers["content-security-policy"]
    # Only GET and HEAD; the REST 404 shape otherwise.
    posted = api.post("/ui/app.js", content=b"{}")
    assert posted.status_code == 404 and posted.json()["code"] == 5

    missing = str(uuid.uuid4())
    api_error = api.get(f"/api/v1/dags/{ns}/{missing}")
    assert api_error.status_code == 404
    page.goto(f"{up.base_url}/ui/#/dags/{ns}/{missing}")
    expect(page.get_by_role("alert")).to_contain_text(api_error.json()["message"])
    screenshot(page, "api-error")


def test_layout_puts_parents_above_and_orders_layers_to_avoid_crossings(page: Page, up: UpProcess) -> None:
    """ui/layout.js on its own, in the browser: key order alone would cross
    a->z and b->y; the barycenter ordering does not, and an edge that skips a
    layer runs through a placeholder there instead of across a node."""
    page.goto(f"{up.base_url}/ui/")
    result = page.evaluate(
        """async () => {
             const { layoutDag } = await import('/ui/layout.js');
             const job = (key) => ({ job_id: key, key, state: 'STATE_PENDING' });
             const edge = (p, c) => ({ parent_job_id: p, child_job_id: c });
             const out = layoutDag(['a', 'b', 'y', 'z', 'm', 'end'].map(job),
               [edge('a', 'z'), edge('b', 'y'), edge('z', 'm'), edge('m', 'end'), edge('y', 'end')]);
             const at = Object.fromEntries(out.nodes.map((n) => [n.id, n]));
             const skip = out.edges.find((e) => e.from === 'y' && e.to === 'end');
             return { layers: out.layers, x: Object.fromEntries(out.nodes.map((n) => [n.id, n.x])),
                      layer: Object.fromEntries(out.nodes.map((n) => [n.id, n.layer])), via: skip.via,
                      mBox: [at.m.x, at.m.x + at.m.w] };
           }"""
    )
    assert result["layers"] == 4
    assert result["layer"] == {"a": 0, "b": 0, "y": 1, "z": 1, "m": 2, "end": 3}
    x = result["x"]
    # a is left of b, so z (a's child) must be left of y (b's child).
    assert (x["a"] < x["b"]) == (x["z"] < x["y"]), x
    (via,) = result["via"]
    assert not result["mBox"][0] <= via["x"] <= result["mBox"][1], (via, result["mBox"])
    screenshot(page, "namespaces-after-layout-check")
