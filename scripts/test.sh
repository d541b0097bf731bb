#!/usr/bin/env bash
# Install the development dependencies into .venv, then run ruff, mypy and the whole test suite:
# on SQLite, and on PostgreSQL when PACSDESK_TEST_DATABASE_URL is set. The two database passes
# run at the same time (each is mostly one busy process); each writes its own log under
# test-artifacts/, printed whole as soon as that pass ends.
# Tests run in a random order (pytest-randomly) so that none can lean on another: the seed is
# printed first, both passes use it, and PACSDESK_TEST_SEED=N reruns that order. For a
# deterministic run in file order: .venv/bin/pytest -p no:randomly
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
echo "==> mypy"
# The packages it checks are set in pyproject.toml ([tool.mypy]).
"$VENV/bin/mypy" || { echo "!! mypy found problems"; failed=1; }

SEED="${PACSDESK_TEST_SEED:-$(( RANDOM * 32768 + RANDOM ))}"
LOGS="test-artifacts"
mkdir -p "$LOGS"
TMP_ROOT="$(mktemp -d)"
# On any exit, stop a pass still running (an interrupted run) and remove its temporary files.
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP_ROOT"' EXIT
echo "==> tests run in random order: seed $SEED (PACSDESK_TEST_SEED=$SEED $0 repeats this order)"

# Start pytest for LABEL in the background, its output in test-artifacts/tests-LABEL.log.
# Usage: start_suite LABEL [COMMAND PREFIX...] [-- PYTEST ARGS...]
declare -A label_of log_of
start_suite() {
  local label="$1" log="$LOGS/tests-$1.log"
  shift
  local -a prefix=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do prefix+=("$1"); shift; done
  [ "$#" -gt 0 ] && shift
  "${prefix[@]}" "$VENV/bin/pytest" -q --durations=10 -p randomly -p no:cacheprovider \
    --randomly-seed="$SEED" --basetemp="$TMP_ROOT/$label" "$@" >"$log" 2>&1 &
  label_of[$!]="$label"
  log_of[$!]="$log"
  echo "==> tests on $label started (log: $log)"
}

# PostgreSQL-only tests skip on the SQLite run; the PostgreSQL run still requires them.
start_suite SQLite env -u PACSDESK_TEST_DATABASE_URL -u PACSDESK_REQUIRE_POSTGRES
if [ -n "${PACSDESK_TEST_DATABASE_URL:-}" ]; then
  # The browser tests always serve a fresh SQLite instance: the SQLite pass runs them.
  start_suite PostgreSQL env -- -m "not e2e"
else
  echo "==> PACSDESK_TEST_DATABASE_URL is not set: PostgreSQL run skipped"
fi

# Print each pass's log as soon as it ends; pytest's exit status 5 (no tests collected) fails too.
while [ "${#label_of[@]}" -gt 0 ]; do
  status=0
  wait -n -p done_pid "${!label_of[@]}" || status=$?
  label="${label_of[$done_pid]}"
  echo "==> tests on $label (exit status $status):"
  cat "${log_of[$done_pid]}"
  if [ "$status" -eq 5 ]; then
    echo "!! no tests ran on $label"
    failed=1
  elif [ "$status" -ne 0 ]; then
    echo "!! tests on $label FAILED"
    failed=1
  fi
  unset "label_of[$done_pid]" "log_of[$done_pid]"
done

if [ "$failed" -ne 0 ]; then
  echo "!! test run FAILED (random order seed $SEED)"
  exit 1
fi
echo "==> all tests passed"
