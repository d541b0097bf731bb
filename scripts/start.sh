#!/usr/bin/env bash
# Install PACS Desk into .venv, build or upgrade the schema, create the first administrator
# (its password is printed once), and serve it on http://127.0.0.1:8000.
# Extra arguments go to `pacsdesk serve`, e.g. ./scripts/start.sh --host 0.0.0.0 --port 8080
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=".venv"

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
echo "==> installing PACS Desk"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Installed in place: templates, static files and migrations stay in this folder.
"$VENV/bin/python" -m pip install --quiet -e .

echo "==> building the schema and the first administrator"
"$VENV/bin/pacsdesk" setup

echo "==> serving PACS Desk (Ctrl-C stops it)"
exec "$VENV/bin/pacsdesk" serve "$@"
