"""The signed table of contents: a bundle's metadata and its ordered lessons, as values.

These are the ``meta`` and ``lessons`` fields of a manifest (and a draft), checked as they are
parsed. Reading them from a ``satchel.toml`` or deriving them from a folder's layout is
:mod:`satchel.content.lessons`; the manifest itself is :mod:`satchel.content.manifest`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import FormatError, UsageError

MAX_LESSONS = 10_000
MAX_LESSON_PATHS = 100_000
MAX_FIELD = 500
MAX_DESCRIPTION = 4000
META_FIELDS = ("title", "subject", "grade", "description", "locale")


@dataclass(frozen=True, slots=True)
class BundleMeta:
    title: str = ""
    subject: str = ""
    grade: str = ""
    description: str = ""
    locale: str = ""

    def to_json(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in META_FIELDS}

    @classmethod
    def from_json(cls, raw: object, error: type[Exception] = FormatError) -> BundleMeta:
        if not isinstance(raw, Mapping):
            raise error("bundle metadata must be a table of strings")
        unknown = sorted(str(k) for k in raw if k not in META_FIELDS)
        if unknown:
            raise error(
                f"unknown bundle metadata {', '.join(unknown)[:200]}; use {', '.join(META_FIELDS)}"
            )
        values: dict[str, str] = {}
        for name in META_FIELDS:
            value = raw.get(name, "")
            limit = MAX_DESCRIPTION if name == "description" else MAX_FIELD
            if not isinstance(value, str) or len(value) > limit:
                raise error(f"bundle {name} must be a string of at most {limit} characters")
            values[name] = value
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Lesson:
    title: str
    entry: str
    paths: tuple[str, ...]  # every file the lesson needs, sorted, entry included

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "entry": self.entry, "paths": list(self.paths)}

    @classmethod
    def from_json(cls, raw: object) -> Lesson:
        if not isinstance(raw, Mapping):
            raise FormatError("a lesson must be an object with title, entry and paths")
        title, entry, paths = raw.get("title"), raw.get("entry"), raw.get("paths")
        if not isinstance(title, str) or not title or len(title) > MAX_FIELD:
            raise FormatError(f"lesson title must be a non-empty string of at most {MAX_FIELD}")
        if not isinstance(entry, str):
            raise FormatError(f"lesson {title[:80]!r} has no string entry")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise FormatError(f"lesson {title[:80]!r} paths must be a list of strings")
        if len(paths) > MAX_LESSON_PATHS:
            raise FormatError(f"lesson {title[:80]!r} lists over {MAX_LESSON_PATHS:,} paths")
        return cls(title, entry, tuple(paths))


@dataclass(frozen=True, slots=True)
class Structure:
    meta: BundleMeta
    lessons: tuple[Lesson, ...]

    def find(self, key: str) -> Lesson:
        """A lesson by its title, entry path or 1-based position (for ``--only``)."""
        for lesson in self.lessons:
            if key in (lesson.title, lesson.entry):
                return lesson
        if key.isdigit() and 1 <= int(key) <= len(self.lessons):
            return self.lessons[int(key) - 1]
        raise UsageError(
            f"no lesson {key[:80]!r}; give a title, an entry path or a number 1-{len(self.lessons)}"
        )


# -- checks shared by drafts and manifests ------------------------------------------------
def parse_meta(raw: object) -> BundleMeta:
    return BundleMeta.from_json(raw)


def parse_lessons(raw: object, files: Iterable[str]) -> tuple[Lesson, ...]:
    """Lessons from a manifest or draft; every entry and path must be a file of the version."""
    if not isinstance(raw, list):
        raise FormatError("'lessons' must be a list")
    if len(raw) > MAX_LESSONS:
        raise FormatError(f"{len(raw):,} lessons is over the limit of {MAX_LESSONS:,}")
    known = set(files)
    lessons = tuple(Lesson.from_json(item) for item in raw)
    entries: set[str] = set()
    for lesson in lessons:
        if lesson.entry not in known:
            raise FormatError(
                f"lesson {lesson.title[:80]!r}: entry {lesson.entry[:200]!r}"
                " is not a file of this version"
            )
        if lesson.entry in entries:
            raise FormatError(f"two lessons have the entry {lesson.entry[:200]!r}")
        entries.add(lesson.entry)
        absent = [p for p in lesson.paths if p not in known]
        if absent:
            raise FormatError(
                f"lesson {lesson.title[:80]!r} needs {absent[0][:200]!r},"
                " which is not a file of this version"
            )
        if lesson.entry not in lesson.paths:
            raise FormatError(f"lesson {lesson.title[:80]!r} does not list its entry in its paths")
    return lessons
