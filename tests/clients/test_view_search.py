"""Search in the viewer: ``/search`` over the store's index, which ``sync``, ``import`` and
``gc`` keep in step (real ``satchel`` processes), and the corpus at the viewer's level."""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from satchel.clients.view import create_app
from satchel.content.text import extract_text
from satchel.sync.local import LocalStore
from satchel.sync.search import INDEX_NAME, SearchIndex, update_search_index
from satchel.sync.updater import Updater

from harness import e2e
from harness.http import TestClient
from harness.paths import CORPUS
from harness.repo import RepoFetcher, make_repository, publish, write_tree


def md(title: str, *paras: str) -> bytes:
    return (f"# {title}\n\n" + "\n\n".join(paras) + "\n").encode()


def filler(seed: str, words: int) -> str:
    """Text of many distinct words (so dropping it frees pages of the index)."""
    return " ".join(f"{seed}{n:05d}x" for n in range(words))


V1 = {
    "satchel.toml": b'[bundle]\ntitle = "Field notes"\n\n[[lessons]]\ntitle = "Hedgehog"\n'
    b'entry = "uk/hedgehog.md"\n\n[[lessons]]\ntitle = "Weather"\nentry = "en/weather.md"\n',
    "uk/hedgehog.md": md("Їжак і лисиця", "Звичайний ЇЖАК живе в лісі та їсть яблука."),
    "en/weather.md": md(
        "Weather", "Yesterday a thunderstorm crossed the valley.", filler("storm", 4000)
    ),
}
V2 = {
    **V1,
    "en/weather.md": md("Weather", "Today a hailstone shower crossed the valley.", "Calm after."),
}


def hits(client: TestClient, query: str) -> list[str]:
    page = client.get("/search", params={"q": query})
    assert page.status_code == 200
    return re.findall(r'<li lang="[^"]+"><a href="([^"]+)"', page.text)


@pytest.mark.slow
def test_sync_import_and_gc_keep_the_viewers_search_in_step(tmp_path: Path) -> None:
    with e2e.SatchelServer(tmp_path / "data") as server:
        token = server.token("admin")
        src = write_tree(tmp_path / "v1", V1)
        assert e2e.publish(server.url, token, src, "notes", "--title", "Notes").code == 0
        store = tmp_path / "store"
        e2e.sync_json(server.url, "notes", store)
        assert (store / INDEX_NAME).is_file()  # the sync built the index
        client = TestClient(create_app(LocalStore(store, durable=False)))
        weather = "/b/notes/en/current/page/en/weather.md"
        hedgehog = "/b/notes/en/current/page/uk/hedgehog.md"
        assert hits(client, "thunderstorm") == [weather]
        # Cyrillic in another case than the lesson's finds it (and its snippet marks it).
        assert hits(client, "їжак") == [hedgehog]
        page = client.get("/search", params={"q": "ЇЖАК"}).text
        assert "<mark>ЇЖАК</mark>" in page

        # A new version changes the weather lesson: the new words are found, the old not.
        src2 = write_tree(tmp_path / "v2", V2)
        assert e2e.publish(server.url, token, src2, "notes", "--title", "Notes").code == 0
        e2e.sync_json(server.url, "notes", store)
        assert hits(client, "hailstone") == [weather]
        assert hits(client, "thunderstorm") == []
        before = SearchIndex.of(LocalStore(store, durable=False)).stats()

        # gc keeping one version drops version 1, and its pages leave the index and the disk.
        res = e2e.run_cli("gc", "--store", store, "--keep", "1")
        assert res.code == 0, res.describe()
        after = SearchIndex.of(LocalStore(store, durable=False)).stats()
        assert after.versions == before.versions - 1 == 1
        assert after.documents < before.documents
        assert after.file_bytes < before.file_bytes * 0.75, (before, after)
        assert hits(client, "hailstone") == [weather]

        # A stick carries the store to another laptop: import builds its index too.
        stick = tmp_path / "stick"
        res = e2e.run_cli("export", "--store", store, "--bundle", "notes", "--to", stick)
        assert res.code == 0, res.describe()
        other = tmp_path / "other"
        res = e2e.run_cli("import", stick, "--store", other, "--trust", server.fingerprint())
        assert res.code == 0, res.describe()
        other_client = TestClient(create_app(LocalStore(other, durable=False)))
        assert hits(other_client, "hailstone") == [weather]
        assert hits(other_client, "їжак") == [hedgehog]


def test_search_page_escapes_lesson_text_and_pages_through_hits(tmp_path: Path) -> None:
    files = {
        f"l{n:02d}.md": md(f"Lesson {n}", f"The common word pebble, and <b>bold</b> & {n}.")
        for n in range(23)
    }
    files["evil.md"] = md("<img src=x onerror=alert(1)>", "pebble <script>alert(2)</script>")
    repo = make_repository(tmp_path / "srv")
    publish(repo, write_tree(tmp_path / "src", files), title="<i>Pebbles</i>")
    store = LocalStore(tmp_path / "store", durable=False)
    Updater(store, RepoFetcher(repo)).sync("course", "en")
    update_search_index(store)
    client = TestClient(create_app(store))
    first = client.get("/search", params={"q": "pebble"}).text
    assert "24 pages found; showing 1–10." in first
    assert len(hits(client, "pebble")) == 10
    assert 'value="pebble"' in first  # the search box keeps the query
    assert '<a rel="next" href="/search?q=pebble&amp;page=2">' in first
    last = client.get("/search", params={"q": "pebble", "page": "3"}).text
    assert "showing 21–24" in last and 'rel="next"' not in last and 'rel="prev"' in last
    everything = first + last + client.get("/search", params={"q": "pebble", "page": "2"}).text
    main = "".join(re.findall(r"<main[^>]*>(.*?)</main>", everything, re.S))
    assert "<script" not in main and "<img" not in main and "<b>" not in main and "<i>" not in main
    assert "&lt;i&gt;Pebbles&lt;/i&gt;" in main
    assert "<mark>pebble</mark>" in main
    # Queries that are not words, or hostile, give a page and nothing else.
    for query in ('"', "*", "NEAR(a b)", "a OR", "x" * 5000, "\x00", "'; DROP TABLE docs; --"):
        r = client.get("/search", params={"q": query})
        assert r.status_code == 200, query
    empty = client.get("/search").text
    assert "Type words in the search box" in empty
    none = client.get("/search", params={"q": "zebra"}).text
    assert "No lesson on this laptop has all of these words" in none


def test_a_store_without_an_index_says_when_it_will_have_one(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "srv")
    publish(repo, write_tree(tmp_path / "src", {"a.md": md("A", "pebble")}))
    store = LocalStore(tmp_path / "store", durable=False)
    Updater(store, RepoFetcher(repo)).sync("course", "en")
    page = TestClient(create_app(store)).get("/search", params={"q": "pebble"})
    assert page.status_code == 200 and "not built yet" in page.text
    assert not (store.root / INDEX_NAME).exists()  # the viewer never makes it


# -- the corpus ----------------------------------------------------------------------------------
def _folded_words(text: str) -> Counter[str]:
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return Counter(re.findall(r"[^\W_]+", folded))


needs_corpus = pytest.mark.skipif(
    not (CORPUS / "intro-stats" / "v2").is_dir(),
    reason=f"shared corpus not found at {CORPUS} (needs intro-stats/v2)",
)


@pytest.mark.corpus
@needs_corpus
def test_corpus_a_word_of_one_module_is_the_first_hit_with_its_snippet(tmp_path: Path) -> None:
    root = CORPUS / "intro-stats" / "v2"
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and (p.suffix == ".cnxml" or p.name.endswith(".collection.xml"))
    }
    repo = make_repository(tmp_path / "srv")
    publish(repo, write_tree(tmp_path / "v2", files), bundle="intro-stats", title="Stats")
    store = LocalStore(tmp_path / "store", durable=False)
    Updater(store, RepoFetcher(repo)).sync("intro-stats", "en")
    update_search_index(store)
    counts = {}
    for path, data in files.items():
        if path.endswith(".cnxml"):
            text = extract_text(data, "cnxml")
            counts[path] = _folded_words(f"{text.title} {text.headings} {text.body}")
    seen: Counter[str] = Counter()
    for words in counts.values():
        seen.update(words.keys())
    unique = [
        (n, word, path)
        for path, words in counts.items()
        for word, n in words.items()
        if seen[word] == 1 and word.isascii() and word.isalpha() and len(word) >= 6
    ]
    assert unique, "no word of one module only"
    _n, word, path = max(unique)
    client = TestClient(create_app(store))
    page = client.get("/search", params={"q": word.capitalize()}).text
    first = re.search(
        r'<li lang="en"><a href="([^"]+)">(.*?)</a>.*?<p class="snippet">(.*?)</p>', page, re.S
    )
    assert first is not None, page
    assert first.group(1) == f"/b/intro-stats/en/current/page/{path}"
    marked = re.search(r"<mark>(.*?)</mark>", first.group(3))
    assert marked is not None and html.unescape(marked.group(1)).casefold() == word
    # The hit opens the lesson in the viewer.
    assert client.get(first.group(1)).status_code == 200
