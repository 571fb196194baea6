"""The metrics' flags, and docs/operations.md against the code: every metric
the server exports is in the Metrics table, and the example alert rules are
YAML that names only those metrics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from chronosched_server.cli import build_parser, server_config
from chronosched_server.metrics import Metrics, PoolCollector, StreamCollector

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def metrics_section() -> str:
    text = DOC.read_text()
    start = text.index("\n## Metrics\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def exported_names() -> set[str]:
    """Series names as Prometheus stores them (counters with _total)."""
    metrics = Metrics()
    metrics.add(StreamCollector(lambda: (0, 0)))
    metrics.add(PoolCollector(lambda: {"in_use": 0, "idle": 0, "waiting": 0}))
    names = {f.name + "_total" if f.type == "counter" else f.name for f in metrics.registry.collect()}
    # Collected only with a running server (it queries the database).
    return names | {"chronosched_frontier_jobs"}


def test_every_exported_metric_is_documented_and_nothing_else() -> None:
    documented = set(re.findall(r"^\| `(chronosched_[a-z_]+)` \|", metrics_section(), re.MULTILINE))
    assert documented == exported_names()


def test_the_example_alert_rules_parse_and_name_real_metrics() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", metrics_section(), re.DOTALL)
    assert len(blocks) == 1
    rules = yaml.safe_load(blocks[0])["groups"][0]["rules"]
    assert len(rules) >= 3
    known = exported_names()
    for rule in rules:
        assert rule["alert"] and rule["expr"] and rule["for"]
        for name in re.findall(r"chronosched_[a-z_]+", rule["expr"]):
            assert name.removesuffix("_bucket") in known, (rule["alert"], name)


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


def test_two_servers_metrics_do_not_share_a_registry() -> None:
    one, two = Metrics(), Metrics()
    one.lease_expiries.inc()
    assert two.registry.get_sample_value("chronosched_lease_expiries_total") == 0
    assert one.registry.get_sample_value("chronosched_lease_expiries_total") == 1
