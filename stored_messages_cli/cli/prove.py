"""`sm prove` and `sm verify-proof`: a message's proof of archiving, made from the bucket and
checked anywhere (docs/proofs.md)."""

# No `from __future__ import annotations`: typer would have to eval every annotation.

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from ..evidence.access_log import filters_of, message_ref
from ..evidence.private_files import private_folder, write_private
from ..evidence.proof_check import (
    MAX_PROOF_BYTES,
    ProofReport,
    check_proof,
    object_digest,
    read_bounded,
)
from ..evidence.prove import ProofError, make_proof, proof_json, trusted_verifiers
from ..evidence.signing import key_home, signing_key_path
from ..spool.index_queries import INDEX_COLUMNS
from .access_log import recorded
from .common import AppState, command, fail, open_project_destination, state_of, usage_error
from .options import MessageIdArgument, MessageProjectOption

TrustOption = Annotated[list[str] | None, typer.Option(
    "--trust", metavar="VKEY",
    help="A verifier key checkpoints must be signed by (sm key show on the archiver);"
    " repeatable. Default: the setting trusted_keys, else this home's signing key.")]


def _verifiers(state: AppState, trust: list[str] | None) -> list[Any]:
    """The trusted verifier keys: --trust (a bad one is a usage error), else the setting
    `trusted_keys`, else this home's own signing key when it has one."""
    settings = state.settings()
    key_file = signing_key_path(key_home(state.paths), settings.log_key_file)
    if trust:
        try:
            return trusted_verifiers(trust)
        except ProofError as exc:
            raise usage_error(str(exc), param_hint="--trust", hint=exc.hint) from None
    return trusted_verifiers(list(settings.trusted_keys), key_file)


def _project_of(state: AppState, message_id: str, project: str | None) -> str:
    """The message's project: --project, else the one the spool knows it in, else the only
    connected project."""
    if project is not None:
        state.project(project)
        return project
    with state.open_spool() as spool:
        known = {str(row[0]) for row in spool.index.message_records(message_id)}
        known |= {str(row[0]) for row in spool.index.entries_for(message_id)}
    connected = sorted(state.settings().projects)
    candidates = sorted(known & set(connected)) or (connected if len(connected) == 1 else [])
    if len(candidates) != 1:
        fail(f"which project's message {message_id} to prove cannot be told"
             + (f" (it is in {', '.join(candidates)})" if candidates else ""),
             hint=f"sm prove {message_id} --project ID", code=2)
    return candidates[0]


def prove(
    ctx: typer.Context,
    message_id: MessageIdArgument,
    project: MessageProjectOption = None,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", metavar="FILE",
        help="Write the proof to FILE (0600) instead of standard output ('-').")] = None,
    trust: TrustOption = None,
) -> None:
    """Print the proof that a message was archived: its manifest entry, its place in the
    signed log, the checkpoint and its time-stamps (JSON).

    Made from the bucket's own segments and checkpoints; nothing is written to the bucket,
    so it works on a read-only connection. Anyone can check it with sm verify-proof, or by hand
    (docs/proofs.md). Exit 1 when the message is not in a sealed, signed segment yet.
    Example: sm prove 9c438a20d26e4e9f8ad4edea23f811cd --project 12345 -o proof.json
    """
    state = state_of(ctx)
    out = state.output
    state.require_spool()
    project_id = _project_of(state, message_id, project)
    verifiers = _verifiers(state, trust)
    with recorded(state, "prove", case_id=None,
                  filters=filters_of(message_id=message_id, project=project_id)) as access:
        access.concern([project_id])
        destination = open_project_destination(state, project_id)
        try:
            with state.open_spool() as spool:
                keys = [row[INDEX_COLUMNS.index("key")]
                        for row in spool.index.entries_for(message_id, project_id)]
                proof = make_proof(destination, project_id, message_id, verifiers,
                                   spool=spool, object_key=keys[0] if keys else None)
        finally:
            destination.close()
        access.touch([message_ref(project_id, message_id, proof["object_key"])])
        access.details["tree_size"] = proof["tree_size"]
    text = proof_json(proof)
    if output is None or output == "-":
        sys.stdout.write(text)
        return
    path = Path(output)
    try:
        private_folder(path.parent)
        write_private(path, text.encode("utf-8"))
    except OSError as exc:
        fail(f"cannot write the proof to {path}: {exc.strerror or exc}",
             hint="--output FILE in a folder you can write, or leave it out for stdout")
    out.info(f"Wrote the proof of message {message_id} (leaf {proof['leaf_index']} of"
             f" {proof['tree_size']}) to {path}; check it with sm verify-proof {path}")


def verify_proof(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(
        metavar="FILE", help="The proof sm prove wrote; '-' reads standard input.")],
    object_file: Annotated[Path | None, typer.Option(
        "--object", metavar="PATH",
        help="The object's file (as fetched from the bucket): its SHA-256 and size must be"
        " the proof's.")] = None,
    trust: TrustOption = None,
    tsa_ca: Annotated[Path | None, typer.Option(
        "--tsa-ca", metavar="FILE",
        help="PEM roots of the time-stamp authorities (default: the setting"
        " timestamp_ca_file).")] = None,
) -> None:
    """Check a proof sm prove made: signature, inclusion, entry, time-stamps and (with
    --object) the object's bytes. Needs no spool and no bucket.

    Exit 0 when every check holds, else 1 with one line per failed check.
    Example: sm verify-proof proof.json --trust "$(sm key show)" --object m-1.json.gz
    """
    state = state_of(ctx)
    verifiers = _verifiers(state, trust)
    raw = _read_proof(file)
    digest = None
    if object_file is not None:
        try:
            with open(object_file, "rb") as handle:
                digest = object_digest(handle)
        except OSError as exc:
            fail(f"cannot read the object {object_file}: {exc.strerror or exc}", code=2,
                 hint="--object PATH names the object's file, as fetched from the bucket")
    ca_file = tsa_ca or state.settings().timestamp_ca_file
    ca_pem = _read_ca(Path(ca_file)) if ca_file else None
    report = check_proof(raw, verifiers, object_file=digest, ca_pem=ca_pem)
    _render(state, report)


def _read_proof(file: str) -> bytes | None:
    """The proof's bytes, at most MAX_PROOF_BYTES (None when the file holds more)."""
    if file == "-":
        return read_bounded(sys.stdin.buffer, MAX_PROOF_BYTES)
    try:
        with open(file, "rb") as handle:
            return read_bounded(handle, MAX_PROOF_BYTES)
    except OSError as exc:
        fail(f"cannot read the proof {file}: {exc.strerror or exc}", code=2,
             hint="sm verify-proof FILE (the file sm prove -o FILE wrote), or - for stdin")


def _read_ca(path: Path) -> bytes:
    """The time-stamp roots' PEM (a usage error when unreadable)."""
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read the time-stamp roots {path}: {exc.strerror or exc}", code=2,
             hint="--tsa-ca FILE names a PEM file of the authority's root certificates")


def _render(state: AppState, report: ProofReport) -> None:
    """Print the checks that held (or the --json document); then, unless every check
    held, one `Error:` line per failed check on stderr and exit 1."""
    out = state.output
    if out.json_mode:
        out.emit_json(report.as_dict())
    else:
        for check in report.checks:
            if check.ok:
                out.print(f"ok  {check.check}: {check.detail}", highlight=False)
    if report.ok:
        out.summary(f"The proof holds: message {report.message_id} is in the signed log.")
        return
    *first, last = report.failures
    for check in first:
        out.stderr.print(Text.assemble(("Error:", "bold red"), f" {check.check}:"
                                       f" {check.detail}"), highlight=False)
    fail(f"{last.check}: {last.detail}",
         hint="a proof holds only as sm prove wrote it, checked with the log's verifier key"
         " (docs/proofs.md)")


def register(app: typer.Typer) -> None:
    """Add `sm prove` and `sm verify-proof`."""
    command(app, "prove")(prove)
    command(app, "verify-proof")(verify_proof)
