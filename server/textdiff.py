"""What changed inside files between two versions, for the web page's compare view.

Text files get a line diff (``difflib``) with a little context, and within a changed line the
words that differ are marked, so a one-word fix shows as one word; pictures are listed with
their before and after. Everything here is data (dataclasses of plain strings): the template
escapes it, so a lesson's text can never become markup on the page.

Bounded: files over :data:`MAX_TEXT_BYTES` or not UTF-8 are named, not compared; each file
shows at most :data:`MAX_LINES` diff lines and the page at most :data:`MAX_FILES` files.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from satchel.content.manifest import FileEntry, Manifest

MAX_TEXT_BYTES = 256 * 1024
MAX_LINES = 400
MAX_FILES = 30
CONTEXT = 2
TEXT_MEDIA = ("application/json", "application/xml", "application/yaml", "image/svg+xml")
TEXT_SUFFIXES = (".md", ".markdown", ".cnxml", ".html", ".htm", ".txt", ".csv", ".vtt", ".toml")
_WORDS = re.compile(r"\s+|\w+|[^\w\s]")

Reader = Callable[[Manifest, FileEntry], bytes]
"""Returns a file's verified bytes (the caller reads them from the chunk store)."""


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    changed: bool = False  # a word that differs from the other side of a changed line


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: str  # "same", "removed", "added" or "gap" (unchanged lines left out)
    old: int | None  # line number before (1-based), if the line is on that side
    new: int | None  # line number after
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class TextChange:
    path: str
    lines: tuple[DiffLine, ...]
    note: str = ""  # why there is no diff, or that it was cut short


@dataclass(frozen=True, slots=True)
class PictureChange:
    path: str
    old_version: int | None  # None: the picture is new
    new_version: int | None  # None: the picture was removed


@dataclass(frozen=True, slots=True)
class ContentChanges:
    texts: tuple[TextChange, ...]
    pictures: tuple[PictureChange, ...]
    more: int = 0  # changed text files beyond MAX_FILES, not shown


def is_text(entry: FileEntry) -> bool:
    media = entry.media_type
    return (
        media.startswith("text/")
        or media in TEXT_MEDIA
        or entry.path.lower().endswith(TEXT_SUFFIXES)
    )


def is_picture(entry: FileEntry) -> bool:
    return entry.media_type.startswith("image/")


def content_changes(old: Manifest, new: Manifest, read: Reader) -> ContentChanges:
    """The text changes of changed text files and the pictures added, changed or removed."""
    before = {f.path: f for f in old.files}
    after = {f.path: f for f in new.files}
    texts: list[TextChange] = []
    more = 0
    pictures: list[PictureChange] = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a is not None and b is not None and a.chunks == b.chunks:
            continue
        if (a is None or is_picture(a)) and (b is None or is_picture(b)):
            pictures.append(
                PictureChange(
                    path, old.version if a is not None else None, new.version if b else None
                )
            )
        elif a is not None and b is not None and is_text(a) and is_text(b):
            if len(texts) >= MAX_FILES:
                more += 1
                continue
            texts.append(text_change(path, old, a, new, b, read))
    return ContentChanges(tuple(texts), tuple(pictures), more)


def text_change(
    path: str, old: Manifest, a: FileEntry, new: Manifest, b: FileEntry, read: Reader
) -> TextChange:
    if max(a.size, b.size) > MAX_TEXT_BYTES:
        return TextChange(path, (), f"over {MAX_TEXT_BYTES // 1024} KiB: not compared")
    try:
        left = read(old, a).decode("utf-8").splitlines()
        right = read(new, b).decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return TextChange(path, (), "not UTF-8 text: not compared")
    lines = list(diff_lines(left, right))
    if not lines:
        return TextChange(path, (), "only line endings or the file mode changed")
    if len(lines) > MAX_LINES:
        return TextChange(path, tuple(lines[:MAX_LINES]), f"first {MAX_LINES} lines shown")
    return TextChange(path, tuple(lines))


def diff_lines(left: list[str], right: list[str]) -> Iterator[DiffLine]:
    """Changed lines with :data:`CONTEXT` unchanged lines around them; words marked."""
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    for n, group in enumerate(matcher.get_grouped_opcodes(CONTEXT)):
        if n or group[0][1] > 0 or group[0][3] > 0:
            yield DiffLine("gap", None, None, (Segment("…"),))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for k in range(i2 - i1):
                    yield DiffLine("same", i1 + k + 1, j1 + k + 1, (Segment(left[i1 + k]),))
                continue
            removed, added = left[i1:i2], right[j1:j2]
            pairs = min(len(removed), len(added)) if tag == "replace" else 0
            marked = [word_diff(removed[k], added[k]) for k in range(pairs)]
            for k, line in enumerate(removed):
                segs = marked[k][0] if k < pairs else (Segment(line),)
                yield DiffLine("removed", i1 + k + 1, None, segs)
            for k, line in enumerate(added):
                segs = marked[k][1] if k < pairs else (Segment(line),)
                yield DiffLine("added", None, j1 + k + 1, segs)


def word_diff(old: str, new: str) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
    """Both sides of a changed line, split into runs, the words that differ marked."""
    a, b = _WORDS.findall(old), _WORDS.findall(new)
    left: list[Segment] = []
    right: list[Segment] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if i2 > i1:
            left.append(Segment("".join(a[i1:i2]), tag != "equal"))
        if j2 > j1:
            right.append(Segment("".join(b[j1:j2]), tag != "equal"))
    return tuple(left), tuple(right)
