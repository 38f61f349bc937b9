"""The text of the evidence bundle's `verify.sh` (docs/manifests.md, "The evidence bundle").

A POSIX shell script that re-checks an `sm audit --report` bundle with nothing of sm: `sh`,
`gzip`, `sha256sum` and `jq` for the segments, their chain and the listing; `python3`'s
standard library, once, for the Merkle log (RFC 6962 roots recomputed from every entry line)
and the checkpoints; `openssl` for what the standard library cannot check, the checkpoints'
Ed25519 signatures (`openssl pkeyutl -verify -rawin`, OpenSSL 3.0 or later) and the RFC 3161
time-stamps (`openssl ts -verify`). Kept here, apart from `bundle`, because it is a program of
its own; `bundle.write_report` writes it as it is.
"""

from __future__ import annotations

VERIFY_SH = r"""#!/bin/sh
# Re-check an `sm audit --report` bundle without sm: sh, gzip, sha256sum, jq, openssl and
# python3 (standard library only).
#
#   sh verify.sh [--trust VKEY]... [--tsa-ca FILE]
#
#  1. every manifest segment is intact and hashes to the value recorded in manifests.sha256;
#  2. per project, segments are numbered 1, 2, 3... without a gap, each header names its
#     project and number, counts its entries, and carries the SHA-256 of the previous
#     segment's bytes (null for segment 1): the hash chain;
#  3. every `stored` entry's object is in listing.csv with the manifest's size (and SHA-256
#     where the listing has one), and every object in listing.csv is in some manifest, but
#     for the keys under a project's own `{prefix}_sm/` (prefixes.json);
#  4. per project, the Merkle log (RFC 6962): each version 2 header's tree_size and root are
#     those of every entry line of that segment and all before it; every checkpoint in
#     checkpoints/PROJECT/ names the project's origin, a size the log reaches and the root at
#     that size, and is signed by a trusted key; the whole log is covered by one;
#  5. every time-stamp token (.tsr) is an RFC 3161 time-stamp of its checkpoint's SHA-256 by
#     a TSA that chains to the roots in tsa_ca.pem.
# Trusted keys: those given with --trust (verifier keys, `name+hex+base64`); only when there
# are none, the bundle's own trusted_keys.txt. Time-stamp roots: --tsa-ca FILE, else the
# bundle's tsa_ca.pem. Exit 0 when everything holds, 1 otherwise (each problem printed on one
# line, `FAIL: ...`), 2 for a bad argument.
set -u
trust=""
tsa_ca=""
usage="usage: sh verify.sh [--trust VKEY]... [--tsa-ca FILE]"
while [ $# -gt 0 ]; do
  case "$1" in
    --trust|--tsa-ca)
      [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
      if [ "$1" = --trust ]; then trust="$trust$2
"; else tsa_ca=$2; fi
      shift 2 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "verify.sh: unknown argument $1" >&2; echo "$usage" >&2; exit 2 ;;
  esac
done
if [ -n "$tsa_ca" ]; then
  case "$tsa_ca" in /*) ;; *) tsa_ca="$PWD/$tsa_ca" ;; esac
  [ -r "$tsa_ca" ] || { echo "verify.sh: cannot read $tsa_ca" >&2; exit 2; }
fi
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
    case "$n" in ''|*[!0-9]*) bad "$file is not named as a segment"; continue ;; esac
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
      | [ (if ($h.manifest_version != 1 and $h.manifest_version != 2)
             then "no manifest header" else empty end),
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

[ -f prefixes.json ] || bad "prefixes.json is missing: the listing cannot tell sm's own keys"
problems=$(gzip -dc manifests/*/*.jsonl.gz 2>/dev/null | jq -n -r --rawfile listing listing.csv \
  --slurpfile prefixes prefixes.json '
  ($listing | split("\n") | .[1:] | map(select(length > 0) | split(",")
     | {key: (.[:-2] | join(",")), size: .[-2], sha: .[-1]})
   | reduce .[] as $o ({}; .[$o.key] = $o)) as $l
  | ($prefixes[0] | [.[] | . + "_sm/"]) as $own
  | [inputs | select(type == "object" and has("outcome") and .outcome == "stored")] as $stored
  | (reduce $stored[] as $e ({}; .[$e.key] = true)) as $keys
  | ($stored[] | . as $e | $l[$e.key] as $o
      | if $o == null then "object missing: \($e.key)"
        elif ($e.size != null and $o.size != "" and ($o.size | tonumber) != $e.size)
          then "object size differs from the manifest: \($e.key)"
        elif ($o.sha != "" and $e.object_sha256 != null and $o.sha != $e.object_sha256)
          then "object sha256 differs from the manifest: \($e.key)"
        else empty end),
    ($l | keys[] | select($keys[.] | not) | . as $k
      | select(any($own[]; . as $p | $k | startswith($p)) | not)
      | "object in no manifest: \(.)")') \
  || problems="cannot read the manifests, listing.csv or prefixes.json"
if [ -n "$problems" ]; then
  echo "$problems" | while IFS= read -r line; do echo "FAIL: $line"; done
  failed=1
fi

if ! command -v python3 >/dev/null 2>&1; then
  bad "python3 is not installed: the Merkle log, signatures and time-stamps were not checked"
else
  VERIFY_TRUST=$trust VERIFY_TSA_CA=$tsa_ca python3 - <<'PYTHON' || failed=1
# The Merkle log, the checkpoints' signatures and the time-stamps (python3 standard library,
# and openssl for Ed25519 and RFC 3161).
import base64, gzip, hashlib, json, os, re, subprocess, sys, tempfile
from concurrent.futures import ThreadPoolExecutor

SPKI_ED25519 = bytes.fromhex("302a300506032b6570032100")  # DER SubjectPublicKeyInfo header
SIZE = re.compile(r"(?:0|[1-9][0-9]*)\Z")
failures = []
work = tempfile.mkdtemp(prefix="sm-verify-")


def fail(text):
    failures.append(text)
    print("FAIL: " + text)


def leaf_hash(line):
    return hashlib.sha256(b"\x00" + line).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


class Tree:
    # RFC 6962's tree, kept as its perfect subtrees (largest first): the root at any size.
    def __init__(self):
        self.size, self.subtrees = 0, []

    def add(self, digest):
        height = 0
        while self.subtrees and self.subtrees[-1][0] == height:
            digest = node_hash(self.subtrees.pop()[1], digest)
            height += 1
        self.subtrees.append((height, digest))
        self.size += 1

    def root(self):
        if not self.subtrees:
            return hashlib.sha256(b"").digest()
        digest = self.subtrees[-1][1]
        for _, left in reversed(self.subtrees[:-1]):
            digest = node_hash(left, digest)
        return digest


def b64(data):
    return base64.b64encode(data).decode("ascii")


def run(argv):
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    lines = [l.strip() for l in (done.stderr + done.stdout).decode("utf-8", "replace")
             .splitlines() if l.strip()]
    reason = [l for l in lines if "error" in l.lower()] or lines or ["no reason given"]
    return done.returncode == 0, readable(reason[-1])[:200]


def readable(line):
    # OpenSSL 3's "code:error:number:library:function:reason:file:line:detail" -> reason
    parts = line.split(":")
    if len(parts) < 6 or parts[1] != "error":
        return line
    detail = line.split("Verify error:", 1)
    return parts[5] + (" (%s)" % detail[1] if len(detail) > 1 else "")


def parse_key(vkey):
    # name+hex(key id)+base64(0x01 || Ed25519 public key), its key id checked
    parts = vkey.split("+", 2)
    if len(parts) != 3 or not parts[0] or not re.match(r"[0-9a-f]{8}\Z", parts[1]):
        raise ValueError("not name+keyid+key")
    try:
        raw = base64.b64decode(parts[2], validate=True)
    except ValueError:
        raise ValueError("its key is not base64")
    if len(raw) != 33 or raw[0] != 1:
        raise ValueError("not an Ed25519 key")
    key_id = hashlib.sha256(parts[0].encode() + b"\n" + raw).digest()[:4]
    if key_id.hex() != parts[1]:
        raise ValueError("its key id does not match its name and key")
    pem = os.path.join(work, "key%d.pem" % len(os.listdir(work)))
    with open(pem, "w") as handle:
        handle.write("-----BEGIN PUBLIC KEY-----\n%s\n-----END PUBLIC KEY-----\n"
                     % b64(SPKI_ED25519 + raw[1:]))
    return (parts[0], key_id), pem


def trusted_keys():
    given = [k for k in os.environ.get("VERIFY_TRUST", "").split("\n") if k.strip()]
    source = "the key(s) given with --trust"
    if not given and os.path.isfile("trusted_keys.txt"):
        with open("trusted_keys.txt", encoding="utf-8") as handle:
            given = [k.strip() for k in handle if k.strip() and not k.startswith("#")]
        source = "the bundle's own trusted_keys.txt"
    keys = {}
    for vkey in given:
        try:
            name_id, pem = parse_key(vkey.strip())
        except ValueError as exc:
            fail("trusted key %r from %s: %s" % (vkey.strip()[:80], source, exc))
            continue
        keys[name_id] = pem
    return keys, source


def parse_note(data):
    # A C2SP signed note holding a tlog checkpoint: (body, origin, size, root, signatures).
    text = data.decode("utf-8")
    split = text.rfind("\n\n")
    if split < 0 or not text.endswith("\n"):
        raise ValueError("not a signed note")
    body, lines = text[:split + 1], text[split + 2:-1].split("\n")
    origin, size, root = (body[:-1].split("\n") + ["", ""])[:3]
    if not SIZE.match(size):
        raise ValueError("its tree size is not a number")
    root = base64.b64decode(root, validate=True)
    if len(root) != 32:
        raise ValueError("its root is not 32 bytes")
    signatures = []
    for line in lines:
        name, _, signed = line[2:].rpartition(" ")
        if not line.startswith("\u2014 ") or not name:
            raise ValueError("a signature line is malformed")
        raw = base64.b64decode(signed, validate=True)
        if len(raw) != 68:
            raise ValueError("a signature is not a key id and 64 bytes")
        signatures.append(((name, raw[:4]), raw[4:]))
    return body.encode("utf-8"), origin, int(size), root, signatures


def verify_signature(job):
    body, signature, pem = job
    folder = tempfile.mkdtemp(dir=work)
    with open(os.path.join(folder, "body"), "wb") as handle:
        handle.write(body)
    with open(os.path.join(folder, "sig"), "wb") as handle:
        handle.write(signature)
    return run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pem, "-rawin",
                "-in", os.path.join(folder, "body"), "-sigfile", os.path.join(folder, "sig")])[0]


def read_log(project, wanted):
    # Every entry line of the project's segments in order: headers checked, roots at `wanted`.
    folder = os.path.join("manifests", project)
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    tree, roots, origins, version2 = Tree(), {0: Tree().root()}, set(), False
    for number, name in enumerate([n for n in names if n.endswith(".jsonl.gz")], start=1):
        if name != "%012d.jsonl.gz" % number:
            fail("project %s: segment %d is missing: the log is not recomputed past it"
                 % (project, number))
            return None, roots, origins, version2
        try:
            with open(os.path.join(folder, name), "rb") as handle:
                lines = gzip.decompress(handle.read()).split(b"\n")
            header = json.loads(lines[0].decode("utf-8"))
        except (OSError, EOFError, ValueError) as exc:
            fail("project %s: segment %d cannot be read (%s): the log is not recomputed past it"
                 % (project, number, exc))
            return None, roots, origins, version2
        for line in lines[1:-1]:
            tree.add(leaf_hash(line))
            if tree.size in wanted:
                roots[tree.size] = tree.root()
        roots[tree.size] = tree.root()
        if lines[-1] != b"":
            fail("project %s: segment %d does not end in a newline" % (project, number))
        version = header.get("manifest_version") if isinstance(header, dict) else None
        if version == 2:
            version2 = True
            origins.add(header.get("origin"))
            if header.get("tree_size") != tree.size:
                fail("project %s: segment %d says tree_size %s; the log holds %d entry lines"
                     " up to it" % (project, number, header.get("tree_size"), tree.size))
            elif header.get("root") != b64(tree.root()):
                fail("project %s: segment %d's root is not the Merkle root of the entry lines"
                     " up to it" % (project, number))
        elif version2:
            fail("project %s: segment %d is version %s after a version 2 segment"
                 % (project, number, version))
    return tree.size, roots, origins, version2


def expected_origin(project, origins):
    try:
        with open("summary.json", encoding="utf-8") as handle:
            for audited in json.load(handle).get("projects", []):
                if str(audited.get("project_id")) == project and audited.get("origin"):
                    origins = origins | {audited["origin"]}
    except (OSError, ValueError, AttributeError):
        fail("summary.json cannot be read")
    if len(origins) > 1:
        fail("project %s: its segments and summary.json name %d origins: %s"
             % (project, len(origins), ", ".join(sorted(str(o) for o in origins))))
    return next(iter(origins)) if len(origins) == 1 else None


def check_checkpoints(project, keys, pool):
    folder = os.path.join("checkpoints", project)
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    checkpoints, tokens = {}, []
    for name in names:
        match = re.match(r"([0-9]{12})(\.[0-9]+)?\.(txt|tsr)\Z", name)
        if match is None or (match.group(3) == "txt" and match.group(2)):
            fail("checkpoints/%s/%s is neither a checkpoint nor a time-stamp" % (project, name))
        elif match.group(3) == "txt":
            with open(os.path.join(folder, name), "rb") as handle:
                checkpoints[int(match.group(1))] = handle.read()
        else:
            tokens.append((int(match.group(1)), name))
    size, roots, origins, version2 = read_log(project, set(checkpoints))
    origin = expected_origin(project, origins)
    jobs, checks, valid = [], [], set()
    for at, data in sorted(checkpoints.items()):
        where = "project %s: checkpoint %d" % (project, at)
        try:
            body, named, tree_size, root, signatures = parse_note(data)
        except ValueError as exc:
            fail("%s cannot be read: %s" % (where, exc))
            continue
        if tree_size != at:
            fail("%s holds tree size %d" % (where, tree_size))
        elif origin is not None and named != origin:
            fail("%s names the log %s, not %s" % (where, named, origin))
        elif size is not None and at > size:
            fail("%s covers %d entries; the log holds only %d: the log was truncated"
                 % (where, at, size))
        elif at in roots and roots[at] != root:
            fail("%s's root is not the Merkle root of the log's first %d entry lines"
                 % (where, at))
        else:
            mine = [(s, keys[k]) for k, s in signatures if k in keys]
            if keys and not mine:
                fail("%s is signed by no trusted key (signed by: %s)"
                     % (where, ", ".join(sorted(set(k[0] for k, _ in signatures)))))
            if mine or not keys:
                jobs.append((at, where, len(mine)))
            checks.extend((body, s, pem) for s, pem in mine)
    results = iter(list(pool.map(verify_signature, checks)))  # every signature at once
    for at, where, count in jobs:
        if not all([next(results) for _ in range(count)]):
            fail("%s: a signature by a trusted key does not verify" % where)
        else:
            valid.add(at)
    if not version2 and size and not valid:
        print("WARNING: project %s: no checkpoint covers its %d entries (segments sealed"
              " before the signed log): nothing signed proves them" % (project, size))
    elif version2 and size is not None and size not in valid:
        fail("project %s: the log's entries up to %d are covered by no valid checkpoint"
             " (signed by a trusted key)" % (project, size) if keys else
             "project %s: the log's entries up to %d are covered by no checkpoint"
             % (project, size))
    return checkpoints, tokens, len(valid)


def check_tokens(project, checkpoints, tokens, ca_file, pool):
    jobs = []
    for at, name in tokens:
        where = "project %s: time-stamp %s" % (project, name)
        if at not in checkpoints:
            fail("%s: its checkpoint is not in the bundle" % where)
        elif ca_file:
            digest = hashlib.sha256(checkpoints[at]).hexdigest()
            jobs.append((where, ["openssl", "ts", "-verify", "-digest", digest, "-in",
                                 os.path.join("checkpoints", project, name), "-CAfile", ca_file]))
    for (where, _), (ok, reason) in zip(jobs, pool.map(run, [argv for _, argv in jobs])):
        if not ok:
            fail("%s does not verify against the time-stamp roots: %s" % (where, reason))
    return len(jobs)


def main():
    projects = set()
    for top in ("manifests", "checkpoints"):
        if os.path.isdir(top):
            projects.update(p for p in os.listdir(top) if os.path.isdir(os.path.join(top, p)))
    keys, key_source = trusted_keys()
    ca_file = os.environ.get("VERIFY_TSA_CA") or ("tsa_ca.pem" if os.path.isfile("tsa_ca.pem")
                                                   else "")
    counts = [0, 0, 0, 0]  # checkpoints, of them valid, time-stamps, of them checked
    if keys:
        print("verify.sh: checkpoint signatures checked with %s: %s"
              % (key_source, ", ".join(sorted("%s+%s" % (n, i.hex()) for n, i in keys))))
    with ThreadPoolExecutor(max_workers=4) as pool:
        for project in sorted(projects):
            checkpoints, tokens, valid = check_checkpoints(project, keys, pool)
            counts[0] += len(checkpoints)
            counts[1] += valid
            counts[2] += len(tokens)
            counts[3] += check_tokens(project, checkpoints, tokens, ca_file, pool)
    if keys:
        if key_source != "the key(s) given with --trust":
            print("WARNING: only the bundle's own trusted_keys.txt was used, which whoever"
                  " could change the bundle could change too; pass your own copy of the"
                  " verifier key with --trust VKEY")
    elif counts[0]:
        print("WARNING: no trusted key (no --trust, no trusted_keys.txt): checkpoint"
              " signatures were not checked")
    if counts[2] and not ca_file:
        print("WARNING: time-stamps were not checked: no tsa_ca.pem in the bundle and no"
              " --tsa-ca FILE")
    elif counts[2]:
        print("verify.sh: %d time-stamp(s) checked against %s" % (counts[3], ca_file))
        if not os.environ.get("VERIFY_TSA_CA"):
            print("WARNING: only the bundle's own tsa_ca.pem was used, which whoever could"
                  " change the bundle could change too; pass the TSA's root with --tsa-ca FILE")
    print("verify.sh: Merkle roots recomputed; %d of %d checkpoint(s) hold"
          % (counts[1], counts[0]))
    return 1 if failures else 0


try:
    status = main()
except FileNotFoundError as exc:
    fail("cannot run %s (is openssl installed?)" % exc.filename)
    status = 1
finally:
    import shutil
    shutil.rmtree(work, ignore_errors=True)
sys.exit(status)
PYTHON
fi

if [ "$failed" -ne 0 ]; then
  echo "verify.sh: FAILED"
  exit 1
fi
echo "verify.sh: OK ($segments manifest segment(s) chained, listing matches the manifests)"
"""
