"""The evidence bundle of `sm audit --report DIR`: what was read, what was found, and a
`verify.sh` that re-checks the manifests, the Merkle log, the checkpoints' signatures, the
time-stamps and the listing without sm (docs/manifests.md, "The evidence bundle")."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..message import sha256_hex
from .findings import AuditResult, ProjectAudit
from .private_files import open_private, private_folder, write_private
from .segments import MANIFEST_FOLDER, seq_of_key
from .verify_sh import VERIFY_SH

__all__ = ["VERIFY_SH", "write_report"]


def write_report(result: AuditResult, folder: Path, *, trusted_keys: Sequence[str] = (),
                 tsa_ca_pem: bytes | None = None, prefixes: Mapping[str, str] | None = None
                 ) -> None:
    """The evidence bundle: manifests and checkpoints (with their time-stamps) as read,
    listing.csv, findings.json, summary.json, manifests.sha256, prefixes.json, the verifier
    keys the audit trusted (trusted_keys.txt), the time-stamp roots it used (tsa_ca.pem), and
    verify.sh. `prefixes` names each project's destination prefix (so verify.sh leaves out
    exactly `{prefix}_sm/`); a project missing from it has it read from its manifests' keys.
    """
    private_folder(folder)
    own = {p.project_id: _prefix_of(p, prefixes or {}) for p in result.projects}
    sums: list[str] = []
    for project in result.projects:
        target = folder / "manifests" / project.project_id
        private_folder(target)
        for seq, body in sorted(project.segments.items()):
            name = f"{seq:012d}.jsonl.gz"
            write_private(target / name, body)
            recorded = project.recorded_sha256.get(seq) or sha256_hex(body)
            sums.append(f"{recorded}  manifests/{project.project_id}/{name}\n")
        _write_checkpoints(project, folder / "checkpoints" / project.project_id)
    write_private(folder / "manifests.sha256", "".join(sums).encode("utf-8"))
    _write_listing(result, own, folder / "listing.csv")
    findings = [dict(f.as_dict(), project_id=p.project_id)
                for p in result.projects for f in p.findings]
    write_private(folder / "findings.json", (json.dumps(findings, indent=2) + "\n").encode())
    write_private(folder / "summary.json",
                  (json.dumps(result.as_dict(), indent=2) + "\n").encode())
    write_private(folder / "prefixes.json",
                  (json.dumps(own, indent=2, sort_keys=True) + "\n").encode())
    if trusted_keys:
        write_private(folder / "trusted_keys.txt",
                      "".join(f"{key.strip()}\n" for key in trusted_keys).encode("utf-8"))
    if tsa_ca_pem is not None:
        write_private(folder / "tsa_ca.pem", tsa_ca_pem)
    # run as `sh verify.sh`: owner-only like the rest, executable by its owner
    write_private(folder / "verify.sh", VERIFY_SH.encode("utf-8"))
    os.chmod(folder / "verify.sh", 0o700)


def _write_checkpoints(project: ProjectAudit, target: Path) -> None:
    """Each checkpoint as `{tree_size:012d}.txt`, its time-stamp tokens as `.tsr`, then
    `.2.tsr`, `.3.tsr`… (one per authority or copy that gave one)."""
    if not project.checkpoints and not project.timestamps:
        return
    private_folder(target)
    for size, text in sorted(project.checkpoints.items()):
        write_private(target / f"{size:012d}.txt", text.encode("utf-8"))
    for size, tokens in sorted(project.timestamps.items()):
        for number, token in enumerate(tokens, start=1):
            suffix = ".tsr" if number == 1 else f".{number}.tsr"
            write_private(target / f"{size:012d}{suffix}", token)


def _write_listing(result: AuditResult, prefixes: Mapping[str, str], path: Path) -> None:
    """listing.csv: `key,size,sha256` of every object listed; a segment's SHA-256 is that
    of the bytes read."""
    with open_private(path) as handle:
        handle.write(b"key,size,sha256\n")  # plain: keys hold no newline; verify.sh splits
        for project in result.projects:
            segments = prefixes[project.project_id] + MANIFEST_FOLDER + project.project_id + "/"
            for key, info in sorted(project.listing.items()):
                digest = project.object_sha256.get(key, "")
                number = seq_of_key(key)
                if number is not None and number in project.segments and \
                        key.startswith(segments):
                    digest = sha256_hex(project.segments[number])
                size = "" if info.size is None else info.size
                handle.write(f"{key},{size},{digest}\n".encode())


def _prefix_of(project: ProjectAudit, prefixes: Mapping[str, str]) -> str:
    """The project's destination prefix: as given, else what precedes `_sm/manifests/ID/`
    in its listed segment keys, else `""` (a folder destination's)."""
    if project.project_id in prefixes:
        return prefixes[project.project_id]
    marker = f"{MANIFEST_FOLDER}{project.project_id}/"
    found = [key[:key.find(marker)] for key in project.listing
             if marker in key and seq_of_key(key) is not None]
    return min(found, key=len, default="")  # the shortest: a key deeper down is someone's
