"""Forged zstd frames for hostile-input tests."""

from __future__ import annotations

import struct

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def forge_content_size(frame: bytes, size: int) -> bytes:
    """Rewrite a single-segment frame header to declare ``size`` in an 8-byte field."""
    assert frame[:4] == ZSTD_MAGIC
    fhd = frame[4]
    assert fhd & 0x20, "expected a single-segment frame"
    fcs_bytes = {0: 1, 1: 2, 2: 4, 3: 8}[fhd >> 6]
    dict_bytes = {0: 0, 1: 1, 2: 2, 3: 4}[fhd & 0x03]
    header_end = 5 + dict_bytes + fcs_bytes
    new_fhd = (fhd & 0x3F) | 0xC0  # FCS field of 8 bytes, still single segment
    return (
        ZSTD_MAGIC
        + bytes([new_fhd])
        + frame[5 : 5 + dict_bytes]
        + struct.pack("<Q", size)
        + frame[header_end:]
    )
