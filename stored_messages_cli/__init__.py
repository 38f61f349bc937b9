"""sm: keep an exact, immutable copy of every message you send in a bucket you own.

The sender's API (docs/python-api.md)::

    from stored_messages_cli import Spool
    spool = Spool.open()
    spool.record(message)

Everything importable from here is public and listed in `__all__`: the spool, the message
models (to build a message with types instead of a dict) and the errors a sender handles.
"""

from .errors import InvalidMessage, MessageConflict, SmError, UnknownMessage
from .model import EmailMessage, PushMessage, SmsMessage
from .spool import Spool

__all__ = ["Spool", "EmailMessage", "SmsMessage", "PushMessage", "SmError", "InvalidMessage",
           "MessageConflict", "UnknownMessage", "__version__"]


def __getattr__(name: str) -> str:
    """`__version__`, read from the installed metadata only when asked (it costs ~50 ms)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stored-messages-cli")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0.0.0"


def __dir__() -> list[str]:
    return sorted(__all__)
