#!/usr/bin/env bash
# Set up sm in .venv, archive the sample messages to a local folder under demo/, then
# investigate them: find a recipient's messages and fetch one. Re-running is quick: sm is
# reinstalled only when pyproject.toml changed (its hash is stamped in .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
STAMP=.venv/.sm-demo-installed
WANTED="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x .venv/bin/sm ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANTED" ]; then
  echo "== installing sm into .venv (pyproject.toml changed or first run)"
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
  .venv/bin/python -m pip install --quiet -e .  # editable: code changes need no reinstall
  echo "$WANTED" > "$STAMP"
fi
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
echo "== sm find --recipient ann.lee@example.com (an investigation)"
sm find --recipient ann.lee@example.com
MESSAGE_ID="$(sm --json -q find --recipient ann.lee@example.com \
  | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)[0]["message_id"])')"
echo "== sm fetch $MESSAGE_ID --part text (verified against its checksum)"
sm fetch "$MESSAGE_ID" --part text
echo "== sm audit --trust \"\$(sm key show)\" (the archive complete and unaltered, against the signed log)"
sm audit --trust "$(sm key show)"
echo "== sm prove $MESSAGE_ID, then sm verify-proof (what a court can check without sm's spool)"
sm prove "$MESSAGE_ID" --output demo/proof.json
sm verify-proof demo/proof.json --trust "$(sm key show)"
