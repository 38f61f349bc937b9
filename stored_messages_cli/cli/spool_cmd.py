"""`sm spool prune|vacuum|backup`: keep the spool small, and copy it safely (a spool.db file;
prune and vacuum also a PostgreSQL spool, whose backups are the database's: docs/fleet.md)."""

# No `from __future__ import annotations`: typer would have to eval every annotation.

from typing import Annotated

import typer

from ..spool.maintenance import backup as do_backup
from ..spool.maintenance import prune as do_prune
from ..spool.maintenance import vacuum as do_vacuum
from ..spool.sealing import note_keys_backed_up
from .command_classes import group
from .common import command, duration_option, state_of

DEFAULT_OLDER_THAN = "30d"


def _size(count: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def prune(
    ctx: typer.Context,
    older_than: Annotated[float, typer.Option(
        "--older-than", parser=duration_option, metavar="DURATION",
        help="Remove settled bookkeeping older than this (default 30d).")] = duration_option(
            DEFAULT_OLDER_THAN),
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Count what would be removed; change nothing.")] = False,
) -> None:
    """Remove rows of messages stored (or discarded) longer ago than --older-than.

    Index rows stay (sm find, fetch and audits keep working), and with them each stored
    message's identity: ingesting it again is a duplicate, other content a conflict. Queued,
    in-flight, waiting, expired and failed messages are never touched.
    Example: sm spool prune --older-than 7d
    """
    state = state_of(ctx)
    out = state.output
    with state.open_spool() as spool:
        report = do_prune(spool, older_than, dry_run=dry_run)
    if out.json_mode:
        out.emit_json({**report.as_dict(), "dry_run": dry_run})
        return
    verb = "would remove" if dry_run else "removed"
    out.print(f"{verb}: stored {report.stored}, discarded {report.discarded}, rejected lines"
              f" {report.rejected_lines}, stopped daemons {report.daemons}", highlight=False)
    if not dry_run and (report.stored or report.discarded or report.rejected_lines):
        out.info("PostgreSQL reuses the freed rows once vacuumed (autovacuum, or: sm spool"
                 " vacuum)" if spool.is_postgres
                 else "The file keeps its size until: sm spool vacuum")

def vacuum(ctx: typer.Context) -> None:
    """Rewrite the spool file compactly (after a prune). Writers wait while it runs.

    On a PostgreSQL spool: VACUUM (ANALYZE) of the spool's tables; writers carry on, and
    the freed space is reused by the database rather than given back to the disk.

    Example: sm spool prune --older-than 30d && sm spool vacuum
    """
    state = state_of(ctx)
    out = state.output
    with state.open_spool() as spool:
        sizes = do_vacuum(spool)
    if out.json_mode:
        out.emit_json(sizes)
        return
    out.print(f"spool {_size(sizes['bytes_before'])} -> {_size(sizes['bytes_after'])}",
              highlight=False)

def backup(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE", help="Where to write the copy.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Replace FILE if it exists.")] = False,
) -> None:
    """Copy the spool with SQLite's online backup: consistent while sm run and senders write.

    A PostgreSQL spool is backed up with its database (pg_dump, or the managed service's
    snapshots); there this command says how and exits 1.

    Example: sm spool backup /var/backups/sm/spool-$(date +%F).db
    """
    state = state_of(ctx)
    out = state.output
    with state.open_spool() as spool:
        result = do_backup(spool, path, force=force)
        note_keys_backed_up(spool.store, spool.clock.now())  # the copy holds the keys
    if out.json_mode:
        out.emit_json(result)
        return
    out.print(f"backed up {result['messages']} message row(s), {_size(result['bytes'])},"
              f" to {result['path']}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add the spool group (prune, vacuum, backup)."""
    spool_app = group("spool", "Maintain the spool: prune, vacuum, backup.")
    command(spool_app, "prune")(prune)
    command(spool_app, "vacuum")(vacuum)
    command(spool_app, "backup")(backup)
    app.add_typer(spool_app, name="spool")
