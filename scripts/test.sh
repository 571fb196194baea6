#!/usr/bin/env bash
# The one command that runs chronosched's whole suite on a fresh machine:
# creates .venv if missing, installs the project with its dev extras, then runs
# every check (format, lint, types, buf, generated-code freshness, Envoy config,
# tests). Arguments are passed to scripts/check.py, e.g.
#   scripts/test.sh --no-tests
#   scripts/test.sh -- -m 'not slow'
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -x .venv/bin/python ]]; then
  echo "creating .venv" >&2
  python3 -m venv .venv
fi

.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'

exec .venv/bin/python scripts/check.py "$@"
