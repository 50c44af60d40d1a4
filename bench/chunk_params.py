"""Which FastCDC parameters suit the corpus? Bytes for a first download and for updates.

For each (min, avg, max) it chunks the trees, encodes every distinct chunk as Satchel stores it
(zstd -19 where it pays, raw otherwise) and adds the zstd-compressed manifest, giving:
  first  = bytes to fetch intro-stats v2 into an empty store
  update = bytes to fetch intro-stats v2->v3 and shell-novice v1->v2 (new chunks + manifest)
Ratios are against a baseline measured in the same run: the tree as one tar | zstd -19.

    python bench/chunk_params.py
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from satchel.content import canonical
from satchel.content.chunking import Chunker, ChunkerParams
from satchel.content.objects import encode_object
from satchel.content.tree import ScannedTree, scan_tree

from harness.bench import corpus, table, tar_zstd_size

CANDIDATES = [
    (2048, 8192, 32768),
    (4096, 16384, 65536),
    (8192, 32768, 131072),
    (16384, 65536, 262144),
]


def manifest_bytes(scan: ScannedTree) -> int:
    raw = canonical.encode(scan.draft.to_json())
    return len(zstandard.ZstdCompressor(level=19).compress(raw))


def objects_bytes(scan: ScannedTree, ids: list[str], pool: ThreadPoolExecutor) -> int:
    return sum(pool.map(lambda cid: len(encode_object(scan.sources[cid].read())), ids))


def main() -> None:
    base = tar_zstd_size(corpus("intro-stats/v2"))
    print(f"baseline: intro-stats v2 as tar | zstd -19 = {base:,} bytes\n")
    rows = []
    with ThreadPoolExecutor() as pool:
        for lo, avg, hi in CANDIDATES:
            chunker = Chunker(ChunkerParams(min_size=lo, avg_size=avg, max_size=hi))
            v2 = scan_tree(corpus("intro-stats/v2"), title="", chunker=chunker)
            v3 = scan_tree(corpus("intro-stats/v3"), title="", chunker=chunker)
            s1 = scan_tree(corpus("shell-novice/v1"), title="", chunker=chunker)
            s2 = scan_tree(corpus("shell-novice/v2"), title="", chunker=chunker)
            first = objects_bytes(v2, list(v2.sources), pool) + manifest_bytes(v2)
            new3 = [c for c in v3.sources if c not in v2.sources]
            upd = objects_bytes(v3, new3, pool) + manifest_bytes(v3)
            news = [c for c in s2.sources if c not in s1.sources]
            upds = objects_bytes(s2, news, pool) + manifest_bytes(s2)
            rows.append(
                [
                    f"{lo // 1024}K/{avg // 1024}K/{hi // 1024}K",
                    len(v2.sources),
                    manifest_bytes(v2),
                    first,
                    f"{first / base:.4f}",
                    len(new3),
                    upd,
                    len(news),
                    upds,
                ]
            )
    print(
        table(
            [
                "min/avg/max",
                "v2 chunks",
                "manifest.zst",
                "first v2",
                "first/tar.zst",
                "new v2->v3",
                "bytes v2->v3",
                "new shell",
                "bytes shell v1->v2",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
