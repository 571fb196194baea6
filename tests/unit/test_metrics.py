"""The metrics' flags, and docs/operations.md against the code: every metric
the server and the worker export is in the Metrics tables, and the example
alert rules are YAML that names only those metrics (and pass `promtool check
rules` where promtool is installed)."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from chronosched_server.cli import build_parser, server_config
from chronosched_server.metrics import FrontierCollector, Metrics, PoolCollector, StreamCollector
from chronosched_server.storage.records import FrontierCount
from chronosched_worker import cli as worker_cli
from chronosched_worker.metrics import WorkerMetrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def metrics_section() -> str:
    text = DOC.read_text()
    start = text.index("\n## Metrics\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def exported_names() -> set[str]:
    """Series names as Prometheus stores them (counters with _total), of the
    server and of the worker."""
    metrics = Metrics()
    metrics.add(StreamCollector(lambda: (0, 0)))
    metrics.add(PoolCollector(lambda: {"in_use": 0, "idle": 0, "waiting": 0}))
    worker = WorkerMetrics(lambda: 0, 1, lambda: False)
    families = [*metrics.registry.collect(), *worker.registry.collect()]
    names = {f.name + "_total" if f.type == "counter" else f.name for f in families}
    # Collected only with a running server (one query to the database).
    return names | {"chronosched_frontier_jobs", "chronosched_unserved_ready_jobs"}


def alert_rules_block() -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", metrics_section(), re.DOTALL)
    assert len(blocks) == 1
    return str(blocks[0])


def test_every_exported_metric_is_documented_and_nothing_else() -> None:
    documented = set(re.findall(r"^\| `(chronosched_[a-z_]+)` \|", metrics_section(), re.MULTILINE))
    assert documented == exported_names()


def test_the_example_alert_rules_parse_and_name_real_metrics() -> None:
    rules = yaml.safe_load(alert_rules_block())["groups"][0]["rules"]
    assert len(rules) >= 3
    known = exported_names()
    named: set[str] = set()
    for rule in rules:
        assert rule["alert"] and rule["expr"] and rule["for"]
        for name in re.findall(r"chronosched_[a-z_]+", rule["expr"]):
            assert name.removesuffix("_bucket") in known, (rule["alert"], name)
            named.add(name.removesuffix("_bucket"))
    # The metrics this issue added for alerting have a rule each.
    assert {
        "chronosched_unserved_ready_jobs",
        "chronosched_cron_misfires_total",
        "chronosched_parent_child_latency_seconds",
        "chronosched_worker_connected",
    } <= named


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_example_alert_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(alert_rules_block())
    checked = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_metrics_port_is_off_unless_asked() -> None:
    args = build_parser().parse_args(["server", "--database-url", "postgresql:///x"])
    assert server_config(args).metrics_port is None
    args = build_parser().parse_args(
        ["server", "--database-url", "postgresql:///x", "--metrics-port", "9464"]
    )
    assert server_config(args).metrics_port == 9464


def test_metrics_port_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHRONOSCHED_METRICS_PORT", "9465")
    args = build_parser().parse_args(["server", "--database-url", "postgresql:///x"])
    assert server_config(args).metrics_port == 9465
    up = build_parser().parse_args(["up"])
    assert up.metrics_port == 9465


def test_worker_metrics_port_is_off_unless_asked() -> None:
    base = ["--server", "127.0.0.1:1", "--namespace", "team-a"]
    assert worker_cli.build_worker(base, env={}).metrics_port is None
    assert worker_cli.build_parser({}).parse_args([*base, "--metrics-port", "9470"]).metrics_port == 9470
    from_env = worker_cli.build_parser({"CHRONOSCHED_WORKER_METRICS_PORT": "9471"}).parse_args(base)
    assert from_env.metrics_port == 9471
    assert from_env.metrics_host == "127.0.0.1"
    with pytest.raises(SystemExit):
        worker_cli.build_parser({}).parse_args([*base, "--metrics-port", "0"])


def test_two_workers_metrics_do_not_share_a_registry() -> None:
    one, two = WorkerMetrics(lambda: 3, 4, lambda: True), WorkerMetrics(lambda: 0, 8, lambda: False)
    one.finished("noop", "succeeded", 0.5)
    one.reconnects.inc()
    assert one.registry.get_sample_value("chronosched_worker_jobs_running") == 3
    assert two.registry.get_sample_value("chronosched_worker_jobs_running") == 0
    assert one.registry.get_sample_value("chronosched_worker_connected") == 1
    assert two.registry.get_sample_value("chronosched_worker_slots") == 8
    assert two.registry.get_sample_value("chronosched_worker_reconnects_total") == 0
    assert (
        one.registry.get_sample_value(
            "chronosched_worker_jobs_finished_total", {"kind": "noop", "outcome": "succeeded"}
        )
        == 1
    )


def test_two_servers_metrics_do_not_share_a_registry() -> None:
    one, two = Metrics(), Metrics()
    one.lease_expiries.inc()
    assert two.registry.get_sample_value("chronosched_lease_expiries_total") == 0
    assert one.registry.get_sample_value("chronosched_lease_expiries_total") == 1


@pytest.fixture
def other_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running on a thread of its own, as the server's runs
    beside the /metrics thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_registering_the_frontier_collector_runs_no_query(other_loop: asyncio.AbstractEventLoop) -> None:
    # The server registers it on its event loop at start; had registering
    # collected (to learn the names), the query would have waited on that
    # very loop until its timeout, with the server stalled meanwhile.
    calls = 0

    async def count() -> list[FrontierCount]:
        nonlocal calls
        calls += 1
        return [FrontierCount(namespace_id="team-a", kind="noop", jobs=3, unserved=True)]

    metrics = Metrics()
    metrics.add(FrontierCollector(other_loop, count))
    assert calls == 0
    # Its names are known all the same: a second collector of them is refused.
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        metrics.add(FrontierCollector(other_loop, count))
    # A scrape runs the query, on that loop.
    labels = {"namespace": "team-a", "kind": "noop"}
    assert metrics.registry.get_sample_value("chronosched_frontier_jobs", labels) == 3
    assert metrics.registry.get_sample_value("chronosched_unserved_ready_jobs", labels) == 3
    assert calls == 1
