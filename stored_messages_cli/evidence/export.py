"""`sm export`: stored messages for eDiscovery, verified, with a load file and checksums.

Every message is read from the bucket and verified as `sm fetch` verifies it before anything
is written; a message that fails is listed in `exceptions.csv` and the report, never exported.
The export folder holds (docs/investigations.md):

- the messages: `--format eml` one RFC 5322 file per email (a reconstruction from the
  archived fields, marked so, sm's `X-SM-*` headers first, carrying `X-SM-Payload-SHA256`;
  a sender's own `X-SM-*` and `Content-*` headers kept as `X-Original-SM-*` and
  `X-Original-Content-*`), `mbox` the emails in one
  `messages.mbox`; SMS and push as their exact payload JSON; `jsonl` every exact payload,
  one per line, in `messages.jsonl`;
- `loadfile.csv`: message_id, project_id, medium, message_type, campaign_id, sent_at, key,
  payload_sha256, file, file_sha256;
- `exceptions.csv`: messages that failed verification (message_id, project_id, key, reason);
- `SHA256SUMS` over every other file, in `sha256sum` format.

The same messages give byte-identical files (sorted order, fixed boundaries and From_ lines,
fixed zip timestamps and attributes).
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from ..destinations.base import Destination
from ..errors import SmError
from ..investigate.index import IndexEntry
from ..investigate.verified import READ_WORKERS, VerifiedMessage, read_many
from ..message import MAX_PAYLOAD_BYTES, parse_sent_at, sha256_hex
from ..states import Medium
from .export_evidence import EvidenceKeys, read_evidence
from .private_files import private_folder, write_private

FORMATS: tuple[str, ...] = ("eml", "mbox", "jsonl")
# the formats whose messages make one stream (`sm export --output -`), and that stream's file
STREAM_FILES: dict[str, str] = {"jsonl": "messages.jsonl", "mbox": "messages.mbox"}
LOADFILE_FIELDS: tuple[str, ...] = (
    "message_id", "project_id", "medium", "message_type", "campaign_id", "sent_at", "key",
    "payload_sha256", "file", "file_sha256",
    "holds",  # the open legal hold cases holding it, `;`-separated (SPEC 9.4)
    "evidence_files")  # its delivery evidence files, space-separated (SPEC 9.3)
EXCEPTION_FIELDS: tuple[str, ...] = ("message_id", "project_id", "key", "reason")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_FROM_LINE = re.compile(rb"(?m)^(>*)From ")
EML_POLICY = policy.default.clone(linesep="\r\n", max_line_length=998)
RECONSTRUCTION_NOTE = ("reconstructed by sm from the archived payload; the archived record is"
                       " the payload JSON whose SHA-256 is X-SM-Payload-SHA256")

# (project_id, destination URL or None) -> an open destination
Opener = Callable[[str, str | None], Destination]


class ExportError(SmError):
    """The export cannot be written (the folder is not empty, say)."""


@dataclass
class ExportReport:
    """What an export wrote and what failed verification."""

    output: Path
    format: str
    exported: int = 0
    failures: list[tuple[IndexEntry, str]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256

    def as_dict(self) -> dict[str, Any]:
        """The `--json` form."""
        return {"output": str(self.output), "format": self.format, "exported": self.exported,
                "failed": len(self.failures),
                "failures": [{"message_id": e.message_id, "project_id": e.project_id,
                              "key": e.key, "reason": r} for e, r in self.failures],
                "files": len(self.files)}


def export_order(entries: Iterable[IndexEntry]) -> list[IndexEntry]:
    """The order of an export: `sent_at`, then project and message id (oldest first)."""
    return sorted(entries, key=lambda e: (e.sent_at_moment(), e.project_id, e.message_id))


def verify_all(entries: list[IndexEntry], open_for: Opener, *, workers: int = READ_WORKERS,
               on_read: Callable[[int], None] | None = None,
               max_payload_bytes: int = MAX_PAYLOAD_BYTES,
               ) -> tuple[dict[tuple[str, str], VerifiedMessage], list[tuple[IndexEntry, str]]]:
    """Read and verify every entry (against the payload hash the index recorded); a payload
    over `max_payload_bytes` is not decompressed further and is that entry's failure."""
    groups: dict[tuple[str, str | None], list[IndexEntry]] = {}
    for entry in entries:
        groups.setdefault((entry.project_id, entry.destination_url), []).append(entry)
    verified: dict[tuple[str, str], VerifiedMessage] = {}
    failures: list[tuple[IndexEntry, str]] = []
    for (project_id, url), group in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or "")):
        by_key = {e.key: e for e in group}
        destination = open_for(project_id, url)
        try:
            expected = {e.key: e.payload_sha256 for e in group if e.payload_sha256}
            for key, result in read_many(destination, list(by_key), expected=expected,
                                         workers=workers, max_payload_bytes=max_payload_bytes):
                entry = by_key[key]
                if isinstance(result, VerifiedMessage):
                    if result.entry.message_id != entry.message_id:
                        failures.append((entry, f"the object at {key} is another message"))
                    else:
                        verified[(entry.project_id, entry.message_id)] = result
                else:
                    failures.append((entry, str(result)))
                if on_read:
                    on_read(1)
        finally:
            destination.close()
    return verified, failures


def _one_line(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return " ".join(text.splitlines())


def exported_header_name(name: str) -> str:
    """The name an archived header is exported under in an EML file.

    Only sm writes `X-SM-*`: a sender's own becomes `X-Original-SM-*`. The body is sm's
    reconstruction with MIME headers of its own, so the archived `Content-*` headers (type,
    transfer encoding, …) are kept as `X-Original-Content-*` rather than contradict it.
    """
    lowered = name.lower()
    if lowered.startswith("x-sm-"):
        return "X-Original-SM-" + name[len("x-sm-"):]
    if lowered.startswith("content-"):
        return "X-Original-" + name
    return name


def build_eml(verified: VerifiedMessage) -> bytes:
    """An RFC 5322 message rebuilt from an archived email payload (CRLF line endings)."""
    document = verified.document
    raw_content = document.get("content")
    content: dict[str, Any] = raw_content if isinstance(raw_content, dict) else {}
    entry = verified.entry
    message = EmailMessage(policy=EML_POLICY)
    set_names: set[str] = set()

    def put(name: str, value: Any) -> None:
        if value is None:
            return
        try:
            message[name] = _one_line(value)
        except (ValueError, TypeError, IndexError):
            message[name] = _one_line(value).encode("ascii", "backslashreplace").decode()
        set_names.add(name.lower())

    # sm's own headers first: a reader taking the first X-SM-Payload-SHA256 gets sm's
    put("X-SM-Project-ID", entry.project_id)
    put("X-SM-Key", entry.key)
    put("X-SM-Payload-SHA256", entry.payload_sha256)
    put("X-SM-Note", RECONSTRUCTION_NOTE)
    put("From", content.get("from"))
    put("To", content.get("to"))
    put("Reply-To", content.get("reply_to"))
    put("Subject", content.get("subject"))
    put("Date", format_datetime(parse_sent_at(document["sent_at"])))
    put("Message-ID", f"<{entry.message_id}.{entry.project_id}@stored-messages.invalid>")
    headers = content.get("headers")
    if isinstance(headers, dict):
        for name in sorted(headers):
            exported = exported_header_name(name)
            if exported.lower() in set_names or not name or not all(
                    33 <= ord(c) <= 126 and c != ":" for c in name):
                continue
            put(exported, headers[name])
    text, html = content.get("text"), content.get("html")
    if isinstance(text, str):
        message.set_content(text, cte="quoted-printable")
        if isinstance(html, str):
            message.add_alternative(html, subtype="html", cte="quoted-printable")
    elif isinstance(html, str):
        message.set_content(html, subtype="html", cte="quoted-printable")
    if message.is_multipart():
        message.set_boundary(f"sm-{entry.payload_sha256 or sha256_hex(verified.payload)}")
    head, _, body = message.as_bytes(policy=EML_POLICY).partition(b"\r\n\r\n")
    # Bodies are quoted-printable: a line starting `From ` (or `>From `) is written `=46rom `
    # (`=3E=46rom `), which decodes to the same text, so an mbox needs no `>From` quoting
    # and every mbox reader gets the text back exactly.
    body = _FROM_LINE.sub(lambda m: b"=3E" * len(m.group(1)) + b"=46rom ", body)
    return head + b"\r\n\r\n" + body


def _mbox_entry(verified: VerifiedMessage, eml: bytes) -> bytes:
    """One mboxrd entry: a From_ line dated `sent_at`, LF line endings, `>From ` quoting."""
    moment = parse_sent_at(verified.document["sent_at"])
    lines = eml.replace(b"\r\n", b"\n").split(b"\n")
    quoted = [b">" + line if line.lstrip(b">").startswith(b"From ") else line
              for line in lines]
    body = b"\n".join(quoted).rstrip(b"\n")
    return (f"From MAILER-DAEMON {moment.strftime('%a %b %d %H:%M:%S %Y')}\n".encode()
            + body + b"\n\n")


def _csv(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in fields})
    return buffer.getvalue().encode("utf-8")


def build_files(entries: list[IndexEntry], verified: dict[tuple[str, str], VerifiedMessage],
                failures: list[tuple[IndexEntry, str]], fmt: str,
                holds: Mapping[tuple[str, str], Sequence[str]] | None = None,
                evidence: dict[tuple[str, str], dict[str, bytes]] | None = None
                ) -> dict[str, bytes]:
    """Every file of the export (relative path -> bytes), SHA256SUMS last; `holds` are the
    open cases holding each (project, message id); `evidence`, each message's delivery
    evidence files (`export_evidence`)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    files: dict[str, bytes] = {}
    rows: list[dict[str, Any]] = []
    mbox: list[bytes] = []
    jsonl: list[bytes] = []
    for entry in export_order(entries):
        result = verified.get((entry.project_id, entry.message_id))
        if result is None:
            continue
        row: dict[str, Any] = {name: value for name, value in entry.find_result().items()}
        row["payload_sha256"] = result.entry.payload_sha256
        row["holds"] = ";".join((holds or {}).get((entry.project_id, entry.message_id), ()))
        base = f"messages/{entry.project_id}/{entry.medium}/{entry.message_id}"
        if fmt == "jsonl":
            row["file"] = "messages.jsonl"
            jsonl.append(result.payload + b"\n")
        elif entry.medium == Medium.EMAIL:
            eml = build_eml(result)
            if fmt == "eml":
                row["file"] = f"{base}.eml"
                files[row["file"]] = eml
            else:
                row["file"] = "messages.mbox"
                mbox.append(_mbox_entry(result, eml))
        else:
            row["file"] = f"{base}.json"
            files[row["file"]] = result.payload
        own = (evidence or {}).get((entry.project_id, entry.message_id), {})
        files.update(own)
        row["evidence_files"] = " ".join(sorted(own)) or None
        rows.append(row)
    if jsonl:
        files["messages.jsonl"] = b"".join(jsonl)
    if mbox:
        files["messages.mbox"] = b"".join(mbox)
    for row in rows:
        row["file_sha256"] = sha256_hex(files[row["file"]])
    files["loadfile.csv"] = _csv(rows, LOADFILE_FIELDS)
    exceptions = [{"message_id": e.message_id, "project_id": e.project_id, "key": e.key,
                   "reason": " ".join(reason.splitlines())}
                  for e, reason in sorted(failures, key=lambda f: (f[0].project_id,
                                                                    f[0].message_id))]
    files["exceptions.csv"] = _csv(exceptions, EXCEPTION_FIELDS)
    files["SHA256SUMS"] = "".join(
        f"{sha256_hex(files[path])}  {path}\n" for path in sorted(files)).encode("utf-8")
    return files


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """The files in one zip: sorted, fixed timestamps and attributes, deflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100600 << 16
            info.create_system = 3
            archive.writestr(info, files[path], compresslevel=9)
    return buffer.getvalue()


def write_export(output: Path, files: dict[str, bytes], *, as_zip: bool, name: str = "export"
                 ) -> dict[str, str]:
    """Write the export into `output` (new or empty), owner-only; returns path -> sha256.

    With `as_zip` the folder holds `{name}.zip` and `{name}.zip.sha256` (sha256sum format).
    """
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ExportError(f"{output} exists and is not an empty folder; nothing was written",
                          hint="sm export ... --output NEW_FOLDER")
    if as_zip:
        body = zip_bytes(files)
        files = {f"{name}.zip": body,
                 f"{name}.zip.sha256": f"{sha256_hex(body)}  {name}.zip\n".encode()}
    private_folder(output)
    for path in sorted(files):
        target = output / path
        private_folder(target.parent)
        write_private(target, files[path], exclusive=True)
    return {path: sha256_hex(data) for path, data in files.items()}


def export(entries: list[IndexEntry], open_for: Opener, output: Path, fmt: str, *,
           as_zip: bool = False, name: str = "export", workers: int = READ_WORKERS,
           on_read: Callable[[int], None] | None = None,
           max_payload_bytes: int = MAX_PAYLOAD_BYTES,
           holds: Mapping[tuple[str, str], Sequence[str]] | None = None,
           evidence: EvidenceKeys | None = None) -> ExportReport:
    """Verify every entry, then write the export; failures are reported, not exported.
    `evidence` names each message's delivery evidence objects (written beside the messages;
    one that fails its check is a failure too)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; use eml, mbox or jsonl")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ExportError(f"{output} exists and is not an empty folder; nothing was written",
                          hint="sm export ... --output NEW_FOLDER")
    verified, failures = verify_all(entries, open_for, workers=workers, on_read=on_read,
                                    max_payload_bytes=max_payload_bytes)
    evidence_files, evidence_failures = read_evidence(entries, evidence or {}, open_for,
                                                      set(verified))
    failures = failures + evidence_failures
    files = build_files(entries, verified, failures, fmt, holds, evidence_files)
    report = ExportReport(output, fmt, exported=len(verified), failures=failures)
    report.files = write_export(output, files, as_zip=as_zip, name=name)
    return report


def export_stream(entries: list[IndexEntry], open_for: Opener, fmt: str, *,
                  workers: int = READ_WORKERS, on_read: Callable[[int], None] | None = None,
                  max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> tuple[bytes, ExportReport]:
    """Verify every entry; the export's one stream (`messages.jsonl` or `messages.mbox`)
    and its report, for standard output. Only emails go in an mbox: others are refused."""
    if fmt not in STREAM_FILES:
        raise ExportError(f"a {fmt} export is not one stream; use jsonl or mbox")
    others = sum(1 for e in entries if e.medium != Medium.EMAIL)
    if fmt == "mbox" and others:
        raise ExportError(f"{others} matching message(s) are not emails and cannot go in an"
                          " mbox stream; nothing was written",
                          hint="add --medium email, or --output FOLDER")
    verified, failures = verify_all(entries, open_for, workers=workers, on_read=on_read,
                                    max_payload_bytes=max_payload_bytes)
    name = STREAM_FILES[fmt]
    stream = build_files(entries, verified, failures, fmt).get(name, b"")
    report = ExportReport(Path("-"), fmt, exported=len(verified), failures=failures)
    report.files = {name: sha256_hex(stream)}
    return stream, report
