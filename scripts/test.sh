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

# The dashboard's browser tests (tests/ui/) drive Debian's Chromium through
# Playwright (which never downloads a browser here). Installed when missing
# and we may; without it those tests fail under CI and skip, loudly, elsewhere.
if [[ ! -x /usr/bin/chromium ]] && ! command -v chromium >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the dashboard's browser tests (tests/ui/)" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq chromium chromium-driver >&2; then
      # A machine whose package lists were never fetched knows no chromium yet.
      apt-get update -qq >&2 && apt-get install -y -qq chromium chromium-driver >&2 \
        || echo "WARNING: could not install chromium: the browser tests (tests/ui/) cannot run" >&2
    fi
  else
    echo "WARNING: chromium is missing and this is not root: the browser tests (tests/ui/) cannot run" \
      "(as root: apt-get install chromium chromium-driver)" >&2
  fi
fi

exec .venv/bin/python scripts/check.py "$@"
