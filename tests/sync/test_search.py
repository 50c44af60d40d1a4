"""Offline full-text search over a local store: scripts, ranking, snippets, updates, gc,
selective sync, hostile queries, and the real corpus."""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from satchel.content.errors import StoreError
from satchel.content.text import MARK_END, MARK_START, extract_text
from satchel.server.repository import Repository
from satchel.sync import search
from satchel.sync.care import collect_garbage
from satchel.sync.local import LocalStore
from satchel.sync.search import (
    INDEX_NAME,
    MAX_QUERY_WORDS,
    SearchIndex,
    SearchResults,
    match_expression,
    query_words,
    update_search_index,
)
from satchel.sync.updater import Updater

from harness.paths import CORPUS
from harness.repo import RepoFetcher, make_repository, publish, write_tree


def md(title: str, *paras: str) -> bytes:
    return (f"# {title}\n\n" + "\n\n".join(paras) + "\n").encode()


COURSE = {
    "uk/index.md": md("Їжак і лисиця", "Звичайний їжак живе в лісі та їсть яблука."),
    "ky/index.md": md("Кыргызча сабак", "Өнөр алдында кызыл тил. Жылкы жана күн."),
    "kk/index.md": md("Қазақ әліппесі", "Әже ғылым қоңыр өмір ұлы үй һәм ісі туралы."),
    "uz/index.md": md("Oʻzbek tili", "Oʻzbekiston gʻalaba qoʻshiq."),
    "es/index.html": (
        "<title>Lección de español</title><h1>El niño</h1>"
        "<p>El niño come mañana bajo el árbol. &lt;script&gt;alert(1)&lt;/script&gt;</p>"
    ).encode(),
    "stats/index.md": md("Sampling", "A sample is part of a population of data."),
    "data/index.md": md("Data", "Sampling methods: a survey and a census collect data."),
    "LICENSE.md": md("License", "Creative Commons attribution and sampling terms."),
    "media/pic.bin": bytes(range(256)) * 8,
}


def sync(repo: Repository, store: LocalStore, **kw: object) -> None:
    Updater(store, RepoFetcher(repo)).sync("course", "en", **kw)  # type: ignore[arg-type]


def course_store(tmp_path: Path, files: dict[str, bytes] = COURSE) -> tuple[Repository, LocalStore]:
    repo = make_repository(tmp_path / "srv")
    publish(repo, write_tree(tmp_path / "src", files), title="Course")
    store = LocalStore(tmp_path / "store", durable=False)
    sync(repo, store)
    update_search_index(store)
    return repo, store


def found(store: LocalStore, query: str, **kw: object) -> list[str]:
    with SearchIndex.of(store) as index:
        return [hit.path for hit in index.search(query, **kw).hits]  # type: ignore[arg-type]


# -- scripts, case and diacritics -------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("ЇЖАК", "uk/index.md"),  # Ukrainian ї in upper case
        ("їжак ЛІСІ", "uk/index.md"),
        ("ЯБЛУКА", "uk/index.md"),
        ("КЫРГЫЗЧА", "ky/index.md"),
        ("өНӨР КЫЗЫЛ", "ky/index.md"),
        ("ӘЖЕ ҒЫЛЫМ ҚОҢЫР ӨМІР ҰЛЫ ҮЙ ҺӘМ ІСІ", "kk/index.md"),  # every Kazakh letter
        ("oʻzbekiston", "uz/index.md"),  # U+02BB, as written
        ("o'zbekiston", "uz/index.md"),  # a typed apostrophe
        ("O‘ZBEKISTON GʼALABA", "uz/index.md"),  # quotation marks standing in
        ("qoʻshiq", "uz/index.md"),
        ("NIÑO", "es/index.html"),
        ("nino manana arbol", "es/index.html"),  # diacritics folded
        ("Lección", "es/index.html"),
    ],
)
def test_scripts_case_and_diacritics(tmp_path: Path, query: str, path: str) -> None:
    _repo, store = course_store(tmp_path)
    assert found(store, query) == [path]


def test_prefix_on_the_last_word_only(tmp_path: Path) -> None:
    _repo, store = course_store(tmp_path)
    assert found(store, "Oʻzbekist") == ["uz/index.md"]
    assert found(store, "їжа") == ["uk/index.md"]
    assert found(store, "їжа ") == []  # a finished word is a whole word
    assert found(store, "popul sample") == []  # only the last word is a prefix
    assert found(store, "sample popul") == ["stats/index.md"]


# -- ranking and snippets ---------------------------------------------------------------------
def test_title_ranks_above_body_and_snippets_mark_the_words(tmp_path: Path) -> None:
    _repo, store = course_store(tmp_path)
    with SearchIndex.of(store) as index:
        results = index.search("sampling")
    # "Sampling" titles stats/index.md; data/index.md has it once in its body; the licence,
    # repository furniture, is not indexed at all.
    assert [h.path for h in results.hits] == ["stats/index.md", "data/index.md"]
    assert results.total == 2 and results.query == "sampling"
    first, second = results.hits
    assert first.score > second.score > 0
    assert first.title == "Sampling" and first.lesson is not None
    assert first.bundle == "course" and first.locale == "en" and first.version == 1
    assert first.bundle_title == "Course"
    assert f"{MARK_START}Sampling{MARK_END} methods" in second.snippet
    assert second.snippet_html().startswith("<mark>Sampling</mark> methods")


def test_without_snippets_the_same_hits_and_titles(tmp_path: Path) -> None:
    _repo, store = course_store(tmp_path)
    with SearchIndex.of(store) as index:
        full = index.search("sampling")
        bare = index.search("sampling", snippets=False)
    assert [(h.path, h.title, h.score) for h in bare.hits] == [
        (h.path, h.title, h.score) for h in full.hits
    ]
    assert all(h.snippet == "" for h in bare.hits) and all(h.snippet for h in full.hits)


def test_snippets_are_text_that_a_page_escapes(tmp_path: Path) -> None:
    files = dict(COURSE)
    files["x/index.html"] = f"<p>bold &lt;b&gt; {MARK_START}forged{MARK_END} word</p>".encode()
    _repo, store = course_store(tmp_path, files)
    with SearchIndex.of(store) as index:
        (hit,) = index.search("alert").hits[:1]
        assert hit.path == "es/index.html"
        assert "&lt;script&gt;" in hit.snippet_html() and "<script>" not in hit.snippet_html()
        (forged,) = index.search("forged").hits
        assert forged.snippet.count(MARK_START) == 1  # only our mark, around the word
        assert "<mark>forged</mark>" in forged.snippet_html()


def test_filters_and_pages(tmp_path: Path) -> None:
    repo, store = course_store(tmp_path)
    publish(repo, write_tree(tmp_path / "es", {"a.md": md("Datos", "data data")}), locale="es")
    Updater(store, RepoFetcher(repo)).sync("course", "es")
    update_search_index(store)
    with SearchIndex.of(store) as index:
        everything = index.search("data")
        assert {(h.locale, h.path) for h in everything.hits} == {
            ("en", "stats/index.md"),
            ("en", "data/index.md"),
            ("es", "a.md"),
        }
        assert [h.path for h in index.search("data", locale="es").hits] == ["a.md"]
        assert index.search("data", bundle="other").total == 0
        assert index.search("data", bundle="../x\x00\ud800").total == 0  # not a name: nothing
        page = index.search("data", limit=1, offset=1)
        assert page.total == 3 and len(page.hits) == 1
        assert page.hits[0] == everything.hits[1]
        assert index.search("data", limit=1, offset=10).total == 3


# -- incremental updates, gc ------------------------------------------------------------------
def test_update_reindexes_only_changed_pages_and_finds_new_text_not_old(tmp_path: Path) -> None:
    repo, store = course_store(tmp_path)
    v2 = dict(COURSE)
    v2["stats/index.md"] = md("Sampling", "A sample is part of a population; revisedword here.")
    publish(repo, write_tree(tmp_path / "v2", v2), title="Course")
    assert found(store, "population") == ["stats/index.md"]
    sync(repo, store)
    assert found(store, "revisedword") == []  # not indexed until the hook runs
    result = update_search_index(store)
    assert result.versions_added == 1 and result.files_indexed == 1  # the one changed page
    assert result.files_reused == 6  # the rest of v2 is v1's content
    with SearchIndex.of(store) as index:
        hits = index.search("revisedword").hits
        assert [(h.path, h.version) for h in hits] == [("stats/index.md", 2)]
        assert index.search("population").hits[0].version == 2
    assert found(store, "data population") == []  # v1's "population of data" is gone
    # Nothing changed since: an update reads nothing.
    again = update_search_index(store)
    assert (again.files_indexed, again.versions_added, again.versions_removed) == (0, 0, 0)


@pytest.mark.parametrize("others", [0, 40])  # 40 more pages: one removed is a bounded merge
def test_gc_then_update_shrinks_the_index(tmp_path: Path, others: int) -> None:
    files = dict(COURSE)
    files.update({f"more/p{n}.md": md(f"Page {n}", f"filler{n}") for n in range(others)})
    words = " ".join(f"oldword{n}" for n in range(20_000))  # text only version 1 has
    files["big/index.md"] = md("Big", words)
    repo, store = course_store(tmp_path, files)
    v2 = dict(files)
    del v2["big/index.md"]
    publish(repo, write_tree(tmp_path / "v2", v2), title="Course")
    sync(repo, store)
    update_search_index(store)
    path = store.root / INDEX_NAME
    with SearchIndex.of(store) as index:
        before = index.stats()
    assert found(store, "oldword5") == []  # the current version lacks it
    assert before.versions == 2
    gc = collect_garbage(store, keep=1)
    assert gc.versions_dropped == ["course/en v1"]
    result = update_search_index(store)
    assert result.versions_removed == 1 and result.documents_removed == 1
    with SearchIndex.of(store) as index:
        after = index.stats()
    assert (after.versions, after.documents) == (1, before.documents - 1)
    assert after.files < before.files and after.text_bytes < before.text_bytes
    if not others:  # a whole optimize: the big page's pages went back at once
        assert after.file_bytes < before.file_bytes - 100_000
    assert path.stat().st_size == after.file_bytes
    update_search_index(store)  # and the index keeps working after a merge step
    assert found(store, "oldword5") == [] and found(store, "filler1")[:1] == (
        ["more/p1.md"] if others else []
    )


def test_selective_sync_indexes_only_what_is_here_and_widening_adds_the_rest(
    tmp_path: Path,
) -> None:
    repo = make_repository(tmp_path / "srv")
    publish(repo, write_tree(tmp_path / "src", COURSE), title="Course")
    store = LocalStore(tmp_path / "store", durable=False)
    sync(repo, store, only=["uk"])
    update_search_index(store)
    assert found(store, "їжак") == ["uk/index.md"]
    assert found(store, "кыргызча") == []  # ky/ is not on this laptop
    sync(repo, store, only=["uk", "ky"])
    result = update_search_index(store)
    assert result.files_indexed == 1
    assert found(store, "кыргызча") == ["ky/index.md"]


def test_pages_with_missing_chunks_are_skipped_not_fatal(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "srv")
    publish(repo, write_tree(tmp_path / "src", COURSE), title="Course")
    store = LocalStore(tmp_path / "store", durable=False)
    sync(repo, store)
    ref = store.ref("course", "en")
    assert ref is not None
    entry = store.load_manifest(ref.manifest).file("ky/index.md")
    for cid, _n in entry.chunks:
        store.objects.delete(cid)
    result = update_search_index(store)
    assert result.files_skipped == 1 and result.files_indexed == 6
    assert found(store, "кыргызча") == [] and found(store, "їжак") == ["uk/index.md"]


def test_oversized_and_rotten_pages_are_skipped_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repository(tmp_path / "srv")
    files = dict(COURSE)
    files["big/index.md"] = md("Big", "bigword " * 200)
    publish(repo, write_tree(tmp_path / "src", files), title="Course")
    store = LocalStore(tmp_path / "store", durable=False)
    sync(repo, store)
    ref = store.ref("course", "en")
    assert ref is not None
    (cid, _n), *_ = store.load_manifest(ref.manifest).file("ky/index.md").chunks
    path = store.objects.root / cid[:2] / cid
    good = path.read_bytes()
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # a rotten block on the disk
    monkeypatch.setattr(search, "MAX_SOURCE_BYTES", 1000)  # big/index.md is over it
    result = update_search_index(store)
    assert result.files_skipped == 2 and result.files_indexed == 6
    assert found(store, "bigword") == [] and found(store, "кыргызча") == []
    path.write_bytes(good)  # repaired (fsck --repair and a sync)
    assert update_search_index(store).files_indexed == 1
    assert found(store, "кыргызча") == ["ky/index.md"]


def test_lesson_titles_come_from_the_manifest(tmp_path: Path) -> None:
    files = dict(COURSE)
    files["satchel.toml"] = b"""
[[lessons]]
title = "Hedgehogs"
entry = "uk/index.md"
[[lessons]]
title = "Statistics"
entry = "stats/index.md"
include = ["data/"]
"""
    _repo, store = course_store(tmp_path, files)
    with SearchIndex.of(store) as index:
        hits = {h.path: h for h in index.search("sampling").hits}
        assert hits["stats/index.md"].lesson == "Statistics"
        assert hits["data/index.md"].lesson == "Statistics"  # a page the lesson includes
        assert index.search("їжак").hits[0].lesson == "Hedgehogs"
        assert index.search("кыргызча").hits[0].lesson is None  # in no lesson


# -- hostile queries --------------------------------------------------------------------------
HOSTILE = [
    '"',
    '""',
    "*",
    "-",
    "NEAR(",
    "NEAR(a b",
    "AND",
    "sampling AND",
    "OR OR",
    "NOT sampling",
    "a OR b",
    "-sampling",
    "title:sampling",
    "{title body}: sampling",
    "^sampling",
    "sampl*",
    "(sampling",
    "sampling)",
    "'",
    ":",
    "\x00",
    "sam\x00pling",
    "\ud800sampling",
    MARK_START + "sampling",
    "x" * 100_000,
    "sampling " * 20_000,
    "🙂 ∑ ¬",
    "\u200b\u200d",
    "%' OR 1=1 --",
    "'; DROP TABLE docs; --",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_give_results_or_nothing(tmp_path: Path, query: str) -> None:
    _repo, store = course_store(tmp_path)
    with SearchIndex.of(store) as index:
        results = index.search(query)
        assert isinstance(results, SearchResults)
        assert len(results.query) <= search.MAX_QUERY_CHARS
        for hit in results.hits:
            assert hit.path in COURSE
        assert index.search("sampling").total == 2  # and the index is intact


def test_query_words_are_bounded_and_quoted() -> None:
    assert query_words("a\x00b  c\td") == ["a", "b", "c", "d"]
    assert len(query_words("w " * 1000)) == MAX_QUERY_WORDS
    assert len("".join(query_words("y" * 100_000))) == search.MAX_QUERY_CHARS
    assert match_expression('say "hi" NEAR(x') == '"say" """hi""" "NEAR(x" *'
    assert match_expression("ab c") == '"ab" "c"'  # one letter: no prefix
    assert match_expression("* - ()") is None
    db = sqlite3.connect(":memory:")
    db.execute(f'CREATE VIRTUAL TABLE t USING fts5(x, tokenize="{search.TOKENIZER}")')
    for query in HOSTILE:
        expression = match_expression(query)
        if expression is not None:  # FTS5 accepts every expression we build
            db.execute("SELECT * FROM t WHERE t MATCH ?", (expression,)).fetchall()


@given(st.text(max_size=300))
def test_any_text_is_a_valid_fts5_query_or_nothing(text: str) -> None:
    db = sqlite3.connect(":memory:")
    db.execute(f'CREATE VIRTUAL TABLE t USING fts5(x, tokenize="{search.TOKENIZER}")')
    db.execute("INSERT INTO t VALUES ('sampling data oʻzbek їжак')")
    expression = match_expression(text)
    if expression is None:
        head = text[: search.MAX_QUERY_CHARS]
        assert not any(c.isalnum() for c in head if not "\ud800" <= c <= "\udfff")
    else:
        db.execute("SELECT * FROM t WHERE t MATCH ?", (expression,)).fetchall()


# -- the file itself --------------------------------------------------------------------------
def test_a_viewer_never_creates_the_index(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "srv")
    publish(repo, write_tree(tmp_path / "src", COURSE))
    store = LocalStore(tmp_path / "store", durable=False)
    sync(repo, store)
    with SearchIndex.of(store) as index:
        assert index.search("sampling").total == 0
        assert index.stats().documents == 0
        with pytest.raises(StoreError, match="read-only"):
            index.update(store)
    assert not (store.root / INDEX_NAME).exists()


def test_a_store_given_by_a_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repository(tmp_path / "srv")
    publish(repo, write_tree(tmp_path / "src", COURSE))
    monkeypatch.chdir(tmp_path)
    store = LocalStore(Path("store"), durable=False)
    sync(repo, store)
    assert update_search_index(store).files_indexed == 7
    assert found(store, "їжак") == ["uk/index.md"]


def test_a_reader_sees_an_update_and_a_rebuilt_file(tmp_path: Path) -> None:
    repo, store = course_store(tmp_path)
    reader = SearchIndex.of(store)
    assert reader.search("sampling").total == 2
    (store.root / INDEX_NAME).unlink()
    update_search_index(store)  # a new file under the same name
    assert reader.search("sampling").total == 2
    v2 = dict(COURSE)
    v2["stats/index.md"] = md("Sampling", "freshword")
    publish(repo, write_tree(tmp_path / "v2", v2))
    sync(repo, store)
    update_search_index(store)
    assert [h.version for h in reader.search("freshword").hits] == [2]
    reader.close()


@pytest.mark.parametrize(
    "damage",
    [
        b"not a database at all" * 100,
        b"SQLite format 3\x00" + b"\xff" * 5000,
        b"",
    ],
)
def test_a_damaged_index_is_rebuilt_and_never_breaks_a_search(
    tmp_path: Path, damage: bytes
) -> None:
    _repo, store = course_store(tmp_path)
    path = store.root / INDEX_NAME
    path.write_bytes(damage)
    assert found(store, "sampling") == []  # a reader: nothing, no error
    result = update_search_index(store)
    assert result.rebuilt and result.files_indexed == 7
    assert found(store, "sampling") == ["stats/index.md", "data/index.md"]


def test_a_corrupted_page_inside_the_index_is_rebuilt(tmp_path: Path) -> None:
    _repo, store = course_store(tmp_path)
    path = store.root / INDEX_NAME
    data = bytearray(path.read_bytes())
    page = 4096
    data[page * 2 : page * 3] = b"\x5a" * page  # clobber a B-tree page
    path.write_bytes(bytes(data))
    for query in ("sampling", "їжак", "data", "a"):
        assert isinstance(SearchIndex.of(store).search(query), SearchResults)  # never raises
    result = update_search_index(store)
    assert result.rebuilt and result.files_indexed == 7
    assert found(store, "sampling") == ["stats/index.md", "data/index.md"]


def test_another_format_is_rebuilt(tmp_path: Path) -> None:
    _repo, store = course_store(tmp_path)
    db = sqlite3.connect(store.root / INDEX_NAME)
    db.execute("UPDATE meta SET value = 'old' WHERE name = 'format'")
    db.commit()
    db.close()
    assert found(store, "sampling") == []
    assert update_search_index(store).rebuilt
    assert found(store, "sampling") == ["stats/index.md", "data/index.md"]


def test_without_fts5_the_error_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "_FTS_MODULE", "fts_absent")
    search.check_fts5.cache_clear()
    try:
        with pytest.raises(StoreError, match="FTS5"):
            SearchIndex(tmp_path / INDEX_NAME)
    finally:
        search.check_fts5.cache_clear()


# -- the real corpus --------------------------------------------------------------------------
def _folded_words(text: str) -> Counter[str]:
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return Counter(re.findall(r"[^\W_]+", folded))


def _modules(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and (p.suffix == ".cnxml" or p.name.endswith(".collection.xml"))
    }


needs_corpus = pytest.mark.skipif(
    not all((CORPUS / t).is_dir() for t in ("intro-stats/v2", "intro-stats/v3", "shell-novice/v2")),
    reason=f"shared corpus not found at {CORPUS} (needs intro-stats/v2, v3, shell-novice/v2)",
)


@pytest.mark.corpus
@needs_corpus
def test_corpus_a_word_of_one_module_ranks_it_first_and_v3_reindexes_only_its_changes(
    tmp_path: Path,
) -> None:
    """intro-stats v2's 102 modules (text only) and shell-novice's episodes in one store."""
    repo = make_repository(tmp_path / "srv")
    v2 = _modules(CORPUS / "intro-stats" / "v2")
    publish(repo, write_tree(tmp_path / "v2", v2), bundle="intro-stats", title="Stats")
    shell = CORPUS / "shell-novice" / "v2"
    episodes = {
        p.relative_to(shell).as_posix(): p.read_bytes() for p in sorted(shell.glob("episodes/*.md"))
    }
    publish(repo, write_tree(tmp_path / "sh", episodes), bundle="shell-novice", title="Shell")
    store = LocalStore(tmp_path / "store", durable=False)
    for bundle in ("intro-stats", "shell-novice"):
        Updater(store, RepoFetcher(repo)).sync(bundle, "en")
    first = update_search_index(store)
    assert first.files_indexed == 102 + len(episodes)

    # A word that occurs in exactly one module (counted over the same text the index holds),
    # the one most frequent there.
    counts = {
        path: _folded_words(_all_text(data)) for path, data in v2.items() if path.endswith(".cnxml")
    }
    seen: Counter[str] = Counter()
    for words in counts.values():
        seen.update(words.keys())
    unique = [
        (n, word, path)
        for path, words in counts.items()
        for word, n in words.items()
        if seen[word] == 1 and word.isascii() and word.isalpha() and len(word) >= 5
    ]
    assert unique, "no word of one module only"
    _n, word, path = max(unique)
    with SearchIndex.of(store) as index:
        results = index.search(word.upper())
        top = results.hits[0]
        assert (top.bundle, top.path) == ("intro-stats", path)
        assert f"{MARK_START}" in top.snippet
        marked = re.search(f"{MARK_START}(.*?){MARK_END}", top.snippet)
        assert marked is not None and marked.group(1).casefold() == word
        assert f"<mark>{marked.group(1)}</mark>" in top.snippet_html()

    # v3: the errata touched a few modules; exactly those are read again.
    v3 = _modules(CORPUS / "intro-stats" / "v3")
    changed = {p for p in v3 if p.endswith(".cnxml") and v3[p] != v2.get(p)}
    assert 0 < len(changed) < 102
    publish(repo, write_tree(tmp_path / "v3", v3), bundle="intro-stats", title="Stats")
    Updater(store, RepoFetcher(repo)).sync("intro-stats", "en")
    result = update_search_index(store)
    assert result.versions_added == 1
    assert result.files_indexed == len(changed)
    assert result.files_reused == 102 - len(changed)
    ref = store.ref("intro-stats", "en")
    assert ref is not None and sorted(ref.versions) == [1, 2]
    with SearchIndex.of(store) as index:
        assert index.search(word).hits[0].version == ref.version == 2


def _all_text(data: bytes) -> str:
    text = extract_text(data, "cnxml")
    return f"{text.title} {text.headings} {text.body}"
