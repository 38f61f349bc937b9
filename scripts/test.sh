#!/usr/bin/env bash
# Install what the tests need (Python extras, Azurite from npm, PostgreSQL's server binaries),
# check lint and types (ruff, mypy), and run the whole suite.
# The tests start moto's server, gcp-storage-emulator, Azurite and PostgreSQL themselves, once
# per session.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet -e ".[test]"
# Azurite, the Azure Storage emulator, is a test tool pinned in tests/support/package.json.
if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
fi
if [ ! -x tests/support/node_modules/.bin/azurite-blob ]; then
  npm install --prefix tests/support --no-audit --no-fund --silent
fi
# The PostgreSQL spool's tests run a real server (initdb + pg_ctl in a temporary folder).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1 \
    && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
fi
# Lint and types first: a few seconds, and a failure here is cheaper to read than a test's.
.venv/bin/ruff check stored_messages_cli tests scripts
.venv/bin/python -m mypy
# Two workers (one per core): each starts its own emulators once; SM_TEST_WORKERS=0 runs serially.
exec .venv/bin/python -m pytest -n "${SM_TEST_WORKERS:-2}" "$@"
