"""Offline search on the whole corpus: index size against its text, build and update time,
query time.

Publishes every corpus tree in-process (intro-stats v1 and v2 as versions 1 and 2 of
``intro-stats/en``, intro-stats-es as ``intro-stats/es``, shell-novice v1 and v2 as versions of
``shell-novice/en``), syncs them into a fresh store, and measures:

- a full build of ``STORE/search.sqlite`` from nothing: text bytes covered, index bytes and
  their ratio, time in all and per MB of text; the baseline, measured in the same run, is
  reading (verifying every chunk) and extracting the same pages without indexing them;
- the update after a one-version bump (intro-stats v2 -> v3): time and pages re-read, against
  the full build; then garbage collection keeping one version and the update that follows;
- about 200 queries (words sampled from the indexed English and Spanish text, 1-3 words, some
  cut short as prefixes): median, 95th percentile and worst time of ``SearchIndex.search``
  (a page of 10 hits with snippets, and without), against a plain substring scan of the
  same texts held in memory for the same words (no ranking, no snippets).

Run from the repository root:  python bench/search.py
"""

from __future__ import annotations

import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from satchel.content.text import extract_text  # noqa: E402
from satchel.sync.care import collect_garbage  # noqa: E402
from satchel.sync.local import LocalStore  # noqa: E402
from satchel.sync.publish import Publisher  # noqa: E402
from satchel.sync.reader import StoredFile  # noqa: E402
from satchel.sync.search import (  # noqa: E402
    INDEX_NAME,
    SearchIndex,
    searchable_pages,
    update_search_index,
)
from satchel.sync.updater import Updater  # noqa: E402

from harness.bench import corpus, table  # noqa: E402
from harness.repo import RepoFetcher, admin_target, make_repository  # noqa: E402

TREES = [
    ("intro-stats/v1", "intro-stats", "en", "Introductory Statistics"),
    ("intro-stats/v2", "intro-stats", "en", "Introductory Statistics 2e"),
    ("intro-stats-es", "intro-stats", "es", "Introducción a la estadística"),
    ("shell-novice/v1", "shell-novice", "en", "The Unix Shell"),
    ("shell-novice/v2", "shell-novice", "en", "The Unix Shell"),
]
QUERIES = 200


def mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.2f} ms"


def fold(text: str) -> str:
    """Case and diacritics folded, as the index's tokenizer does (for the scan baseline)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def current_texts(store: LocalStore) -> dict[tuple[str, str], list[str]]:
    """(bundle, locale) -> the text of each page of its current version."""
    out: dict[tuple[str, str], list[str]] = {}
    for ref in store.refs():
        manifest = store.load_manifest(ref.manifest)
        texts = out.setdefault((ref.bundle, ref.locale), [])
        for page in searchable_pages(manifest, ref.only):
            text = extract_text(StoredFile(page.entry, store.objects, manifest).read(), page.kind)
            texts.append(f"{text.title}\n{text.headings}\n{text.body}")
    return out


def read_and_extract(store: LocalStore) -> tuple[float, int]:
    """The baseline for a build: every page of every kept version read and extracted once per
    distinct content, as the index does, with no index written."""
    start = time.perf_counter()
    seen: set[str] = set()
    size = 0
    for ref in store.refs():
        for manifest_id in ref.versions.values():
            manifest = store.load_manifest(manifest_id)
            for page in searchable_pages(manifest, ref.only):
                if page.key in seen:
                    continue
                seen.add(page.key)
                data = StoredFile(page.entry, store.objects, manifest).read()
                size += extract_text(data, page.kind).size
    return time.perf_counter() - start, size


def sample_queries(texts: dict[tuple[str, str], list[str]], n: int) -> list[tuple[str, str]]:
    """(language, query): 1-3 neighbouring words of a page, a quarter cut to a prefix."""
    rng = random.Random(14)
    pages = {
        "en": [t for (_b, loc), ts in texts.items() if loc == "en" for t in ts],
        "es": [t for (_b, loc), ts in texts.items() if loc == "es" for t in ts],
    }
    out: list[tuple[str, str]] = []
    while len(out) < n:
        language = "es" if len(out) % 3 == 2 else "en"
        words = re.findall(r"[^\W\d_]{4,}", rng.choice(pages[language]))
        if len(words) < 3:
            continue
        count = rng.choice((1, 1, 2, 3))
        at = rng.randrange(len(words) - count + 1)
        chosen = words[at : at + count]
        if rng.random() < 0.25:
            chosen[-1] = chosen[-1][: rng.randint(3, 5)]
            out.append((language, " ".join(chosen)))
        else:
            out.append((language, " ".join(chosen) + " "))  # whole words
    return out


def scan(texts: list[str], query: str) -> int:
    """The naive baseline: pages whose folded text holds every word (prefixes included)."""
    words = fold(query).split()
    return sum(1 for text in texts if all(w in text for w in words))


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="satchel-bench-search-"))
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path) -> None:
    sources = {tree: corpus(tree) for tree, *_ in TREES}
    v3 = corpus("intro-stats/v3")
    repo = make_repository(tmp / "srv")
    publisher = Publisher(admin_target(repo), level=3)
    store = LocalStore(tmp / "store", durable=False)
    for tree, bundle, locale, title in TREES:
        publisher.publish(sources[tree], bundle=bundle, locale=locale, title=title)
        Updater(store, RepoFetcher(repo)).sync(bundle, locale)

    rows: list[list[object]] = []
    base_s, base_bytes = read_and_extract(store)
    start = time.perf_counter()
    built = update_search_index(store)
    build_s = time.perf_counter() - start
    with SearchIndex.of(store) as index:
        stats = index.stats()
    assert stats.text_bytes == base_bytes == built.text_bytes
    rows += [
        ["versions indexed (5 kept: intro-stats/en v1 v2, es, shell v1 v2)", stats.versions],
        ["pages indexed / distinct contents", f"{stats.files:,} / {stats.documents:,}"],
        ["text covered (title + headings + body, UTF-8)", mb(stats.text_bytes)],
        ["index on disk", mb(stats.file_bytes)],
        ["index / text", f"{stats.file_bytes / stats.text_bytes:.2f}x"],
        ["full build", f"{build_s:.2f} s"],
        ["full build per MB of text", f"{build_s / (stats.text_bytes / 1e6):.3f} s/MB"],
        ["baseline: read + verify + extract the same pages", f"{base_s:.2f} s"],
        ["full build / baseline", f"{build_s / base_s:.2f}x"],
    ]

    publisher.publish(v3, bundle="intro-stats", locale="en", title="Introductory Statistics 2e")
    Updater(store, RepoFetcher(repo)).sync("intro-stats", "en")
    start = time.perf_counter()
    bump = update_search_index(store)
    bump_s = time.perf_counter() - start
    rows += [
        [
            "update after intro-stats v2 -> v3: pages re-read / reused",
            f"{bump.files_indexed} / {bump.files_reused}",
        ],
        ["update after v2 -> v3", f"{bump_s * 1000:,.0f} ms"],
        ["update after v2 -> v3 / full build", f"{bump_s / build_s:.3f}x"],
    ]
    before = stats.file_bytes
    collect_garbage(store, keep=1)
    start = time.perf_counter()
    dropped = update_search_index(store)
    gc_s = time.perf_counter() - start
    with SearchIndex.of(store) as index:
        after = index.stats()
    rows += [
        [
            "gc keep 1, then update: versions / contents dropped",
            f"{dropped.versions_removed} / {dropped.documents_removed}",
        ],
        ["update after gc", f"{gc_s * 1000:,.0f} ms"],
        ["index on disk after gc (was)", f"{mb(after.file_bytes)} ({mb(before)})"],
        ["index / text after gc", f"{after.file_bytes / after.text_bytes:.2f}x"],
    ]

    texts = current_texts(store)
    everything = [fold(t) for ts in texts.values() for t in ts]
    queries = sample_queries(texts, QUERIES)
    index = SearchIndex(store.root / INDEX_NAME)
    index.search("warm up")
    times: list[float] = []
    bare: list[float] = []
    scans: list[float] = []
    empty = 0
    for _language, query in queries:
        t0 = time.perf_counter()
        results = index.search(query)
        times.append(time.perf_counter() - t0)
        empty += not results.hits
        t0 = time.perf_counter()
        index.search(query, snippets=False)
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        scan(everything, query)
        scans.append(time.perf_counter() - t0)
    index.close()
    worst = max(range(len(queries)), key=lambda i: times[i])
    times.sort()
    rows += [
        [
            f"{len(queries)} queries ({sum(lang == 'es' for lang, _ in queries)} Spanish),"
            " median / p95 / worst",
            f"{ms(statistics.median(times))} / {ms(times[int(len(times) * 0.95)])} /"
            f" {ms(times[-1])}",
        ],
        ["slowest query", repr(queries[worst][1])],
        ["queries with no hit", empty],
        [
            "same queries without snippets, median / worst",
            f"{ms(statistics.median(bare))} / {ms(max(bare))}",
        ],
        ["baseline: substring scan of the texts in memory, median", ms(statistics.median(scans))],
        [
            "scan median / search median",
            f"{statistics.median(scans) / statistics.median(times):.1f}x",
        ],
    ]
    print(table(["search, whole corpus", "value"], rows))


if __name__ == "__main__":
    main()
