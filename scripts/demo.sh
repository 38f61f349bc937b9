#!/usr/bin/env bash
# Set up sm in .venv and archive the sample messages to a local folder under demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet -e .
export SM_HOME="$PWD/demo/home"
rm -rf demo
mkdir -p demo
sm() { .venv/bin/sm "$@"; }
echo "== sm connect (a local folder destination)"
sm connect "file://$PWD/demo/archive/" --project 12345
echo "== sm ingest examples/sample-messages.jsonl (the last line is bad on purpose)"
sm ingest examples/sample-messages.jsonl || echo "(exit $?: one line was rejected, the rest went in)"
echo "== sm run --once"
sm run --once
echo "== sm status"
sm status
echo "== the archive"
find demo/archive -type f -name '*.json.gz' | sort
