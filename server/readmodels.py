"""What people read about the published lines: catalog, one line, history, translation status.

Typed read models over the database (and, for translation status, the manifests). The JSON
API renders them with :func:`dataclasses.asdict`; the web page's templates read their fields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from satchel.content.errors import NotFoundError
from satchel.content.manifest import Manifest
from satchel.content.names import check_bundle, check_locale
from sqlmodel import Session, col, select

from .database import Database, aware
from .db import Line, Version

TRANSLATION_STATES = ("up-to-date", "stale", "missing", "extra")


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: int
    manifest: str
    created: str
    files: int
    size: int
    notes: str
    base_version: int | None
    withdrawn: bool = False


@dataclass(frozen=True, slots=True)
class LineInfo:
    """One bundle in one locale, with its versions oldest first."""

    bundle: str
    locale: str
    title: str
    subject: str
    grade: str
    description: str
    lessons: int
    base_locale: str | None
    latest_version: int
    versions: tuple[VersionInfo, ...]
    removed: bool = False

    def version_manifest_id(self, number: int) -> str:
        for v in self.versions:
            if v.version == number:
                return v.manifest
        raise NotFoundError(f"{self.bundle}/{self.locale} has no version {number}")


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One publish: who (as they were then), when, and what they said."""

    version: int
    created: str
    manifest: str
    files: int
    size: int
    notes: str
    token_id: int | None
    token_label: str
    role: str
    base_locale: str | None
    base_version: int | None
    withdrawn: bool = False
    withdrawn_at: str | None = None
    withdrawn_by: str = ""
    withdrawn_notes: str = ""

    @property
    def by(self) -> str:
        """'Ana (teacher)'; the role and token number when the token had no label."""
        role = self.role or "?"
        if self.token_label:
            return f"{self.token_label} ({role})"
        return f"{role} token #{self.token_id}" if self.token_id is not None else role


@dataclass(frozen=True, slots=True)
class FileState:
    path: str
    state: str  # one of TRANSLATION_STATES


@dataclass(frozen=True, slots=True)
class TranslationReport:
    bundle: str
    locale: str
    version: int
    base_locale: str
    base_version: int
    latest_base_version: int
    counts: dict[str, int]
    files: tuple[FileState, ...]


class ReadModels:
    def __init__(self, db: Database, manifest: Callable[[str], Manifest]) -> None:
        self.db = db
        self.manifest = manifest  # a published manifest by id (cached by the caller)

    def catalog(self, bundle: str | None = None) -> list[LineInfo]:
        """Every line (or every line of one bundle), by bundle then locale."""
        with self.db.session() as s:
            query = select(Line).order_by(Line.bundle, Line.locale)
            if bundle is not None:
                query = query.where(Line.bundle == bundle)
            lines = s.exec(query).all()
            versions = s.exec(
                select(Version)
                .where(col(Version.bundle).in_([line.bundle for line in lines]))
                .order_by(col(Version.version))
            ).all()
        by_line: dict[tuple[str, str], list[VersionInfo]] = {}
        for v in versions:
            by_line.setdefault((v.bundle, v.locale), []).append(_version_info(v))
        return [_line_info(line, by_line.get((line.bundle, line.locale), [])) for line in lines]

    def line(self, bundle: str, locale: str) -> LineInfo:
        """One line and its versions, in two queries."""
        check_bundle(bundle)
        check_locale(locale)
        with self.db.session() as s:
            line = s.get(Line, (bundle, locale))
            if line is None:
                raise NotFoundError(f"there is no bundle {bundle!r} in locale {locale!r}")
            versions = _versions(s, bundle, locale)
        return _line_info(line, [_version_info(v) for v in versions])

    def history(self, bundle: str, locale: str) -> list[HistoryEntry]:
        """Every publish of a line, newest first."""
        check_bundle(bundle)
        check_locale(locale)
        with self.db.session() as s:
            if s.get(Line, (bundle, locale)) is None:
                raise NotFoundError(f"no bundle {bundle!r} in locale {locale!r}")
            versions = _versions(s, bundle, locale)
        return [
            HistoryEntry(
                version=v.version,
                created=aware(v.created).isoformat(),
                manifest=v.manifest_id,
                files=v.files,
                size=v.size,
                notes=v.notes,
                token_id=v.token_id,
                token_label=v.token_label,
                role=v.token_role,
                base_locale=v.base_locale,
                base_version=v.base_version,
                withdrawn=v.withdrawn,
                withdrawn_at=aware(v.withdrawn_at).isoformat() if v.withdrawn_at else None,
                withdrawn_by=v.withdrawn_by,
                withdrawn_notes=v.withdrawn_notes,
            )
            for v in reversed(versions)
        ]

    def translation_report(self, bundle: str, locale: str) -> TranslationReport:
        """Each file of a variant against its base line: up-to-date, stale, missing or extra.

        A path in both is ``stale`` when the base's file at the latest base version differs
        from the base's file at the version the variant was made from (or did not exist
        then), whatever the variant's own bytes are: a translated file is up to date as long
        as its source did not change. ``missing``: in the latest base only; ``extra``: in
        the variant only.
        """
        check_bundle(bundle)
        check_locale(locale)
        with self.db.session() as s:
            line = s.get(Line, (bundle, locale))
            if line is None or line.latest_version < 1:
                raise NotFoundError(f"no bundle {bundle!r} in locale {locale!r}")
            if line.base_locale is None:
                raise NotFoundError(f"{bundle}/{locale} is not a locale variant")
            latest = s.get(Version, (bundle, locale, line.latest_version))
            base_line = s.get(Line, (bundle, line.base_locale))
            if latest is None or latest.base_version is None or base_line is None:
                raise NotFoundError(f"{bundle}/{locale} has no recorded base version")
            variant = self.manifest(latest.manifest_id)
            made_from = self._version_manifest(s, bundle, line.base_locale, latest.base_version)
            newest = self._version_manifest(s, bundle, line.base_locale, base_line.latest_version)
        then = {f.path: f.chunks for f in made_from.files}
        now = {f.path: f.chunks for f in newest.files}
        mine = {f.path for f in variant.files}
        files = []
        for path in sorted(mine | set(now)):
            if path not in mine:
                state = "missing"
            elif path not in now:
                state = "extra"
            elif then.get(path) != now[path]:
                state = "stale"
            else:
                state = "up-to-date"
            files.append(FileState(path, state))
        counts = {state: 0 for state in TRANSLATION_STATES}
        for item in files:
            counts[item.state] += 1
        return TranslationReport(
            bundle=bundle,
            locale=locale,
            version=latest.version,
            base_locale=line.base_locale,
            base_version=latest.base_version,
            latest_base_version=base_line.latest_version,
            counts=counts,
            files=tuple(files),
        )

    def _version_manifest(self, s: Session, bundle: str, locale: str, version: int) -> Manifest:
        row = s.get(Version, (bundle, locale, version))
        if row is None:
            raise NotFoundError(f"no version {version} of {bundle}/{locale}")
        return self.manifest(row.manifest_id)


def _versions(s: Session, bundle: str, locale: str) -> Sequence[Version]:
    return s.exec(
        select(Version)
        .where(Version.bundle == bundle, Version.locale == locale)
        .order_by(col(Version.version))
    ).all()


def _version_info(v: Version) -> VersionInfo:
    return VersionInfo(
        version=v.version,
        manifest=v.manifest_id,
        created=aware(v.created).isoformat(),
        files=v.files,
        size=v.size,
        notes=v.notes,
        base_version=v.base_version,
        withdrawn=v.withdrawn,
    )


def _line_info(line: Line, versions: list[VersionInfo]) -> LineInfo:
    return LineInfo(
        bundle=line.bundle,
        locale=line.locale,
        title=line.title,
        subject=line.subject,
        grade=line.grade,
        description=line.description,
        lessons=line.lessons,
        base_locale=line.base_locale,
        latest_version=line.latest_version,
        versions=tuple(versions),
        removed=line.removed,
    )
