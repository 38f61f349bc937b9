"""Statement parameters in slices both backends accept."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

_Item = TypeVar("_Item")


def chunks(items: Sequence[_Item], size: int = 500) -> Iterator[Sequence[_Item]]:
    """`items` in slices small enough to bind as one statement's parameters (`IN (…)`,
    `VALUES …`) on either backend."""
    return (items[start:start + size] for start in range(0, len(items), size))
