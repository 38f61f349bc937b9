"""Destinations behind one interface, chosen by URL scheme.

Each backend lives in its own module and is imported only when its scheme is used, so the
commands that never touch a bucket never pay for a cloud SDK's import.
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from .base import Destination, DestinationOptions, split_url

# scheme -> "module:class"; the one place a new backend is registered.
REGISTRY: dict[str, str] = {
    "file": "stored_messages_cli.destinations.file:FileDestination",
    "s3": "stored_messages_cli.destinations.s3:S3Destination",
    "gs": "stored_messages_cli.destinations.gcs:GCSDestination",
    "az": "stored_messages_cli.destinations.azure:AzureDestination",
}

# What to install when a backend's SDK is missing.
EXTRAS: dict[str, str] = {"gs": "gcs", "az": "azure"}


def open_destination(url: str, options: DestinationOptions | None = None) -> Destination:
    """Open the destination a URL names: s3://, gs://, az:// or file:///."""
    scheme = split_url(url)[0]
    target = REGISTRY.get(scheme)
    if target is None:
        raise ConfigError(
            f"{url}: unsupported destination scheme {scheme!r}",
            hint="use s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, az://CONTAINER/PREFIX or"
            " file:///PATH/",
        )
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = EXTRAS.get(scheme)
        hint = f"pip install 'stored-messages-cli[{extra}]'" if extra else None
        raise ConfigError(f"{scheme}:// support is not installed ({exc.name} is missing)",
                          hint=hint) from None
    cls = getattr(module, class_name)
    return cls(url, options or DestinationOptions())


__all__ = ["Destination", "DestinationOptions", "open_destination", "REGISTRY"]
