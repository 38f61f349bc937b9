"""`sm fetch`: one message read verified, found through the index or by listing the bucket."""

from __future__ import annotations

from collections.abc import Callable

from ..destinations.base import Destination
from ..errors import ObjectNotFound
from ..message import MAX_PAYLOAD_BYTES
from .find import locate_remote
from .index import AmbiguousMessage, ArchiveIndex
from .verified import VerifiedMessage, read_verified

# (project_id, destination URL recorded in the index or None for the project's own) -> open
DestinationOpener = Callable[[str, str | None], Destination]


def fetch_message(
    index: ArchiveIndex,
    message_id: str,
    *,
    projects: list[str],
    open_for: DestinationOpener,
    project_id: str | None = None,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    phone_region: str | None = None,
) -> VerifiedMessage:
    """Find a message (index first, else by listing each project's bucket) and read it verified.

    `projects` are the projects to search remotely when the index does not know the id.
    The same id in several projects raises AmbiguousMessage; a message read from the bucket
    is added to the index so the next fetch is direct (a national phone number's E.164 hash
    read in `phone_region`). At most `max_payload_bytes` are decompressed.
    """
    entries = index.entries_for(message_id, project_id)
    if len(entries) > 1:
        places = [e.project_id for e in entries]
        raise AmbiguousMessage(
            f"message id {message_id} exists in projects {', '.join(places)}",
            places=places, hint=f"sm fetch {message_id} --project {places[0]}")
    if entries:
        entry = entries[0]
        destination = open_for(entry.project_id, entry.destination_url)
        try:
            return read_verified(destination, entry.key, expected_sha256=entry.payload_sha256,
                                 max_payload_bytes=max_payload_bytes)
        except ObjectNotFound:
            raise ObjectNotFound(
                f"message {message_id} of project {entry.project_id} is in the local index but"
                f" its object {entry.key} is missing from {destination.url}",
                hint="check the bucket's object versions and lifecycle rules") from None
        finally:
            destination.close()
    found: list[tuple[str, Destination, str]] = []
    try:
        for pid in projects:
            destination = open_for(pid, None)
            keys = locate_remote(destination, pid, message_id)
            if keys:
                found.append((pid, destination, keys[0]))
            else:
                destination.close()
        if not found:
            searched = ", ".join(projects) or "none"
            raise ObjectNotFound(
                f"message {message_id} is not in the local index nor in the bucket of"
                f" project(s) {searched}",
                hint="sm find --remote --recipient RECIPIENT --project ID")
        if len(found) > 1:
            places = [pid for pid, _, _ in found]
            raise AmbiguousMessage(
                f"message id {message_id} exists in projects {', '.join(places)}",
                places=places, hint=f"sm fetch {message_id} --project {places[0]}")
        pid, destination, key = found[0]
        verified = read_verified(destination, key, max_payload_bytes=max_payload_bytes,
                                 phone_region=phone_region)
    finally:
        for _, destination, _ in found:
            destination.close()
    index.add([verified.entry])
    return verified
