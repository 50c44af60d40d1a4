"""Canonical JSON: one byte string per value, so hashes and signatures are reproducible.

The rule (also in docs/protocol.md): UTF-8, object keys sorted by code point, no insignificant
white space, no floats, strings escaped as Python's ``json`` does with ``ensure_ascii=False``.
A parser accepts a document only if re-encoding it gives the very same bytes, so two
different byte strings can never carry the same signed meaning.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import FormatError

JsonValue = Any


def encode(value: JsonValue) -> bytes:
    """Encode ``value`` canonically; refuses floats, which have no single spelling."""
    _reject_floats(value)
    return _dumps(value)


def _dumps(value: JsonValue) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def decode(data: bytes, *, what: str, max_bytes: int) -> JsonValue:
    """Parse canonical JSON, refusing oversized, duplicate-key or non-canonical documents."""
    if len(data) > max_bytes:
        raise FormatError(f"{what} is {len(data):,} bytes, over the {max_bytes:,}-byte limit")
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_float,  # NaN, Infinity, -Infinity
        )
    except UnicodeDecodeError as exc:
        raise FormatError(f"{what} is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise FormatError(f"{what} is not valid JSON ({exc.msg} at byte {exc.pos})") from None
    except _Refused as exc:
        raise FormatError(f"{what}: {exc}") from None
    except RecursionError:
        raise FormatError(f"{what} is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise FormatError(f"{what} has an invalid value ({str(exc)[:80]})") from None
    try:
        again = _dumps(value)  # no float can be in it: the parser refused every one
    except UnicodeEncodeError:
        raise FormatError(f"{what} contains an unpaired surrogate escape") from None
    if again != data:
        raise FormatError(f"{what} is not in canonical form (sorted keys, no spaces)")
    return value


class _Refused(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in pairs:
        if key in out:
            raise _Refused(f"duplicate key {key!r}")
        out[key] = val
    return out


def _no_float(text: str) -> float:
    raise _Refused(f"floating-point number {text} is not allowed")


def _reject_floats(value: JsonValue) -> None:
    if isinstance(value, float):
        raise FormatError("floating-point numbers have no canonical encoding")
    if isinstance(value, dict):
        for item in value.values():
            _reject_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_floats(item)
