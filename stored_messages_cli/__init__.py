"""sm: keep an exact, immutable copy of every message you send in a bucket you own.

The sender's API (docs/python-api.md)::

    from stored_messages_cli import Spool
    spool = Spool.open()
    spool.record(message)

Everything importable from here is public and listed in `__all__`: the spool, the message
models (to build a message with types instead of a dict) and the errors a sender handles.
"""

from typing import TYPE_CHECKING, Any

from .errors import InvalidMessage, MessageConflict, SmError, UnknownMessage

if TYPE_CHECKING:
    from .message.models import EmailMessage, PushMessage, SmsMessage
    from .spool import Spool

__all__ = ["Spool", "EmailMessage", "SmsMessage", "PushMessage", "SmError", "InvalidMessage",
           "MessageConflict", "UnknownMessage", "__version__"]

# Loaded on first use: the spool and the models bring SQLite, pydantic and the config code
# (about 0.3 s of imports), which `sm --version` and commands that never validate or open
# the spool do not need.
_LAZY = {"Spool": ".spool", "EmailMessage": ".message.models",
         "SmsMessage": ".message.models", "PushMessage": ".message.models"}


def __getattr__(name: str) -> Any:
    """`Spool`, the message models and `__version__`, loaded when first asked for."""
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
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


def __dir__() -> list[str]:
    return sorted(__all__)
