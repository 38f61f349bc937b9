"""sm: keep an exact, immutable copy of every message you send in a bucket you own.

The sender's API::

    from stored_messages_cli import Spool
    spool = Spool.open()
    spool.record(message)
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidMessage, MessageConflict, UnknownMessage
from .spool import Spool


def __getattr__(name: str) -> Any:
    """`__version__`, read from the installed metadata only when asked (it costs ~50 ms)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stored-messages-cli")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0.0.0"

__all__ = ["Spool", "InvalidMessage", "MessageConflict", "UnknownMessage", "__version__"]
