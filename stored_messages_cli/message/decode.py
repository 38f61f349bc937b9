"""Hostile JSON: decoding text strictly and checking Python objects, never recursing unbounded.

Everything a sender hands over passes here before anything recursive (the JSON decoder,
pydantic, the encoder) sees it: depth, size, key types, lone surrogates and unprintable
numbers are caught with a reason naming the field.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, Final, NoReturn

from ..errors import InvalidMessage

# How deep JSON objects and arrays may nest (the top-level object is level 1). Deeper input is
# rejected before anything recursive (the JSON decoder, pydantic, the encoder) sees it.
MAX_DEPTH: Final = 64
# How many JSON values (counting every object, array, string, number, true/false/null) one
# message given to the Python API may hold; shared sub-objects count once per appearance.
MAX_VALUES: Final = 1_000_000
SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
# Integers with more bits than this may exceed Python's int-to-str digit limit (4300 digits).
SAFE_INT_BITS: Final = 14_000


def _where(path: str) -> str:
    """A field's path for a reason, shortened in the middle when long ("message" for the root)."""
    if len(path) > 100:
        path = f"{path[:60]}...{path[-30:]}"
    return path or "message"


_Link = tuple[Any, str | int] | None  # (parent link, key or index): a path, built on demand


def _path_of(link: _Link) -> str:
    parts: list[str | int] = []
    while link is not None:
        link, part = link
        parts.append(part)
    path = ""
    for part in reversed(parts):
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


def check_json_values(root: Any, *, scalars: bool = True) -> None:
    """Reject what JSON or UTF-8 cannot carry, naming the field; never recurses.

    Checks, iteratively: values are JSON values only (object with string keys, array,
    string, number, true/false/null); nesting is at most MAX_DEPTH levels; nothing contains
    itself; at most MAX_VALUES values; and, with `scalars`, strings and keys hold no lone
    surrogate and numbers are finite and printable. Raises InvalidMessage.

    Without `scalars` it is the cheap structural pass run before anything recursive sees a
    Python object; the encoder catches bad scalars later and this runs again to name them.
    """
    count = 1
    stack: list[tuple[Any, _Link, int]] = [(root, None, 1)]
    while stack:
        value, link, depth = stack.pop()
        kind = type(value)
        if kind is dict or kind is list or isinstance(value, dict | list | tuple):
            if depth > MAX_DEPTH:
                _too_deep(root, link)
            count += len(value)
            if count > MAX_VALUES:
                raise InvalidMessage(f"message holds more than {MAX_VALUES:,} JSON values")
            if isinstance(value, dict):
                items = list(value.items())
                for key, _ in items:
                    if type(key) is not str and not isinstance(key, str):
                        raise InvalidMessage(f"{_where(_path_of(link))} has a key that is not"
                                             " a string")
                    if scalars and SURROGATE_RE.search(key):
                        raise InvalidMessage(f"{_where(_path_of(link))} has a key with a lone"
                                             " surrogate (not valid Unicode)")
                stack.extend((item, (link, key), depth + 1) for key, item in reversed(items))
            else:
                stack.extend((item, (link, index), depth + 1)
                             for index, item in reversed(list(enumerate(value))))
        elif kind is str or isinstance(value, str):
            if scalars and SURROGATE_RE.search(value):
                raise InvalidMessage(f"{_where(_path_of(link))} contains a lone surrogate"
                                     " (not valid Unicode)")
        elif value is None or isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if scalars and value.bit_length() > SAFE_INT_BITS:
                try:
                    int.__repr__(value)
                except ValueError:
                    raise InvalidMessage(f"{_where(_path_of(link))}: number out of range (more"
                                         f" than {sys.get_int_max_str_digits()} digits)") from None
        elif isinstance(value, float):
            if scalars and (value != value or value in (float("inf"), float("-inf"))):
                raise InvalidMessage(f"{_where(_path_of(link))} must be a finite number"
                                     " (NaN and Infinity are not JSON)")
        else:
            raise InvalidMessage(f"{_where(_path_of(link))} must be a JSON value (object, array,"
                                 " string, number, true, false or null), not a"
                                 f" {type(value).__name__}")


_PLAIN_SCALARS = (str, int, float, bool, type(None))


class _Unusual(Exception):
    """Raised by the fast structural pass; the slow pass then names the problem."""


def _plain_tree_size(value: Any, depth: int) -> int:
    """Values in a tree of plain dicts/lists/scalars; raises _Unusual for anything else.

    Recursion is bounded by MAX_DEPTH (a cycle ends there too), so it is safe and much faster
    than the iterative pass, which runs only when this one gives up.
    """
    if depth > MAX_DEPTH:
        raise _Unusual
    items = value.values() if type(value) is dict else value
    if type(value) is dict:
        for key in value:
            if type(key) is not str:
                raise _Unusual
    size = len(value)
    for item in items:
        kind = type(item)
        if kind is dict or kind is list:
            size += _plain_tree_size(item, depth + 1)
            if size > MAX_VALUES:
                raise _Unusual
        elif kind not in _PLAIN_SCALARS:
            raise _Unusual
    return size


def check_structure(root: Any) -> None:
    """The cheap pre-check of a Python object: a JSON-shaped tree of bounded size and depth."""
    if type(root) is dict:
        try:
            _plain_tree_size(root, 1)
            return
        except _Unusual:
            pass
    check_json_values(root, scalars=False)


def _too_deep(root: Any, link: _Link) -> NoReturn:
    """Raise for a container past MAX_DEPTH: a circular reference if one is on its path."""
    chain: list[str | int] = []
    walk = link
    while walk is not None:
        walk, part = walk
        chain.append(part)
    seen = {id(root)}
    node = root
    for depth, part in enumerate(reversed(chain), start=1):
        node = node[part]
        if id(node) in seen:
            partial: _Link = None
            for step in list(reversed(chain))[:depth]:
                partial = (partial, step)
            raise InvalidMessage(f"{_where(_path_of(partial))} contains itself (a circular"
                                 " reference)")
        seen.add(id(node))
    raise InvalidMessage(f"{_where(_path_of(link))}: nested more than {MAX_DEPTH} levels deep")


class _Reject(Exception):
    """Raised from inside the JSON decoder's hooks; carries the rejection reason."""


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Reject(f"duplicate key {json.dumps(key)} in a JSON object")
            seen.add(key)
    return document


def _parse_float(text: str) -> float:
    value = float(text)
    shown = text if len(text) <= 40 else text[:37] + "..."
    if value in (float("inf"), float("-inf")):
        raise _Reject(f"number out of range ({shown} is too large for a 64-bit float)")
    if value == 0.0 and any(c in "123456789" for c in text.lower().partition("e")[0]):
        raise _Reject(f"number out of range ({shown} is too small for a 64-bit float and"
                      " would become 0)")
    return value


def _parse_constant(text: str) -> Any:
    raise _Reject(f"not valid JSON ({text} is not a JSON number)")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_hook, parse_float=_parse_float,
                            parse_constant=_parse_constant)
# A JSON string (possibly unterminated) or one bracket: what the depth scan looks at.
_STRUCTURE_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def _nesting_exceeds(text: str, limit: int) -> bool:
    """True when the brackets outside strings nest deeper than `limit` (linear, no recursion)."""
    if text.count("{") + text.count("[") <= limit:
        return False
    depth = 0
    for match in _STRUCTURE_RE.finditer(text):
        token = match.group()
        if token in ("{", "["):
            depth += 1
            if depth > limit:
                return True
        elif token in ("}", "]"):
            depth -= 1
    return False


def decode_json(text: str) -> Any:
    """Decode one JSON text strictly; raises InvalidMessage with an accurate reason.

    Stricter than `json.loads`: duplicate object keys, NaN/Infinity literals, numbers a
    float cannot hold (`1e400`, `1e-400`), nesting deeper than MAX_DEPTH and lone surrogates
    (`"\\ud800"`) are all rejected, each with its own reason.
    """
    if _nesting_exceeds(text, MAX_DEPTH):
        raise InvalidMessage(f"nested more than {MAX_DEPTH} levels deep")
    try:
        return _DECODER.decode(text)
    except _Reject as exc:
        raise InvalidMessage(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise InvalidMessage(f"not valid JSON ({exc.msg.removesuffix(' at')})") from None
    except ValueError as exc:  # int() refusing a number of more than 4300 digits
        if "integer string conversion" in str(exc):
            raise InvalidMessage(f"number out of range (more than"
                                 f" {sys.get_int_max_str_digits()} digits)") from None
        raise InvalidMessage(f"not valid JSON ({exc})") from None
    except RecursionError:  # not reachable after the depth scan; never let it escape
        raise InvalidMessage(f"nested more than {MAX_DEPTH} levels deep") from None


def printable(reason: str) -> str:
    """A reason safe to store and print: lone surrogates escaped, one line."""
    reason = SURROGATE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", reason)
    return " ".join(reason.splitlines()) if "\n" in reason or "\r" in reason else reason

