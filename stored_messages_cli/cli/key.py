"""`sm key init|show`: the log's signing key, and the verifier key an auditor checks
checkpoints with (docs/signing.md)."""

# No `from __future__ import annotations`: typer would have to eval every annotation.

from pathlib import Path
from typing import Annotated

import typer

from ..evidence.signing import (
    create_signing_key,
    default_key_name,
    key_home,
    load_signing_key,
    signing_key_path,
)
from .command_classes import group
from .common import AppState, command, state_of


def _key_file(state: AppState) -> Path:
    """The key file of this home: the setting `log_key_file`, else keys/signing.key."""
    return signing_key_path(key_home(state.paths), state.settings().log_key_file)


def init(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(
        "--name", metavar="NAME",
        help="The key name in every signature (default: sm- and this host's name).")] = None,
) -> None:
    """Create the log's signing key, unless there is one; print its verifier key.

    Give the verifier key to your auditor (sm audit --trust VKEY) and keep the key file
    out of the bucket: whoever holds it can sign checkpoints. Running it again changes
    nothing. Example: sm key init --name sm-mail1.example.com
    """
    state = state_of(ctx)
    out = state.output
    path = _key_file(state)
    try:
        signer, created = create_signing_key(path, name or default_key_name()), True
    except FileExistsError:
        signer, created = load_signing_key(path), False
    if out.json_mode:
        out.emit_json({"key_file": str(path), "verifier_key": signer.verifier_key(),
                       "created": created})
        return
    if created:
        out.info(f"Created the signing key {path} (keep it private, and out of the bucket).")
    else:
        out.info(f"The signing key {path} exists; it is left as it is.")
    out.print(signer.verifier_key(), highlight=False)
    out.info("Give this verifier key to your auditor: sm audit --trust VKEY checks every"
             " checkpoint with it.")


def show(ctx: typer.Context) -> None:
    """Print the verifier key of the log's signing key (one line).

    Example: sm audit --trust "$(sm key show)"
    """
    state = state_of(ctx)
    out = state.output
    path = _key_file(state)
    signer = load_signing_key(path)  # no key: `Error: no signing key at …`, `Try: sm key init`
    if out.json_mode:
        out.emit_json({"key_file": str(path), "verifier_key": signer.verifier_key()})
        return
    out.print(signer.verifier_key(), highlight=False)


def register(app: typer.Typer) -> None:
    """Add the key group (init, show)."""
    key_app = group("key", "The signing key of the manifest log (docs/signing.md).")
    command(key_app, "init")(init)
    command(key_app, "show")(show)
    app.add_typer(key_app, name="key")
