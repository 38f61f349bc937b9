"""Live configuration for `sm run`: config.toml changes and SIGHUP apply without a restart.

On each turn of the loop (`Archiver.on_tick`) the daemon looks at config.toml's stamp; when it
changed, or after SIGHUP, the file is read again. New and changed destinations are opened and
handed to the archiver (work in flight finishes where it started), removed ones stop being
claimed, the settings a running daemon can take apply (retry policy, leases, confirmation
times, poll interval, manifest limits; any other changed setting is logged as needing a
restart), and create-only writes are proven again.
A file that no longer reads is reported and the running configuration is kept. Mediums need
nothing here: the spool re-reads them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..archiver import Archiver, ProjectTarget
from ..config.last_good import remember
from ..config.settings import load_settings
from ..destinations import open_destination
from ..destinations.base import Destination
from ..errors import SmError
from ..evidence.manifest import limits_from
from .archiving import policy_from
from .common import AppState, options_for, refuse_read_only

log = logging.getLogger("sm.run")

# Settings a reload applies to the running daemon; any other changed setting is named in the
# log as needing a restart (the worker pool, the log format, the spool, the signed log's keys).
APPLIED_ON_RELOAD = frozenset({
    "retry_interval", "retry_window", "rate_limit_backoff_base", "rate_limit_backoff_cap",
    "recovery_probes", "lease_seconds", "confirm_timeout", "confirm_grace", "poll_interval",
    "manifest_max_entries", "manifest_max_age"})


class Reloader:
    """Keeps a running archiver's targets in step with config.toml."""

    def __init__(self, state: AppState, archiver: Archiver, targets: list[ProjectTarget], *,
                 only_project: str | None, max_connections: int,
                 on_targets: list[Any] | None = None,
                 on_reload: list[Any] | None = None, manifests: Any = None) -> None:
        self.state = state
        self.archiver = archiver
        self.manifests = manifests  # its `max_entries` and `max_age` follow the settings
        self.running = state.settings()  # the settings in effect
        self.only_project = only_project
        self.max_connections = max_connections
        self.requested = threading.Event()  # set by SIGHUP
        self.on_targets = on_targets or []  # callables(dict[project_id, Destination])
        self.on_reload = on_reload or []  # callables(), after every reload that took
        self.opened: list[Destination] = [t.destination for t in targets]
        self._saved = self._saved_destinations(state.settings())
        self._current = {t.project_id: t for t in targets}
        self._stamp = self._config_stamp()

    def _config_stamp(self) -> tuple[int, int] | None:
        try:
            found = self.state.paths.config_file.stat()
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size

    def _saved_destinations(self, settings: Any) -> dict[str, dict[str, Any]]:
        return {pid: saved.model_dump() for pid, saved in settings.projects.items()
                if self.only_project in (None, pid)}

    def tick(self) -> None:
        """Reload when config.toml changed or SIGHUP asked for it."""
        stamp = self._config_stamp()
        if stamp == self._stamp and not self.requested.is_set():
            return
        self.requested.clear()
        self._stamp = stamp
        try:
            settings = load_settings(self.state.paths.config_file)
        except SmError as exc:
            log.error("config.toml changed but cannot be used (%s); keeping the running"
                      " configuration", exc, extra={"event": "config_rejected"})
            return
        remember(self.state.paths.config_file)  # what senders use while a later edit fails
        saved = self._saved_destinations(settings)
        changed = sorted(p for p in saved if self._saved.get(p) != saved[p])
        removed = sorted(set(self._saved) - set(saved))
        targets = dict(self._current)
        for project_id in removed:
            targets.pop(project_id, None)
        for project_id in changed:
            try:
                refuse_read_only(project_id, settings.projects[project_id])
                destination = open_destination(
                    settings.projects[project_id].url,
                    options_for(settings.projects[project_id],
                                max_connections=self.max_connections))
            except SmError as exc:
                log.error("cannot open the new destination of project %s (%s); it keeps"
                          " the running one", project_id, exc,
                          extra={"event": "config_rejected", "project_id": project_id})
                saved[project_id] = self._saved.get(project_id, saved[project_id])
                continue
            self.opened.append(destination)
            targets[project_id] = ProjectTarget(project_id, destination)
        applied, restart = self._apply_settings(settings)
        if changed or removed:
            self.archiver.set_targets(targets.values())
            self._current = targets
            for callback in self.on_targets:
                callback({p: t.destination for p, t in targets.items()})
        self._saved = saved
        for callback in self.on_reload:
            callback()
        log.info("configuration reloaded: %d project(s); new or changed: %s; removed: %s;"
                 " settings applied: %s", len(targets), ", ".join(changed) or "none",
                 ", ".join(removed) or "none", ", ".join(applied) or "none",
                 extra={"event": "config_reloaded", "projects": sorted(targets),
                        "changed": changed, "removed": removed, "settings_applied": applied,
                        "needs_restart": restart})
        if restart:
            log.warning("changed setting(s) %s need a restart of sm run to apply; until then"
                        " the running values stay", ", ".join(restart),
                        extra={"event": "config_needs_restart", "needs_restart": restart})

    def _apply_settings(self, settings: Any) -> tuple[list[str], list[str]]:
        """Apply the changed settings a running daemon can take; return (applied, the
        changed ones that need a restart), by name."""
        changed = sorted(name for name in type(settings).model_fields if name != "projects"
                         and getattr(settings, name) != getattr(self.running, name))
        self.archiver.policy = self.archiver.outage.policy = policy_from(settings)
        self.archiver.lease_seconds = settings.lease_seconds
        self.archiver.confirm_timeout = settings.confirm_timeout
        self.archiver.confirm_grace = settings.confirm_grace
        self.archiver.poll_interval = settings.poll_interval
        if self.manifests is not None:
            self.manifests.max_entries, self.manifests.max_age = limits_from(settings)
        applied = [n for n in changed if n in APPLIED_ON_RELOAD]
        restart = [n for n in changed if n not in APPLIED_ON_RELOAD]
        # What needs a restart keeps its running value, so it is named again until then.
        self.running = settings.model_copy(update={n: getattr(self.running, n)
                                                   for n in restart})
        return applied, restart

    def close(self) -> None:
        """Close every destination opened by the daemon, the first ones included."""
        for destination in self.opened:
            destination.close()
