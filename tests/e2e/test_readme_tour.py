"""The README's "Five minutes with the CLI", run as written with bash against
the session's `chronosched up` (only CHRONOSCHED_SERVER points the CLI at it),
then checked: the DAG it submits succeeded and `dag show` drew it."""

from __future__ import annotations

import os
import re
import shutil
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
SECTION = "## Five minutes with the CLI"


def tour_script() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    found = re.search(r"^```sh\n(.*?)^```$", text[start:end], re.S | re.M)
    assert found, f"no ```sh block in the README section {SECTION!r}"
    return found[1]


def test_the_cli_tour_runs_as_written(up: UpProcess, api: httpx.Client, tmp_path: Path) -> None:
    for tool in ("bash", "jq"):
        if shutil.which(tool) is None:
            pytest.fail(f"the README tour needs `{tool}` on PATH; install it to run this test")
    env = clean_env()
    env["CHRONOSCHED_SERVER"] = up.grpc_target
    # The venv's `chronosched`, as the README's set-up line installs it.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + tour_script()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    out = done.stdout

    (dag,) = ok(api.get("/api/v1/dags/tour"))["dags"]
    assert dag["name"] == "etl" and dag["state"] == "STATE_SUCCEEDED", dag
    assert dag["job_count"] == 4
    # The watch ended with the outcome, the tree names every job with its
    # state, and the mermaid source draws the four edges.
    assert "SUCCEEDED" in out
    # The workers list: `up`'s local workers, serving every namespace (*).
    assert re.search(r"^\S+\s+\*\s+.*command", out, re.M), out
    for key in ("extract", "clean-orders", "clean-users", "load"):
        assert re.search(rf"{re.escape(key)}\b.*SUCCEEDED", out), key
    assert re.search(r"^(flowchart|graph) ", out, re.M), out
    assert out.count("-->") >= 4, out
