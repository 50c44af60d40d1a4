"""Class join codes: eight characters a child can type, with a check character for typos.

A code is seven random characters and one check character from Crockford's base32 alphabet
(digits and upper-case letters without I, L, O and U), shown as ``XXXX-XXXX``. Reading is
forgiving the way Crockford's decoding is: lower case, spaces and hyphens are accepted, ``O``
reads as ``0`` and ``I``/``L`` as ``1``. Seven characters give 35 random bits; the server
decides which codes exist, so the code is a name, not a password.

The check character makes every code that differs from a real one in one character, or by
two characters swapped (neighbours or not), invalid, so a typo is caught offline instead of
sending a child's records to a class that does not exist. It is a weighted sum over
GF(32) (polynomial x^5 + x^2 + 1, weights the powers of x, which are all distinct): the same
construction as Damm's check digit, ``interim = x * interim + digit``, over the field of 32
elements.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from .errors import FormatError, UsageError

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
DATA_CHARS = 7
CODE_CHARS = DATA_CHARS + 1
_VALUE = {c: i for i, c in enumerate(ALPHABET)} | {"O": 0, "I": 1, "L": 1}
_EXAMPLE = "7KQ2-M9X7"


def _times_x(value: int) -> int:
    value <<= 1
    return value ^ 0b100101 if value & 0b100000 else value


def _checksum(values: list[int]) -> int:
    interim = 0
    for v in values:
        interim = _times_x(interim) ^ v
    return interim


def _show(chars: str) -> str:
    return f"{chars[:4]}-{chars[4:]}"


def generate_join_code(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A new random code in its shown form, e.g. ``7KQ2-M9X7``."""
    bits = int.from_bytes(random_bytes(5), "big") >> 5  # 35 bits
    values = [(bits >> (5 * i)) & 31 for i in reversed(range(DATA_CHARS))]
    values.append(_times_x(_checksum(values)))  # makes the sum over all eight zero
    return _show("".join(ALPHABET[v] for v in values))


def normalise_join_code(text: str) -> str:
    """The shown form of a code a person typed; UsageError (saying what to fix) otherwise."""
    chars = "".join(text.split()).replace("-", "").upper()
    if len(chars) != CODE_CHARS:
        raise UsageError(
            f"join code {text[:40]!r} has {len(chars)} characters; a code has {CODE_CHARS},"
            f" like {_EXAMPLE}"
        )
    bad = sorted({c for c in chars if c not in _VALUE})
    if bad:
        raise UsageError(
            f"join code {text!r} contains {''.join(bad)!r}, which no code uses; codes have"
            " digits and the letters A-Z except I, L, O and U"
        )
    values = [_VALUE[c] for c in chars]
    if _checksum(values) != 0:
        raise UsageError(
            f"join code {text!r} has a typo (its check character does not match);"
            " copy it again from the teacher"
        )
    return _show("".join(ALPHABET[v] for v in values))


def is_join_code(text: str) -> bool:
    """True when ``text`` reads as a valid code (in any accepted spelling)."""
    try:
        normalise_join_code(text)
    except UsageError:
        return False
    return True


def check_join_code(value: object, what: str) -> str:
    """A code exactly in its shown form (how documents carry it), else FormatError."""
    if not isinstance(value, str) or len(value) != CODE_CHARS + 1:
        raise FormatError(f"{what} class code must be a join code like {_EXAMPLE}")
    try:
        shown = normalise_join_code(value)
    except UsageError as exc:
        raise FormatError(f"{what}: {exc}") from None
    if shown != value:
        raise FormatError(f"{what} class code {value!r} is not in its shown form {shown!r}")
    return value
