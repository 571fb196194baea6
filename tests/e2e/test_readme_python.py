"""The README's "Use it from Python" example, run as written against the
session's `chronosched up` (only the target address is changed): its DAG
runs on up's local workers and it prints each job's final state."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import UpProcess
from tests.support.processes import clean_env
from tests.support.rest import ok

pytestmark = pytest.mark.timeout(180)

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Use it from Python"
README_TARGET = '"127.0.0.1:50051"'


def example() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    found = re.search(r"^```python\n(.*?)^```$", text[start:end], re.S | re.M)
    assert found, f"no ```python block in the README section {SECTION!r}"
    return found[1]


def test_the_python_example_runs_as_written(up: UpProcess, api: httpx.Client, tmp_path: Path) -> None:
    code = example()
    assert code.count(README_TARGET) == 1, "the example's server address moved"
    script = tmp_path / "example.py"
    script.write_text(code.replace(README_TARGET, repr(up.grpc_target)), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], env=clean_env(), capture_output=True, text=True, timeout=150
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"

    (dag,) = ok(api.get("/api/v1/dags/team-py"))["dags"]
    assert dag["state"] == "STATE_SUCCEEDED" and dag["job_count"] == 4, dag
    edges = ok(api.get(f"/api/v1/dags/team-py/{dag['dag_id']}/dependencies"))["dependencies"]
    jobs = {j["job_id"]: j["key"] for j in ok(api.get(f"/api/v1/dags/team-py/{dag['dag_id']}/jobs"))["jobs"]}
    pairs = {(jobs[e["parent_job_id"]], jobs[e["child_job_id"]]) for e in edges}
    assert pairs == {("extract", "a"), ("extract", "b"), ("a", "load"), ("b", "load")}
    # The watch printed changes, then the settled state; the list printed the
    # four succeeded jobs.
    assert "load" in done.stdout and "SUCCEEDED" in done.stdout, done.stdout
    assert len(re.findall(r"^(extract|a|b|load) ", done.stdout, re.M)) == 4, done.stdout
    # And the three standalone runs enqueued in one call, their ids printed.
    standalone = [j for j in ok(api.get("/api/v1/jobs/team-py"))["jobs"] if j["dag_id"] == ""]
    assert len(standalone) == 3 and {j["key"] for j in standalone} == {"say"}, standalone
    assert all(j["job_id"] in done.stdout for j in standalone), done.stdout
