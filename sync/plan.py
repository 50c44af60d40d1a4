"""Planning: which objects a store lacks for a manifest, and the compact "want" bitmap.

A client names what it wants as a bitmap over the manifest's distinct objects (dictionaries,
then chunks in order of first appearance): bit i (most significant bit first within each
byte) set means "send object i". A first sync of a 20 MB course costs a 110-byte bitmap on
the uplink instead of 28 KB of hex ids, which matters at 64 kbit/s.
"""

from __future__ import annotations

from collections.abc import Sequence

from satchel.content.errors import FormatError

from .store import Holds


def missing(distinct: Sequence[tuple[str, int]], store: Holds) -> list[tuple[str, int]]:
    """The objects of ``distinct`` that ``store`` does not hold, in the same order."""
    return [(cid, length) for cid, length in distinct if not store.has(cid)]


def encode_want(distinct: Sequence[tuple[str, int]], wanted: set[str]) -> bytes:
    bits = bytearray((len(distinct) + 7) // 8)
    for i, (cid, _) in enumerate(distinct):
        if cid in wanted:
            bits[i >> 3] |= 0x80 >> (i & 7)
    return bytes(bits)


def decode_want(distinct: Sequence[tuple[str, int]], bitmap: bytes) -> list[tuple[str, int]]:
    """The objects a bitmap selects; refuses a bitmap of the wrong size or with stray bits."""
    n = len(distinct)
    if len(bitmap) != (n + 7) // 8:
        raise FormatError(
            f"want bitmap is {len(bitmap)} bytes; {(n + 7) // 8} expected for {n} objects"
        )
    if n % 8 and bitmap[-1] & (0xFF >> (n % 8)):
        raise FormatError("want bitmap has bits set past the last object")
    return [item for i, item in enumerate(distinct) if bitmap[i >> 3] & (0x80 >> (i & 7))]
