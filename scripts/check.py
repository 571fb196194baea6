"""Run every check chronosched has, in order, stopping at the first failure.

One runner for developers and CI alike (CI calls it through scripts/test.sh):

    python scripts/check.py                      # everything
    python scripts/check.py --no-tests           # everything but pytest
    python scripts/check.py --only-tests -- -x   # just pytest, with extra args
    python scripts/check.py --step buf-lint      # just the named step(s)
    python scripts/check.py -- -m 'not slow'     # arguments after -- go to pytest

Steps: ruff-format, ruff-lint, mypy, buf-format, buf-lint, gen-fresh,
envoy-validate, pytest. Each prints its name and duration; a summary at the end
says which passed, which failed and which never ran.

buf cannot fetch googleapis from the registry here, so buf-lint builds an image
of proto/ with grpc_tools.protoc (google/api and google/rpc from the installed
googleapis-common-protos, well-known types from grpcio-tools) and lints that
image with buf.yaml. Nothing third-party is copied into the repository.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
BUF_CONFIG = ROOT / "buf.yaml"
DESCRIPTOR = ROOT / "envoy" / "chronosched.pb"
# Not sys.executable.resolve(): a venv's python is a symlink, and its bin/ is what we want.
BIN_DIR = Path(sys.executable).parent

# pytest's "no tests were collected". Named here because it must fail the run:
# a suite that silently collects nothing is a broken suite.
PYTEST_NO_TESTS = 5


class StepError(Exception):
    """A step cannot run at all (a tool or input is missing)."""


def _tool(name: str) -> str:
    """Prefer the tool installed beside this interpreter (the venv), then PATH."""
    local = BIN_DIR / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise StepError(f"{name!r} not found in {BIN_DIR} or on PATH (pip install -e '.[dev]')")
    return found


def _run(cmd: Sequence[str], display: str | None = None) -> int:
    print(f"$ {display or shlex.join(cmd)}", flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def ruff_format() -> int:
    return _run([_tool("ruff"), "format", "--check", "."])


def ruff_lint() -> int:
    return _run([_tool("ruff"), "check", "."])


def mypy() -> int:
    return _run([_tool("mypy")])


def buf_format() -> int:
    return _run([_tool("buf"), "format", "-d", "--exit-code", "proto"])


def _proto_includes() -> list[Path]:
    google_api = importlib.util.find_spec("google.api")
    grpc_tools = importlib.util.find_spec("grpc_tools")
    if google_api is None or not google_api.submodule_search_locations:
        raise StepError("google.api not importable: install googleapis-common-protos")
    if grpc_tools is None or grpc_tools.origin is None:
        raise StepError("grpc_tools not importable: install grpcio-tools")
    google_root = Path(next(iter(google_api.submodule_search_locations))).parent.parent
    return [PROTO_DIR, google_root, Path(grpc_tools.origin).parent / "_proto"]


def buf_lint() -> int:
    files = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    if not files:
        raise StepError(f"no .proto files under {PROTO_DIR}")
    with tempfile.TemporaryDirectory(prefix="chronosched-buf-") as tmp:
        image = Path(tmp) / "image.binpb"
        rc = _run(
            _python(
                "-m",
                "grpc_tools.protoc",
                *(f"-I{d}" for d in _proto_includes()),
                "--include_imports",
                "--include_source_info",
                f"-o{image}",
                *files,
            )
        )
        if rc != 0:
            return rc
        # The image holds the imported google/* files too; buf.yaml's lint.ignore skips them.
        return _run([_tool("buf"), "lint", str(image), "--config", str(BUF_CONFIG)])


def gen_fresh() -> int:
    return _run(_python("scripts/gen.py", "--check"))


def envoy_validate() -> int:
    # In a subprocess so the checker never imports project code itself. The
    # module renders envoy/envoy.yaml as every launcher does (descriptor set
    # and REST check in place), lints it and runs `envoy --mode validate`.
    if not DESCRIPTOR.exists():
        raise StepError("envoy/chronosched.pb does not exist (run python scripts/gen.py)")
    return _run(_python("-m", "chronosched_server.local.envoy", "validate"))


# pytest-xdist workers: one per core, at most four. The tests mostly wait on
# the processes and the PostgreSQL they start, so two workers on two cores
# take about two thirds of the time one does. Each worker starts an embedded
# PostgreSQL of its own and takes ports from a block of its own
# (tests/support/processes.py). Arguments after -- come later and win:
# `-- -n 0` runs the suite in one process.
PYTEST_WORKERS = ("-n", "auto", "--maxprocesses", "4")


def make_pytest(extra: Sequence[str]) -> Callable[[], int]:
    def pytest() -> int:
        rc = _run(_python("-m", "pytest", *PYTEST_WORKERS, *extra))
        if rc == PYTEST_NO_TESTS:
            raise StepError(f"pytest collected no tests (exit code {rc}), counted as a failure")
        return rc

    return pytest


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[], int]


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # "ok", "FAILED" or "not run"
    seconds: float = 0.0
    detail: str = ""


def build_steps(pytest_args: Sequence[str]) -> list[Step]:
    return [
        Step("ruff-format", ruff_format),
        Step("ruff-lint", ruff_lint),
        Step("mypy", mypy),
        Step("buf-format", buf_format),
        Step("buf-lint", buf_lint),
        Step("gen-fresh", gen_fresh),
        Step("envoy-validate", envoy_validate),
        Step("pytest", make_pytest(pytest_args)),
    ]


def run_steps(steps: Sequence[Step]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for index, step in enumerate(steps):
        print(f"\n==> {step.name}", flush=True)
        start = time.monotonic()
        detail = ""
        try:
            rc = step.run()
        except StepError as exc:
            rc, detail = 1, str(exc)
            print(f"error: {detail}", file=sys.stderr)
        seconds = time.monotonic() - start
        if rc == 0:
            print(f"<== {step.name}: ok ({seconds:.1f}s)", flush=True)
            outcomes.append(Outcome(step.name, "ok", seconds))
            continue
        detail = detail or f"exit code {rc}"
        print(f"<== {step.name}: FAILED, {detail} ({seconds:.1f}s)", flush=True)
        outcomes.append(Outcome(step.name, "FAILED", seconds, detail))
        outcomes += [Outcome(s.name, "not run") for s in steps[index + 1 :]]
        break
    return outcomes


def print_summary(outcomes: Sequence[Outcome]) -> None:
    print("\nsummary:")
    for o in outcomes:
        timing = f"{o.seconds:6.1f}s" if o.status != "not run" else "       "
        suffix = f"  ({o.detail})" if o.detail else ""
        print(f"  {o.status:<8} {timing}  {o.name}{suffix}")
    total = sum(o.seconds for o in outcomes)
    failed = [o.name for o in outcomes if o.status == "FAILED"]
    verdict = f"FAILED at {failed[0]}" if failed else "all passed"
    print(f"{verdict} in {total:.1f}s")


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    argv = list(argv)
    pytest_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, pytest_args = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        description="Run chronosched's checks in order, failing fast.",
        epilog="Arguments after -- are passed to pytest.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--no-tests", action="store_true", help="run every step except pytest")
    which.add_argument("--only-tests", action="store_true", help="run pytest only")
    which.add_argument(
        "--step",
        action="append",
        metavar="NAME",
        help="run only this step (repeatable); names: " + ", ".join(s.name for s in build_steps([])),
    )
    args = parser.parse_args(argv)
    if args.step:
        known = {s.name for s in build_steps([])}
        unknown = [name for name in args.step if name not in known]
        if unknown:
            parser.error(f"unknown step(s): {', '.join(unknown)}")
    return args, pytest_args


def main(argv: Sequence[str] | None = None) -> int:
    args, pytest_args = parse_args(sys.argv[1:] if argv is None else argv)
    steps = build_steps(pytest_args)
    if args.no_tests:
        steps = [s for s in steps if s.name != "pytest"]
    elif args.only_tests:
        steps = [s for s in steps if s.name == "pytest"]
    elif args.step:
        steps = [s for s in steps if s.name in args.step]
    outcomes = run_steps(steps)
    print_summary(outcomes)
    return 0 if all(o.status == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
