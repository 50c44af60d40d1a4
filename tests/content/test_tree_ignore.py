"""What a publish takes from a folder: the usual junk is skipped, ``.satchelignore`` (gitignore
syntax) is honoured, links are skipped and reported, and an empty folder is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from satchel.content.chunking import Chunker
from satchel.content.errors import UsageError
from satchel.content.tree import DEFAULT_IGNORES, scan_tree, select_files

from harness.repo import write_tree

CHUNKER = Chunker()

JUNK = {
    ".git/config": b"[core]",
    ".git/objects/ab/cdef": b"blob",
    "lesson/.DS_Store": b"\x00\x00\x00\x01Bud1",
    "lesson/._index.md": b"AppleDouble",
    "__MACOSX/lesson/._x": b"x",
    "lesson/Thumbs.db": b"thumbs",
    "desktop.ini": b"[.ShellClassInfo]",
    "lesson/index.md~": b"# old",
    "lesson/.index.md.swp": b"swap",
    "lesson/~$notes.docx": b"lock",
    ".svn/entries": b"12",
}
COURSE = {"lesson/index.md": b"# Volcanoes\n", "lesson/lava.jpg": b"\xff\xd8jpeg"}


def paths(root: Path) -> list[str]:
    return [rel for rel, _ in select_files(root).files]


def test_the_usual_junk_is_skipped_and_listed(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "c", {**COURSE, **JUNK})
    selected = select_files(root)
    assert [rel for rel, _ in selected.files] == sorted(COURSE)
    skipped = {s.path for s in selected.skipped if s.reason == "ignored"}
    # A skipped folder is named once; nothing under it is looked at.
    assert {".git/", ".svn/", "__MACOSX/"} <= skipped
    assert not any(p.startswith(".git/") and p != ".git/" for p in skipped)
    for name in JUNK:
        top = name.split("/")[0] + "/"
        assert name in skipped or top in skipped, name


def test_satchelignore_adds_rules_and_can_bring_a_default_back(tmp_path: Path) -> None:
    rules = b"# teacher notes stay home\ndrafts/\n*.psd\n/answers.md\n!Thumbs.db\n"
    root = write_tree(
        tmp_path / "c",
        {
            **COURSE,
            ".satchelignore": rules,
            "drafts/next.md": b"# soon",
            "lesson/cover.psd": b"8BPS",
            "answers.md": b"42",
            "lesson/answers.md": b"kept: the rule is anchored at the top",
            "Thumbs.db": b"wanted after all",
        },
    )
    assert paths(root) == [
        "Thumbs.db",
        "lesson/answers.md",
        "lesson/index.md",
        "lesson/lava.jpg",
    ]
    # The rules file itself is for publishing, not for laptops.
    assert ".satchelignore" in {s.path for s in select_files(root).skipped}


def test_every_default_pattern_is_valid_gitignore() -> None:
    import pathspec

    assert len(pathspec.GitIgnoreSpec.from_lines(DEFAULT_IGNORES).patterns) == len(DEFAULT_IGNORES)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "holds no files"),
        ({".DS_Store": b"x", ".git/HEAD": b"ref"}, "2 skipped"),
        ({"a.md": b"x", ".satchelignore": b"*\n"}, "2 skipped"),
    ],
)
def test_an_empty_folder_is_refused(tmp_path: Path, files: dict[str, bytes], message: str) -> None:
    root = tmp_path / "c"
    root.mkdir()
    write_tree(root, files)
    with pytest.raises(UsageError, match=message) as caught:
        scan_tree(root, title="", chunker=CHUNKER)
    assert "nothing to publish" in str(caught.value)


def test_a_hostile_satchelignore_is_refused_with_a_reason(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "big", {**COURSE, ".satchelignore": b"x\n" * 40_000})
    with pytest.raises(UsageError, match="over"):
        select_files(root)
    root = write_tree(tmp_path / "bin", {**COURSE, ".satchelignore": b"\xff\xfe\x00bad"})
    with pytest.raises(UsageError, match="UTF-8"):
        select_files(root)


def test_a_satchelignore_that_is_a_link_is_not_read(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "c", COURSE)
    (tmp_path / "elsewhere").write_bytes(b"lesson/\n")
    (root / ".satchelignore").symlink_to(tmp_path / "elsewhere")
    assert paths(root) == sorted(COURSE)
