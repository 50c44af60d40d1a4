"""Selective sync: which files, and so which objects, a partial copy of a version needs.

A laptop with a small disk keeps only some lessons (``satchel sync --only PATH``). A selector
names a lesson from the version's signed table of contents (by title, entry file, the entry's
folder or number: every file the lesson needs, media included), else a file or a folder
(every file under it). The selection is kept
with the version's ref, so later syncs keep it, and widening it fetches only the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

from satchel.content.errors import UsageError
from satchel.content.lessons import structure
from satchel.content.manifest import FileEntry, Manifest
from satchel.content.toc import Lesson


def _lesson_paths(
    lessons: Sequence[Lesson], selector: str, manifest: Manifest
) -> Sequence[str] | None:
    """Every path of the lesson ``selector`` names: by title, entry file, the entry's folder,
    or its number in the table of contents (only when no file or folder has that name)."""
    for lesson in lessons:
        folder = lesson.entry.rsplit("/", 1)[0] if "/" in lesson.entry else None
        if selector in (lesson.title, lesson.entry):
            return lesson.paths
        if selector == folder:  # the folder's files, and what the lesson needs beyond it
            return (*lesson.paths, folder)
    numbered = selector.isdigit() and 1 <= int(selector) <= len(lessons)
    if numbered and not any(_matches(f.path, selector) for f in manifest.files):
        return lessons[int(selector) - 1].paths
    return None


def normalize(selectors: Sequence[str]) -> tuple[str, ...]:
    """Selectors as stored: stripped, no leading ./ or trailing /, sorted, unique."""
    out = set()
    for raw in selectors:
        text = raw.strip()
        while text.startswith("./"):
            text = text[2:]
        text = text.strip("/")
        if not text or "\x00" in text or len(text) > 4096:
            raise UsageError(f"--only {raw!r} names nothing (give a file, folder or lesson)")
        out.add(text)
    return tuple(sorted(out))


def _matches(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def selected_files(
    manifest: Manifest, selectors: Sequence[str] | None, *, strict: bool = False
) -> list[FileEntry]:
    """The files a selection keeps (all of them when ``selectors`` is None).

    With ``strict`` (selectors typed just now), one that matches nothing is an error that
    lists what could be chosen; a stored selection may outlive a folder, and is lenient.
    """
    if selectors is None:
        return list(manifest.files)
    lessons = structure(manifest).lessons
    prefixes: list[str] = []
    for selector in selectors:
        lesson = _lesson_paths(lessons, selector, manifest)
        found = list(lesson) if lesson else [selector]
        if strict and not any(_matches(f.path, p) for f in manifest.files for p in found):
            raise UsageError(
                f"--only {selector!r} matches no file, folder or lesson of"
                f" {manifest.bundle}/{manifest.locale} version {manifest.version}"
                f" (lessons 1-{len(lessons)}; top-level entries: {_top_level(manifest)})"
            )
        prefixes.extend(found)
    return [f for f in manifest.files if any(_matches(f.path, p) for p in prefixes)]


def _top_level(manifest: Manifest, limit: int = 12) -> str:
    names = sorted({f.path.split("/", 1)[0] for f in manifest.files})
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def needed_objects(manifest: Manifest, files: Sequence[FileEntry]) -> list[tuple[str, int]]:
    """Objects the given files need: the manifest's dictionaries, then their chunks, in the
    manifest's distinct order (the order want bitmaps and packs use)."""
    if len(files) == len(manifest.files):
        return manifest.distinct_chunks()
    used = {cid for f in files for cid, _ in f.chunks}
    used.update(cid for cid, _ in manifest.dictionaries)
    return [(cid, n) for cid, n in manifest.distinct_chunks() if cid in used]
