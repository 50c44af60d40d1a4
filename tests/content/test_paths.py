"""Bundle paths: relative, NFC, bounded, and unable to escape or clash in a checkout."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from satchel.content.errors import UnsafePathError
from satchel.content.paths import (
    MAX_COMPONENT_BYTES,
    MAX_PATH_BYTES,
    check_path,
    check_portable,
    check_publish_tree,
    check_tree,
    portable_problem,
    to_bundle_path,
)


@pytest.mark.parametrize(
    "path",
    [
        "a",
        "index.html",
        "media/fig 1.png",
        "a/b/c/d.txt",
        "..a",
        "a..",
        "...",
        ".hidden",
        "café/naïve.md",
        "日本語/ファイル.txt",
        "x" * MAX_COMPONENT_BYTES,
        "/".join(["y" * 200] * 5)[: MAX_PATH_BYTES - 1] + "z",
    ],
)
def test_safe_paths_are_returned_unchanged(path: str) -> None:
    assert check_path(path) is path


@pytest.mark.parametrize(
    "path",
    [
        "",
        "..",
        "../etc/passwd",
        "a/../../b",
        "a/..",
        ".",
        "./a",
        "a/./b",
        "/etc/passwd",
        "/",
        "a\\b",
        "..\\..\\windows",
        "C:\\x",
        "a\x00b",
        "a\nb",
        "a\x1fb",
        "a\x7fb",
        "a//b",
        "a/",
        "/a",
        "cafe\u0301.md",  # NFD
        "A\u030a",  # NFD Å
        "x" * (MAX_COMPONENT_BYTES + 1),
        "é" * 128,  # 256 UTF-8 bytes in one component
        "/".join(["y" * 200] * 6),  # over 1,024 bytes
        "a\ud800b",  # lone surrogate: not encodable
    ],
)
def test_hostile_paths_are_refused(path: str) -> None:
    with pytest.raises(UnsafePathError):
        check_path(path)


@pytest.mark.parametrize("char", ["\x80", "\x85", "\x9b", "\x9f"])
def test_c1_control_characters_are_refused(char: str) -> None:
    assert unicodedata.category(char) == "Cc"
    with pytest.raises(UnsafePathError):
        check_path(f"a{char}b")


@pytest.mark.parametrize("value", [None, 3, b"a", ["a"]])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(UnsafePathError):
        check_path(value)  # type: ignore[arg-type]


def test_length_limits_count_utf8_bytes() -> None:
    check_path("€" * (MAX_COMPONENT_BYTES // 3))  # 255 bytes
    with pytest.raises(UnsafePathError):
        check_path("€" * (MAX_COMPONENT_BYTES // 3 + 1))
    one_k = "/".join(["€" * 68] * 5)  # 5 x 204 bytes + 4 separators
    assert len(one_k.encode()) == MAX_PATH_BYTES
    check_path(one_k)
    with pytest.raises(UnsafePathError):
        check_path(one_k + "x")


@pytest.mark.parametrize(
    "paths",
    [
        ["a.txt", "a.txt"],
        ["A.txt", "a.txt"],
        ["docs/Intro.md", "DOCS/intro.md"],
        ["straße.md", "STRASSE.md"],  # casefold, as case-insensitive file systems compare
        ["a", "a/b"],
        ["a/b", "a"],  # order does not matter
        ["A", "a/b"],  # file "A" and folder "a" clash on a case-insensitive disk
        ["x/y", "x/y/z/w"],
        ["ok.txt", "../evil"],
    ],
)
def test_clashing_trees_are_refused(paths: list[str]) -> None:
    with pytest.raises(UnsafePathError):
        check_tree(paths)


def test_valid_tree_is_accepted() -> None:
    check_tree(["a/b", "a/c", "ab", "a-b/c", "b", "B2"])
    check_tree([])


def test_to_bundle_path_normalizes_to_nfc() -> None:
    assert to_bundle_path(["cafe\u0301", "n\u0303.md"]) == "café/ñ.md"
    with pytest.raises(UnsafePathError):
        to_bundle_path(["..", "x"])


component = st.text(alphabet="abAB.é-", min_size=1, max_size=4).filter(
    lambda s: s not in (".", "..")
)
tree_paths = st.lists(st.lists(component, min_size=1, max_size=3).map("/".join), max_size=8)


@given(tree_paths)
def test_check_tree_agrees_with_a_simple_model(paths: list[str]) -> None:
    keys = [p.casefold() for p in paths]
    clash = len(set(keys)) != len(keys) or any(
        other.startswith(key + "/") for key in keys for other in keys
    )
    if clash:
        with pytest.raises(UnsafePathError):
            check_tree(paths)
    else:
        check_tree(paths)
    for p in paths:
        assert unicodedata.is_normalized("NFC", p)


# -- names a USB stick (FAT/exFAT) or a Windows laptop (NTFS) cannot hold ---------------------
@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("what?.md", "contains ?"),
        ("notes/12:30.txt", "contains :"),
        ('say "hi".txt', 'contains "'),
        ("a|b.txt", "contains |"),
        ("<b>.html", "contains < >"),
        ("star*.png", "contains *"),
        ("CON", "reserves"),
        ("con.txt", "reserves"),
        ("lessons/Aux.tar.gz", "reserves"),
        ("nul", "reserves"),
        ("PRN.md", "reserves"),
        ("COM1", "reserves"),
        ("com9.log", "reserves"),
        ("LPT1.txt", "reserves"),
        ("lpt\u00b9", "reserves"),
        ("CON .txt", "reserves"),
        ("chapter./x.md", "ends with a dot"),
        ("trailing-space /x.md", "ends with a dot or a space"),
        ("file.", "ends with a dot"),
        ("...", "ends with a dot"),
    ],
)
def test_names_illegal_on_fat_and_ntfs_are_refused_at_publish(path: str, why: str) -> None:
    assert check_path(path) is path  # a manifest reader still accepts it
    with pytest.raises(UnsafePathError, match="cannot hold") as info:
        check_portable(path)
    assert why in str(info.value) and path[:40] in str(info.value)
    with pytest.raises(UnsafePathError, match="rename it"):
        check_publish_tree(["ok.md", path])


@pytest.mark.parametrize(
    "path",
    ["console.md", "CONTENTS/aux-notes.txt", "com10.txt", "COM0", "lpt", "nul-hypothesis.md",
     "a.b.c", ".hidden", "media/fig 1.png", "日本語/ファイル.txt", "COM1x.txt", "x.CON"],
)  # fmt: skip
def test_portable_names_pass(path: str) -> None:
    assert portable_problem(path) is None
    assert check_portable(path) is path


def test_publish_tree_still_checks_clashes() -> None:
    with pytest.raises(UnsafePathError, match="case"):
        check_publish_tree(["A.txt", "a.txt"])
    check_publish_tree(["a/b", "a/c"])


def _reference_verdict(path: str) -> bool:
    """The rules spelled out one by one, character by character: slow, obviously right."""
    if not path or path.startswith("/"):
        return False
    if any(ch == "\\" or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in path):
        return False
    if len(path.encode("utf-8", "surrogatepass")) > 1024:
        return False
    for part in path.split("/"):
        if part in ("", ".", "..") or len(part.encode("utf-8", "surrogatepass")) > 255:
            return False
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return unicodedata.normalize("NFC", path) == path


_PATHISH = st.lists(
    st.sampled_from(["a", "é", "e\u0301", "/", ".", "\\", "\x00", "\x85", "\ud800", "𝒳"]),
    max_size=40,
).map("".join) | st.builds(
    lambda n, c: "/".join([c * n] * 2), st.integers(60, 300), st.sampled_from("aé𝒳")
)


@given(_PATHISH)
def test_check_path_agrees_with_the_rules_spelled_out(path: str) -> None:
    try:
        check_path(path)
        accepted = True
    except UnsafePathError:
        accepted = False
    assert accepted == _reference_verdict(path), path
