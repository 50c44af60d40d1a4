"""What does the trained per-bundle dictionary save? Stored-object bytes with and without it.

First downloads (intro-stats v2, shell-novice v1): every distinct chunk of the tree, encoded
by ``encode_object`` (zstd -19 or raw) without a dictionary, and with the dictionary that
``sync.publish.choose_dictionary`` trains on the chunks to upload (the first publish of a
bundle line uploads everything). The "with" total includes the dictionary's own stored object
(``encode_object`` of its bytes, as the publisher uploads it), since a first download fetches it.

Updates without deltas (intro-stats v2 -> v3, shell-novice v1 -> v2): the chunks the old tree
lacks, without a dictionary and with the line's dictionary, i.e. the one trained on the old
version, which later versions reuse. The client already holds it, so nothing is added for it;
the table also says whether ``choose_dictionary`` would train one on the update alone.

Run from the repository root:  python bench/dictionary_gain.py
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from satchel.content.chunking import Chunker
from satchel.content.objects import ZSTD_DICT, encode_object
from satchel.content.tree import ScannedTree, scan_tree
from satchel.sync.publish import choose_dictionary

from harness.bench import corpus, table

FIRST = ["intro-stats/v2", "shell-novice/v1"]
UPDATES = [("intro-stats/v2", "intro-stats/v3"), ("shell-novice/v1", "shell-novice/v2")]
CHUNKER = Chunker()

Dictionary = tuple[str, bytes]


@cache
def scan(tree: str) -> ScannedTree:
    return scan_tree(corpus(tree), title="", chunker=CHUNKER)


def sizes(scan: ScannedTree, cid: str, dictionary: Dictionary) -> tuple[int, int, bool]:
    """(stored bytes without the dictionary, with it, whether the dictionary form won)."""
    data = scan.sources[cid].read()
    with_dict = encode_object(data, dictionary=dictionary)
    return len(encode_object(data)), len(with_dict), with_dict[0] == ZSTD_DICT


def measure(
    pool: ThreadPoolExecutor,
    label: str,
    tree: str,
    wanted: list[tuple[str, int]],
    dictionary: Dictionary,
    dictionary_cost: int | str,
    trained_alone: str,
) -> list[object]:
    s = scan(tree)
    n = len(wanted)
    results = list(pool.map(sizes, [s] * n, [cid for cid, _ in wanted], [dictionary] * n))
    without = sum(r[0] for r in results)
    objects = sum(r[1] for r in results)
    total = objects + (dictionary_cost if isinstance(dictionary_cost, int) else 0)
    gain = without - total
    return [
        label,
        n,
        sum(r[2] for r in results),
        without,
        objects,
        dictionary_cost,
        total,
        gain,
        f"{100 * gain / without:.1f}%",
        trained_alone,
    ]


def main() -> None:
    started = time.monotonic()
    rows: list[list[object]] = []
    dictionaries: dict[str, Dictionary] = {}
    with ThreadPoolExecutor() as pool:
        for tree in FIRST:
            wanted = scan(tree).draft.distinct_chunks()
            dictionary = choose_dictionary(scan(tree), wanted)
            if dictionary is None:
                sys.exit(f"choose_dictionary trained no dictionary for {tree}")
            dictionaries[tree] = dictionary
            cost = len(encode_object(dictionary[1]))
            rows.append(
                measure(pool, f"{tree} first", tree, wanted, dictionary, cost, "yes (this one)")
            )
        for old, new in UPDATES:
            held = {cid for cid, _ in scan(old).draft.distinct_chunks()}
            wanted = [(c, n) for c, n in scan(new).draft.distinct_chunks() if c not in held]
            alone = "yes" if choose_dictionary(scan(new), wanted) is not None else "no"
            label = f"{old} -> {new.rsplit('/', 1)[1]} update"
            rows.append(measure(pool, label, new, wanted, dictionaries[old], "0 (held)", alone))
    print(
        table(
            [
                "case",
                "chunks",
                "chunks using it",
                "no dictionary",
                "with dictionary (chunks)",
                "dictionary object",
                "with dictionary (total)",
                "gain",
                "gain %",
                "trained on these chunks alone?",
            ],
            rows,
        )
    )
    for tree, (dict_id, data) in dictionaries.items():
        print(f"\n{tree}: dictionary {dict_id[:12]}..., {len(data):,} bytes raw", end="")
    print(f"\n\n(stored-object bytes, zstd -19; {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
