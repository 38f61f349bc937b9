"""sm: keep an exact, immutable copy of every message you send in a bucket you own.

The sender's API::

    from stored_messages_cli import Spool
    spool = Spool.open()
    spool.record(message)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import InvalidMessage, MessageConflict, UnknownMessage

if TYPE_CHECKING:
    from .spool import Spool


def __getattr__(name: str) -> Any:
    """`Spool` and `__version__`, loaded on first use.

    `Spool` brings SQLite, pydantic and the config code (about 0.3 s of imports): `sm
    --version` and commands that never open the spool do not pay for it.
    `__version__` is read from the installed metadata only when asked (it costs ~50 ms).
    """
    if name == "Spool":
        from .spool import Spool

        globals()["Spool"] = Spool
        return Spool
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    found = _dist_info_version()
    if found is not None:
        return found
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stored-messages-cli")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0.0.0"

def _dist_info_version() -> str | None:
    """The `Version:` of the first `stored_messages_cli-*.dist-info` on `sys.path` (where
    importlib.metadata would look first), read without importing it (~30 ms); None if absent."""
    import os
    import sys

    for folder in sys.path:
        try:
            names = os.listdir(folder or ".")
        except OSError:
            continue
        for entry in names:
            if entry.startswith("stored_messages_cli-") and entry.endswith(".dist-info"):
                try:
                    with open(os.path.join(folder, entry, "METADATA"), encoding="utf-8") as fh:
                        for line in fh:
                            if line.startswith("Version:"):
                                return line.split(":", 1)[1].strip()
                            if not line.strip():
                                break  # the headers ended
                except OSError:
                    pass
    return None


__all__ = ["Spool", "InvalidMessage", "MessageConflict", "UnknownMessage", "__version__"]
