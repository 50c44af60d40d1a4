"""Lesson structure: satchel.toml, the layout rule, the signed manifest fields, the catalog."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from satchel.content.chunking import ChunkerParams
from satchel.content.errors import FormatError, UsageError
from satchel.content.lessons import derive, from_config, load, structure
from satchel.content.manifest import BaseRef, FileEntry, Manifest, ManifestDraft, parse_manifest
from satchel.content.signing import SigningKey
from satchel.content.toc import BundleMeta, Lesson
from satchel.server.repository import Repository
from satchel.sync.store import MemoryChunkStore

from harness.paths import CORPUS


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return root


def listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


SITE = {
    "index.html": "<title>Home</title>",
    "fractions/index.html": '<title>Fractions</title><img src="../media/pie.png"><a href="x.html">',
    "fractions/x.html": "<p>exercise</p>",
    "decimals/index.html": "<title> Decimals\n and money </title>",
    "media/pie.png": b"\x89PNG pie",
    "media/coin.png": b"\x89PNG coin",
    "media/unused.png": b"\x89PNG",
}


# -- satchel.toml -----------------------------------------------------------------------------
def test_config_gives_metadata_and_ordered_lessons(tmp_path: Path) -> None:
    root = write(tmp_path / "c", SITE)
    write(
        root,
        {
            "satchel.toml": """
[bundle]
title = "Numbers"
subject = "Mathematics"
grade = "5"
description = "Fractions, then decimals."

[[lessons]]
title = "Decimals and money"
entry = "decimals/index.html"
include = ["media/coin.png"]

[[lessons]]
entry = "./fractions/index.html"
include = ["media/"]
"""
        },
    )
    found = load(root, listing(root), title="folder name", locale="en")
    assert found.meta == BundleMeta(
        "Numbers", "Mathematics", "5", "Fractions, then decimals.", "en"
    )
    first, second = found.lessons
    assert first == Lesson(
        "Decimals and money", "decimals/index.html", ("decimals/index.html", "media/coin.png")
    )
    # No title: taken from the page; the folder include brings every media file.
    assert second.title == "Fractions" and second.entry == "fractions/index.html"
    assert second.paths == (
        "fractions/index.html",
        "fractions/x.html",  # linked from the entry
        "media/coin.png",
        "media/pie.png",
        "media/unused.png",
    )


def test_config_without_lessons_uses_the_layout_rule(tmp_path: Path) -> None:
    root = write(tmp_path / "c", {**SITE, "satchel.toml": '[bundle]\nsubject = "Maths"\n'})
    found = load(root, listing(root), title="Numbers", locale="uk")
    assert found.meta == BundleMeta(title="Numbers", subject="Maths", locale="uk")
    assert [lesson.entry for lesson in found.lessons] == [
        "decimals/index.html",
        "fractions/index.html",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[bundle\ntitle = 1", "satchel.toml"),
        ("[bundle]\ntitle = 5", "title must be a string"),
        ("[bundle]\ngrade = [1]", "grade must be a string"),
        ('[bundle]\ncolour = "red"', "unknown bundle metadata colour"),
        (f'[bundle]\ndescription = "{"d" * 4001}"', "at most 4000"),
        ('[bundle]\nlocale = "fr"', "says locale 'fr'"),
        ("[extra]\nx = 1", "unknown table"),
        ('lessons = "all"', "lessons must be a list"),
        ("lessons = [1, 2]", "must be a table"),
        ("[[lessons]]\ntitle = 'x'", "needs entry"),
        ("[[lessons]]\nentry = 7", "needs entry"),
        ("[[lessons]]\nentry = '../secret.html'", "not a path inside the folder"),
        ("[[lessons]]\nentry = '/etc/passwd'", "not a path inside the folder"),
        ("[[lessons]]\nentry = 'fractions/../../x'", "not a path inside the folder"),
        ("[[lessons]]\nentry = 'nope/index.html'", "is not a file in the folder"),
        ("[[lessons]]\nentry = 'media'", "is not a file in the folder"),
        ("[[lessons]]\nentry = 'index.html'\ntitle = 3", "title must be a string"),
        ("[[lessons]]\nentry = 'index.html'\ninclude = 'media'", "include must be a list"),
        ("[[lessons]]\nentry = 'index.html'\ninclude = ['none/']", "matches no file"),
        ("[[lessons]]\nentry = 'index.html'\ninclude = ['../']", "not a path inside"),
        ("[[lessons]]\nentry = 'index.html'\nwhen = 1", "unknown key 'when'"),
        (
            "[[lessons]]\nentry = 'index.html'\n[[lessons]]\nentry = './index.html'",
            "same entry",
        ),
    ],
)
def test_hostile_config_is_a_usage_error_that_says_what(
    tmp_path: Path, text: str, message: str
) -> None:
    root = write(tmp_path / "c", {**SITE, "satchel.toml": text})
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load(root, listing(root), title="T", locale="en")


def test_config_that_is_not_utf8_or_huge(tmp_path: Path) -> None:
    root = write(tmp_path / "c", {**SITE, "satchel.toml": b"\xff\xfe[bundle]"})
    with pytest.raises(UsageError, match=r"satchel\.toml"):
        load(root, listing(root))
    write(root, {"satchel.toml": "# " + "x" * (1024 * 1024)})
    with pytest.raises(UsageError, match="over"):
        load(root, listing(root))


def test_entry_links_are_followed_only_inside_the_tree() -> None:
    pages = {
        "l/index.html": b'<img src="../../outside.png"> <img src="http://x/y.png">'
        b' <a href="/abs.html"> <img src="../m/a.png?v=1"> [x](../m/b.svg "t")',
        "m/a.png": b"",
        "m/b.svg": b"",
    }
    found = from_config(
        b"[[lessons]]\nentry = 'l/index.html'\n", list(pages), lambda p: pages.get(p)
    )
    assert found.lessons[0].paths == ("l/index.html", "m/a.png", "m/b.svg")


# -- the layout rule --------------------------------------------------------------------------
def test_derive_folders_with_index_pages() -> None:
    files = sorted(SITE)
    found = derive(files, lambda p: SITE[p].encode() if isinstance(SITE[p], str) else None)
    assert [(lesson.title, lesson.entry) for lesson in found.lessons] == [
        ("Decimals and money", "decimals/index.html"),
        ("Fractions", "fractions/index.html"),
    ]
    assert found.lessons[1].paths == ("fractions/index.html", "fractions/x.html", "media/pie.png")


def test_derive_pages_of_the_busiest_folder_with_markdown_titles() -> None:
    pages = {
        "README.md": b"# Repo readme",
        "episodes/01-intro.md": b"---\ntitle: Introducing the Shell\nteaching: 5\n---\n# Other",
        "episodes/02-files.md": b"Some text\n\n# Files and folders #\n",
        "episodes/03-no-title.md": b"plain",
        "episodes/fig/a.svg": b"<svg/>",
        "other/one.md": b"# One",
    }
    found = derive(sorted(pages), lambda p: pages[p], title="Shell", locale="en")
    assert [(lesson.title, lesson.entry) for lesson in found.lessons] == [
        ("Introducing the Shell", "episodes/01-intro.md"),
        ("Files and folders", "episodes/02-files.md"),
        ("No title", "episodes/03-no-title.md"),
    ]
    assert found.meta == BundleMeta(title="Shell", locale="en")


def test_derive_without_pages_or_without_contents() -> None:
    assert derive(["a.bin", "b/c.jpg"]).lessons == ()
    # Names only (an old manifest): titles from folder names.
    found = derive(["m1/index.cnxml", "m2/index.cnxml", "media/x.jpg"])
    assert [(lesson.title, lesson.entry) for lesson in found.lessons] == [
        ("M1", "m1/index.cnxml"),
        ("M2", "m2/index.cnxml"),
    ]
    assert derive(["notes.html"]).lessons[0].entry == "notes.html"


needs_corpus = pytest.mark.skipif(
    not (CORPUS / "intro-stats" / "v1").is_dir() or not (CORPUS / "shell-novice").is_dir(),
    reason=f"shared corpus not found at {CORPUS}",
)


@pytest.mark.corpus
@needs_corpus
def test_layout_rule_on_the_real_corpus() -> None:
    root = CORPUS / "intro-stats" / "v1"
    found = load(root, listing(root), title="Introductory Statistics", locale="en")
    assert len(found.lessons) == 102  # every module the collection lists
    collection = (root / "collections" / "introductory-statistics.collection.xml").read_text()

    book_order = re.findall(r'document="(m\d+)"', collection)
    assert [lesson.entry.split("/")[1] for lesson in found.lessons] == book_order
    assert found.lessons[0].title == "Preface"
    # Every title came from the module's <title>, none from its folder name (M46882).
    assert not [lesson.title for lesson in found.lessons if re.fullmatch(r"M\d+", lesson.title)]
    # A lesson needs the figures its module shows, and they exist in the tree.
    m46885 = next(lesson for lesson in found.lessons if "m46885" in lesson.entry)
    assert sum(p.startswith("media/") for p in m46885.paths) >= 5
    assert all((root / p).is_file() for lesson in found.lessons for p in lesson.paths)

    shell = CORPUS / "shell-novice" / "v1"
    found = load(shell, listing(shell), title="The Unix Shell")
    assert [lesson.title for lesson in found.lessons] == [
        "Introducing the Shell",
        "Navigating Files and Directories",
        "Working With Files and Directories",
        "Pipes and Filters",
        "Loops",
        "Shell Scripts",
        "Finding Things",
    ]


# -- in the signed manifest -------------------------------------------------------------------
def manifest(**extra: object) -> Manifest:
    data = b"page"
    cid = hashlib.sha256(data).hexdigest()
    files = tuple(
        FileEntry(p, len(data), 0o644, "text/html", ((cid, len(data)),))
        for p in ("a/index.html", "b/index.html", "m/x.png")
    )
    base = Manifest(
        bundle="course",
        locale="es",
        version=2,
        parent_version=1,
        created=datetime(2026, 1, 1, tzinfo=UTC),
        title="Curso",
        chunker=ChunkerParams(),
        files=files,
    )
    return replace(base, **extra)  # type: ignore[arg-type]


def roundtrip(m: Manifest) -> Manifest:
    key = SigningKey.generate()
    return parse_manifest(key.sign(m.to_signed()))[1]


def test_manifest_carries_meta_lessons_and_base_signed() -> None:
    lessons = (
        Lesson("B first", "b/index.html", ("b/index.html", "m/x.png")),
        Lesson("A", "a/index.html", ("a/index.html",)),
    )
    meta = BundleMeta("Curso", "Matemáticas", "5", "d", "es")
    m = manifest(meta=meta, lessons=lessons, base=BaseRef("en", 3))
    back = roundtrip(m)
    assert (back.meta, back.lessons, back.base) == (meta, lessons, BaseRef("en", 3))
    assert structure(back).lessons == lessons and structure(back).meta == meta
    assert structure(back).find("2") == lessons[1]
    assert structure(back).find("b/index.html") == lessons[0]
    assert structure(back).find("A") == lessons[1]
    with pytest.raises(UsageError, match="no lesson"):
        structure(back).find("9")


def test_old_manifests_encode_and_parse_as_before() -> None:
    m = manifest()
    doc = m.to_signed()
    assert not {"meta", "lessons", "base"} & set(doc)
    back = roundtrip(m)
    assert back == m and back.meta is None and back.lessons == () and back.base is None
    # Readers still get a table of contents, from the names.
    got = structure(back)
    assert got.meta == BundleMeta(title="Curso", locale="es")
    assert [lesson.entry for lesson in got.lessons] == ["a/index.html", "b/index.html"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lessons", "all", "must be a list"),
        ("lessons", [{"title": "x", "entry": "nope.html", "paths": ["nope.html"]}], "not a file"),
        ("lessons", [{"title": "x", "entry": "a/index.html", "paths": ["../etc"]}], "not a file"),
        ("lessons", [{"title": "x", "entry": "a/index.html", "paths": []}], "does not list"),
        ("lessons", [{"title": "", "entry": "a/index.html", "paths": ["a/index.html"]}], "title"),
        ("lessons", [{"title": "x", "entry": 1, "paths": []}], "entry"),
        ("lessons", [{"title": "x", "entry": "a/index.html", "paths": "a"}], "paths"),
        ("lessons", [{"title": "x", "entry": "a/index.html", "paths": [1]}], "paths"),
        ("lessons", [[1]], "must be an object"),
        (
            "lessons",
            [{"title": "x", "entry": "a/index.html", "paths": ["a/index.html"]}] * 2,
            "two lessons",
        ),
        ("lessons", [{"title": "x"}] * 10_001, "over the limit"),
        ("meta", "x", "table of strings"),
        ("meta", {"title": 1}, "title must be a string"),
        ("meta", {"secret": "x"}, "unknown bundle metadata"),
        ("base", {"locale": "es", "version": 1}, "its own locale"),
        ("base", {"locale": "en", "version": 0}, "positive"),
        ("base", {"locale": "en", "version": True}, "positive"),
        ("base", {"locale": "../x", "version": 1}, "invalid locale"),
        ("base", {"locale": "en"}, "locale and version"),
        ("base", ["en", 1], "locale and version"),
    ],
)
def test_hostile_manifest_structure_is_refused(field: str, value: object, message: str) -> None:
    doc = manifest().to_signed()
    doc[field] = value
    with pytest.raises(FormatError, match=message):
        Manifest.from_signed(doc)
    if field != "base":
        draft = ManifestDraft("T", ChunkerParams(), manifest().files).to_json()
        draft[field] = value
        with pytest.raises(FormatError, match=message):
            ManifestDraft.from_json(draft)


# -- published and shown in the catalog ---------------------------------------------------------
def test_publish_signs_the_structure_and_the_catalog_shows_it(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "srv", store=MemoryChunkStore())
    root = write(tmp_path / "c", SITE)
    write(
        root,
        {
            "satchel.toml": '[bundle]\ntitle = "Numbers"\nsubject = "Maths"\ngrade = "5"\n'
            'description = "Everyday numbers"\nlocale = "uk"\n'
        },
    )
    repo.publishing.publish_folder(root, bundle="numbers", locale="uk", title="numbers-folder")
    (line,) = repo.reads.catalog()
    assert {
        k: getattr(line, k) for k in ("title", "subject", "grade", "description", "lessons")
    } == {
        "title": "Numbers",
        "subject": "Maths",
        "grade": "5",
        "description": "Everyday numbers",
        "lessons": 2,
    }
    m = repo.source.manifest(line.versions[0].manifest)
    assert m.meta is not None and m.meta.locale == "uk" and m.meta.subject == "Maths"
    assert [lesson.title for lesson in m.lessons] == ["Decimals and money", "Fractions"]
    # satchel.toml names its locale: publishing it as another is a mistake worth a stop.
    with pytest.raises(UsageError, match="says locale"):
        repo.publishing.publish_folder(root, bundle="numbers", locale="en", title="x")


def test_server_refuses_a_draft_whose_lessons_lie(tmp_path: Path) -> None:
    from satchel.content import canonical

    repo = Repository(tmp_path / "srv", store=MemoryChunkStore())
    who = repo.tokens.authenticate(repo.tokens.create("admin"))
    draft = ManifestDraft("T", ChunkerParams(), manifest().files).to_json()
    draft["lessons"] = [{"title": "x", "entry": "a/index.html", "paths": ["a/index.html", "z"]}]
    with pytest.raises(FormatError, match="not a file of this version"):
        repo.publishing.begin(who, "course", "en", canonical.encode(draft))
    assert repo.reads.catalog() == []


def test_folder_lessons_do_not_take_files_of_similarly_named_folders() -> None:
    files = [
        "m1/index.html",
        "m1/a.png",
        "m1-extra/index.html",
        "m1-extra/b.png",
        "m10/index.html",
        "m10/c.png",
        "m1.txt",
    ]
    found = derive(files)
    assert {lesson.entry: lesson.paths for lesson in found.lessons} == {
        "m1/index.html": ("m1/a.png", "m1/index.html"),
        "m1-extra/index.html": ("m1-extra/b.png", "m1-extra/index.html"),
        "m10/index.html": ("m10/c.png", "m10/index.html"),
    }


def test_derived_titles_are_text_not_markup() -> None:
    """<title>Sampling &amp; Data</title> (OpenStax CNXML) is the title "Sampling & Data"."""
    pages = {
        "modules/m1/index.cnxml": b"<document><title>Sampling &amp; Data &lt;1&gt;</title>",
        "modules/m2/index.cnxml": b"<document><title>Plain</title></document>",
    }
    found = derive(sorted(pages), lambda path: pages.get(path))
    assert [lesson.title for lesson in found.lessons] == ["Sampling & Data <1>", "Plain"]
