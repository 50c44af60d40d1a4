"""Which delta reference wins on the corpus? Bytes to send per reference strategy.

For each pair (old -> new version of a corpus tree), every chunk of the new tree that the old
tree lacks is sent one of these ways; a chunk whose path has no non-empty file in the old tree
has no reference and always goes as its stored object. Like the product, a delta is sent only
when it is smaller than the stored object, so every column is a sum of min(delta, stored).

  none          the stored object as ``encode_object`` makes it (zstd -19 or raw, no dictionary)
  chunk-local   the old file's bytes at the chunk's offset, widened by one average chunk
                (32 KiB) on each side: about a 96 KiB window
  256 KiB       a 256 KiB window of the old file centred on the chunk, clamped to the file
  Satchel       ``sync.delta.choose_reference``: the whole old file up to 1 MiB, else a
                1 MiB window centred on the chunk (what the server sends today)
  8 MiB         the whole old file up to 8 MiB, else an 8 MiB centred window

Deltas are one zstd -19 frame with the reference as a raw-content dictionary, plus the
17-byte DELTA_RANGE header (``content.delta.encode_range_delta`` where the reference fits
its 1 MiB limit, the same frame via ``content.delta.compress_against`` above it). Satchel's
deltas are also decoded with ``decode_delta`` as a check. Manifests (signed with a throwaway key, no
dictionary listed) are measured as the stored object and as a DELTA_OF against the old one.

Run from the repository root:  python bench/delta_refs.py
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from satchel.content.chunking import Chunker, chunk_id
from satchel.content.delta import (
    DELTA_LEVEL,
    MAX_REFERENCE,
    RangeRef,
    compress_against,
    decode_delta,
    encode_object_delta,
    encode_range_delta,
)
from satchel.content.manifest import Manifest
from satchel.content.objects import encode_object
from satchel.content.signing import SigningKey
from satchel.content.tree import ScannedTree, scan_tree
from satchel.sync.delta import choose_reference, first_places, path_index
from satchel.sync.release import assemble_manifest, sign_manifest

from harness.bench import corpus, table

PAIRS = [
    ("intro-stats/v2", "intro-stats/v3"),
    ("shell-novice/v1", "shell-novice/v2"),
    ("intro-stats/v1", "intro-stats/v2"),
    ("intro-stats/v1", "intro-stats/v3"),
]
CHUNKER = Chunker()
AVG = CHUNKER.params.avg_size
KIB, MIB = 1024, 1024 * 1024
RANGE_HEADER = 17  # format byte, file:u32, offset:u64, length:u32
STRATEGIES = ["chunk-local", "256 KiB", "Satchel", "8 MiB"]
KEY = SigningKey.generate()


@cache
def scan(tree: str) -> ScannedTree:
    return scan_tree(corpus(tree), title=tree.split("/")[0], chunker=CHUNKER)


@cache
def manifest(tree: str) -> Manifest:
    number = int(tree.rsplit("/v", 1)[1])
    return assemble_manifest(
        scan(tree).draft,
        bundle=tree.split("/")[0],
        locale="en",
        version=number,
        parent_version=number - 1 if number > 1 else None,
        created=datetime(2024, 5, 8, tzinfo=UTC),
        dictionaries=(),
    )


@cache
def old_file(tree: str, path: str) -> bytes:
    return (corpus(tree) / path).read_bytes()


@cache
def places(tree: str) -> dict[str, tuple[str, int, int]]:
    return first_places(manifest(tree))


@cache
def paths(tree: str) -> dict[str, int]:
    return path_index(manifest(tree))


_stored_cache: dict[str, int] = {}  # by chunk id: the same id is the same bytes in any tree


def stored_size(tree: str, cid: str) -> int:
    if cid not in _stored_cache:
        _stored_cache[cid] = len(encode_object(scan(tree).sources[cid].read()))
    return _stored_cache[cid]


def centred(offset: int, length: int, size: int, window: int) -> tuple[int, int]:
    """(start, length) of a ``window`` centred on the chunk and clamped to the file."""
    if size <= window:
        return 0, size
    return min(max(offset + length // 2 - window // 2, 0), size - window), window


def reference_span(strategy: str, offset: int, length: int, old_tree: str, index: int) -> RangeRef:
    old = manifest(old_tree)
    size = old.files[index].size
    if strategy == "chunk-local":
        start = min(max(offset - AVG, 0), size)
        return RangeRef(index, start, min(offset + length + AVG, size) - start)
    if strategy == "256 KiB":
        return RangeRef(index, *centred(offset, length, size, 256 * KIB))
    if strategy == "8 MiB":
        return RangeRef(index, *centred(offset, length, size, 8 * MIB))
    path = old.files[index].path
    ref = choose_reference(path, offset, length, old, paths(old_tree))
    assert ref is not None
    return ref


_delta_cache: dict[tuple[str, str, int, int, str], int] = {}


def delta_size(old_tree: str, path: str, ref: RangeRef, data: bytes, cid: str) -> int:
    key = (old_tree, path, ref.offset, ref.length, cid)
    if key in _delta_cache:
        return _delta_cache[key]
    reference = old_file(old_tree, path)[ref.offset : ref.offset + ref.length]
    if ref.length == 0:  # the new chunk lies wholly past the end of a short old file
        size = RANGE_HEADER + len(zstandard.ZstdCompressor(level=DELTA_LEVEL).compress(data))
    elif ref.length <= MAX_REFERENCE:
        delta = encode_range_delta(data, ref, reference)
        if decode_delta(delta, reference, len(data)) != data:
            raise AssertionError(f"delta of a chunk of {path} does not decode")
        size = len(delta)
    else:
        # Wider than a range delta may reference: measured as the same frame, unsent.
        size = RANGE_HEADER + len(compress_against(data, reference, DELTA_LEVEL))
    _delta_cache[key] = size
    return size


@dataclass
class ChunkCost:
    stored: int
    has_reference: bool
    costs: dict[str, int]  # strategy -> bytes sent (min of delta and stored)


def chunk_cost(old_tree: str, new_tree: str, cid: str) -> ChunkCost:
    old = manifest(old_tree)
    path, offset, length = places(new_tree)[cid]
    stored = stored_size(new_tree, cid)
    index = paths(old_tree).get(path)
    if index is None or old.files[index].size == 0:
        return ChunkCost(stored, False, dict.fromkeys(STRATEGIES, stored))
    data = scan(new_tree).sources[cid].read()
    costs = {}
    for strategy in STRATEGIES:
        ref = reference_span(strategy, offset, length, old_tree, index)
        costs[strategy] = min(stored, delta_size(old_tree, path, ref, data, cid))
    return ChunkCost(stored, True, costs)


def manifest_sizes(old_tree: str, new_tree: str) -> tuple[int, int]:
    old_env = sign_manifest(manifest(old_tree), KEY)
    new_env = sign_manifest(manifest(new_tree), KEY)
    plain = len(encode_object(new_env))
    delta = len(encode_object_delta(new_env, chunk_id(old_env), old_env))
    return plain, delta


def main() -> None:
    started = time.monotonic()
    rows = []
    with ThreadPoolExecutor() as pool:
        for old_tree, new_tree in PAIRS:
            held = set(scan(old_tree).sources)
            fresh = [cid for cid in scan(new_tree).sources if cid not in held]
            places(new_tree), paths(old_tree)  # fill the caches before threads share them
            n = len(fresh)
            results = list(pool.map(chunk_cost, [old_tree] * n, [new_tree] * n, fresh))
            plain, delta = manifest_sizes(old_tree, new_tree)
            name = old_tree.split("/")[0]
            rows.append(
                [
                    f"{name} {old_tree.rsplit('/', 1)[1]} -> {new_tree.rsplit('/', 1)[1]}",
                    len(fresh),
                    sum(r.has_reference for r in results),
                    sum(r.stored for r in results),
                    *(sum(r.costs[s] for r in results) for s in STRATEGIES),
                    plain,
                    delta,
                ]
            )
    print(
        table(
            [
                "pair",
                "new chunks",
                "with old file",
                "none",
                "chunk-local (~96 KiB)",
                "256 KiB window",
                "Satchel (<= 1 MiB)",
                "whole file <= 8 MiB",
                "manifest plain",
                "manifest delta",
            ],
            rows,
        )
    )
    print(
        f"\n(bytes of objects; pack framing of 36 bytes per chunk is the same in every column;"
        f" {time.monotonic() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
