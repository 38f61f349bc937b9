"""The evidence bundle of `sm audit --report DIR`: what was read, what was found, and a
`verify.sh` that re-checks the manifests and the listing without sm (docs/manifests.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..message import sha256_hex
from .findings import AuditResult
from .private_files import open_private, private_folder, write_private
from .segments import seq_of_key


def write_report(result: AuditResult, folder: Path) -> None:
    """The evidence bundle: manifests as read, listing.csv, findings.json, summary.json,
    manifests.sha256 and verify.sh (docs/manifests.md)."""
    private_folder(folder)
    sums: list[str] = []
    for project in result.projects:
        target = folder / "manifests" / project.project_id
        private_folder(target)
        for seq, body in sorted(project.segments.items()):
            name = f"{seq:012d}.jsonl.gz"
            write_private(target / name, body)
            recorded = project.recorded_sha256.get(seq) or sha256_hex(body)
            sums.append(f"{recorded}  manifests/{project.project_id}/{name}\n")
    write_private(folder / "manifests.sha256", "".join(sums).encode("utf-8"))
    with open_private(folder / "listing.csv") as handle:
        handle.write(b"key,size,sha256\n")  # plain: keys hold no newline; verify.sh splits
        for project in result.projects:
            for key, info in sorted(project.listing.items()):
                digest = project.object_sha256.get(key, "")
                number = seq_of_key(key)
                if number is not None and number in project.segments and \
                        "_sm/manifests/" in key:
                    digest = sha256_hex(project.segments[number])
                size = "" if info.size is None else info.size
                handle.write(f"{key},{size},{digest}\n".encode())
    findings = [dict(f.as_dict(), project_id=p.project_id)
                for p in result.projects for f in p.findings]
    write_private(folder / "findings.json", (json.dumps(findings, indent=2) + "\n").encode())
    write_private(folder / "summary.json",
                  (json.dumps(result.as_dict(), indent=2) + "\n").encode())
    # run as `sh verify.sh`: owner-only like the rest, executable by its owner
    write_private(folder / "verify.sh", VERIFY_SH.encode("utf-8"))
    os.chmod(folder / "verify.sh", 0o700)


VERIFY_SH = r"""#!/bin/sh
# Re-check an `sm audit --report` bundle without sm: only sh, gzip, sha256sum and jq.
#  1. every manifest segment is intact and hashes to the value recorded in manifests.sha256;
#  2. per project, segments are numbered 1, 2, 3... without a gap, each header names its
#     project and number, counts its entries, and carries the SHA-256 of the previous
#     segment's bytes (null for segment 1): the hash chain;
#  3. every `stored` entry's object is in listing.csv with the manifest's size (and SHA-256
#     where the listing has one), and every object of the message layout in listing.csv is
#     in some manifest.
# Exit 0 when everything holds, 1 otherwise (each problem printed on one line).
set -u
case "$0" in */*) cd "${0%/*}" || exit 1 ;; esac
failed=0
bad() { echo "FAIL: $*"; failed=1; }

if [ -s manifests.sha256 ]; then
  sha256sum -c --quiet manifests.sha256 || bad "a manifest segment differs from its recorded hash"
fi

segments=0
for dir in manifests/*/; do
  [ -d "$dir" ] || continue
  project=${dir#manifests/}; project=${project%/}
  expected=1; prev=null
  for file in "$dir"*.jsonl.gz; do
    [ -e "$file" ] || continue
    name=${file##*/}; n=${name%.jsonl.gz}
    while [ "${#n}" -gt 1 ] && [ "${n#0}" != "$n" ]; do n=${n#0}; done
    if [ "$n" -ne "$expected" ]; then
      bad "project $project: segment(s) $expected to $((n - 1)) missing"
      prev=unknown
    fi
    expected=$((n + 1))
    segments=$((segments + 1))
    sum=$(sha256sum "$file"); sum=${sum%% *}
    if ! gzip -t "$file" 2>/dev/null; then
      bad "$file is not intact gzip"; prev=$sum; continue
    fi
    problems=$(gzip -dc "$file" | jq -r -s --arg project "$project" --argjson seq "$n" \
      --arg prev "$prev" '
      .[0] as $h
      | [ (if ($h.manifest_version != 1) then "no manifest header" else empty end),
          (if (($h.project_id | tostring) != $project)
             then "header names project \($h.project_id)" else empty end),
          (if ($h.seq != $seq) then "header says segment \($h.seq)" else empty end),
          (if ($h.count != (length - 1))
             then "header counts \($h.count), holds \(length - 1)" else empty end),
          (if ($prev != "unknown" and (($h.prev_sha256 // "null") != $prev))
             then "prev_sha256 is not the previous segment'"'"'s hash" else empty end)
        ] | join("; ")') || problems="not JSON Lines"
    [ -z "$problems" ] || bad "$file: $problems"
    prev=$sum
  done
done

problems=$(gzip -dc manifests/*/*.jsonl.gz 2>/dev/null | jq -n -r --rawfile listing listing.csv '
  ($listing | split("\n") | .[1:] | map(select(length > 0) | split(",")
     | {key: (.[:-2] | join(",")), size: .[-2], sha: .[-1]}) | map({(.key): .}) | add // {}) as $l
  | [inputs | select(type == "object" and has("outcome") and .outcome == "stored")] as $stored
  | ($stored | map(.key)) as $keys
  | ($stored[] | . as $e | $l[$e.key] as $o
      | if $o == null then "object missing: \($e.key)"
        elif ($e.size != null and $o.size != "" and ($o.size | tonumber) != $e.size)
          then "object size differs from the manifest: \($e.key)"
        elif ($o.sha != "" and $e.object_sha256 != null and $o.sha != $e.object_sha256)
          then "object sha256 differs from the manifest: \($e.key)"
        else empty end),
    (($l | keys) - $keys | .[] | select(contains("_sm/") | not)
      | "object in no manifest: \(.)")') || problems="cannot read the manifests or listing.csv"
if [ -n "$problems" ]; then
  echo "$problems" | while IFS= read -r line; do echo "FAIL: $line"; done
  failed=1
fi

if [ "$failed" -ne 0 ]; then
  echo "verify.sh: FAILED"
  exit 1
fi
echo "verify.sh: OK ($segments manifest segment(s) chained, listing matches the manifests)"
"""
