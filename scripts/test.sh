#!/usr/bin/env bash
# Install what the tests need (Python extras, Azurite from npm), check lint and types (ruff,
# mypy), and run the whole suite.
# The tests start moto's server, gcp-storage-emulator and Azurite themselves, once per session.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet -e ".[test]"
if [ -f package.json ] && command -v npm >/dev/null 2>&1; then
  if [ ! -x node_modules/.bin/azurite-blob ]; then
    npm install --no-audit --no-fund --silent
  fi
fi
# Lint and types first: a few seconds, and a failure here is cheaper to read than a test's.
.venv/bin/ruff check stored_messages_cli tests scripts
.venv/bin/python -m mypy
# Two workers (one per core): each starts its own emulators once; SM_TEST_WORKERS=0 runs serially.
exec .venv/bin/python -m pytest -n "${SM_TEST_WORKERS:-2}" "$@"
