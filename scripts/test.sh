#!/usr/bin/env bash
# Install the development dependencies into .venv, then run ruff and the whole test suite:
# on SQLite, and again on PostgreSQL when PACSDESK_TEST_DATABASE_URL is set.
# Exits non-zero on any failure; a run that collects no tests is a failure too.
# With CI=true the virtualenv is rebuilt from scratch, so nothing installed by hand counts.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=".venv"

if [ "${CI:-}" = "true" ] && [ -e "$VENV" ]; then
  echo "==> CI: removing the old $VENV"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
echo "==> installing PACS Desk with its development dependencies"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Installed in place: the tests start `pacsdesk` itself, which needs the templates,
# static files and migrations of this checkout.
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"

if [ -f package.json ]; then
  echo "==> installing JavaScript test dependencies"
  npm ci --no-audit --no-fund
fi

failed=0
echo "==> ruff"
"$VENV/bin/ruff" check . || { echo "!! ruff found problems"; failed=1; }

# Run pytest with the given label; pytest's exit status 5 (no tests collected) fails too.
# Usage: run_suite LABEL [COMMAND PREFIX...] [-- PYTEST ARGS...]
run_suite() {
  local label="$1"
  shift
  local -a prefix=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do prefix+=("$1"); shift; done
  [ "$#" -gt 0 ] && shift
  echo "==> tests on $label"
  local status=0
  "${prefix[@]}" "$VENV/bin/pytest" -q --durations=10 "$@" || status=$?
  if [ "$status" -eq 5 ]; then
    echo "!! no tests ran on $label"
    return 1
  fi
  return "$status"
}

# PostgreSQL-only tests skip on the SQLite run; the PostgreSQL run still requires them.
run_suite "SQLite" env -u PACSDESK_TEST_DATABASE_URL -u PACSDESK_REQUIRE_POSTGRES || failed=1
if [ -n "${PACSDESK_TEST_DATABASE_URL:-}" ]; then
  # The browser tests always serve a fresh SQLite instance: the SQLite pass has run them.
  run_suite "PostgreSQL" env -- -m "not e2e" || failed=1
else
  echo "==> PACSDESK_TEST_DATABASE_URL is not set: PostgreSQL run skipped"
fi

if [ "$failed" -ne 0 ]; then
  echo "!! test run FAILED"
  exit 1
fi
echo "==> all tests passed"
