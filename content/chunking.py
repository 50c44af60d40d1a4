"""Content-defined chunking with FastCDC 2020 (pyfastcdc), parameters pinned per manifest.

A chunker is fully described by (algorithm, min, avg, max, normalization, seed); every
manifest records all six, because libraries disagree on defaults and a different value moves
every cut point. ``avg`` must be a power of two (implementations round non-powers
differently). See docs/decisions.md for why the defaults are what they are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pyfastcdc import FastCDC

from .errors import FormatError

ALGORITHM = "fastcdc2020"


@dataclass(frozen=True, slots=True)
class ChunkerParams:
    """The pinned parameters of FastCDC 2020."""

    min_size: int = 8 * 1024
    avg_size: int = 32 * 1024
    max_size: int = 128 * 1024
    normalization: Literal[0, 1, 2, 3] = 1
    seed: int = 0
    algorithm: str = ALGORITHM

    def __post_init__(self) -> None:
        if self.algorithm != ALGORITHM:
            raise FormatError(f"unknown chunker {self.algorithm!r}; this Satchel knows {ALGORITHM}")
        avg = self.avg_size
        if avg < 256 or avg > 4 * 1024 * 1024 or avg & (avg - 1):
            raise FormatError(f"chunker avg {avg} must be a power of two from 256 to 4 MiB")
        if not (
            64 <= self.min_size <= min(avg, 1024 * 1024)
            and avg <= self.max_size <= 16 * 1024 * 1024
        ):
            raise FormatError(
                "chunker sizes must satisfy 64 <= min <= avg <= max, min <= 1 MiB,"
                f" max <= 16 MiB, got "
                f"{self.min_size}/{avg}/{self.max_size}"
            )
        if self.max_size < 1024:
            raise FormatError("chunker max must be at least 1024 bytes")
        if self.normalization not in (0, 1, 2, 3):
            raise FormatError(f"chunker normalization {self.normalization} must be 0..3")
        if not 0 <= self.seed < 2**63:  # pyfastcdc converts it to a signed C long
            raise FormatError("chunker seed must be from 0 to 2**63 - 1")

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "min": self.min_size,
            "avg": self.avg_size,
            "max": self.max_size,
            "normalization": self.normalization,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, raw: object) -> ChunkerParams:
        if not isinstance(raw, dict):
            raise FormatError("chunker parameters must be an object")
        try:
            values = {
                k: raw[k] for k in ("algorithm", "min", "avg", "max", "normalization", "seed")
            }
        except KeyError as exc:
            raise FormatError(f"chunker parameters lack {exc.args[0]!r}") from None
        if not isinstance(values["algorithm"], str) or not all(
            type(values[k]) is int for k in ("min", "avg", "max", "normalization", "seed")
        ):
            raise FormatError("chunker parameters have the wrong types")
        return cls(
            min_size=values["min"],
            avg_size=values["avg"],
            max_size=values["max"],
            normalization=values["normalization"],
            seed=values["seed"],
            algorithm=values["algorithm"],
        )


DEFAULT_PARAMS = ChunkerParams()


@dataclass(frozen=True, slots=True)
class Cut:
    """One chunk of an input: where it starts, how long it is, and its id."""

    offset: int
    length: int
    chunk_id: str


def chunk_id(data: bytes | bytearray | memoryview) -> str:
    """The id of a chunk: lowercase hex SHA-256 of its uncompressed bytes (as ``sha256sum``)."""
    return hashlib.sha256(data).hexdigest()


class Chunker:
    """Cuts bytes or files into content-defined chunks and names each one by its hash."""

    def __init__(self, params: ChunkerParams = DEFAULT_PARAMS) -> None:
        self.params = params
        self._cdc = FastCDC(
            params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            normalized_chunking=params.normalization,
            seed=params.seed,
        )

    def cut_bytes(self, data: bytes | bytearray | memoryview) -> list[Cut]:
        """Chunk an in-memory buffer."""
        view = memoryview(data)
        return [
            Cut(c.offset, c.length, chunk_id(view[c.offset : c.offset + c.length]))
            for c in self._cdc.cut_buf(view)
        ]

    def cut_file(self, path: Path) -> Iterator[Cut]:
        """Chunk a file without reading it all into memory (pyfastcdc maps it)."""
        if path.stat().st_size == 0:
            return  # mmap cannot map an empty file
        for c in self._cdc.cut_file(str(path)):
            yield Cut(c.offset, c.length, chunk_id(c.data))
