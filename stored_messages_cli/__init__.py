"""sm: keep an exact, immutable copy of every message you send in a bucket you own.

The sender's API::

    from stored_messages_cli import Spool
    spool = Spool.open()
    spool.record(message)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .errors import InvalidMessage, MessageConflict, UnknownMessage
from .spool import Spool

try:
    __version__ = version("stored-messages-cli")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = ["Spool", "InvalidMessage", "MessageConflict", "UnknownMessage", "__version__"]
