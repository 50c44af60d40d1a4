"""Taking things back: a teacher withdraws a version, an admin removes a line.

Both are signed into the line's index in the same transaction that records them: laptops that
have not switched to a withdrawn version skip it (the index names the newest version not
withdrawn), those that hold it keep it until a newer one comes, and a removed line is dropped
by the laptops that follow it. Both are recorded in the history with who, when and why. Nothing
published is deleted or changed: objects and manifests stay immutable, so replicas and caches
need nothing but the line's new index (which every client revalidates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from satchel.content.errors import NotFoundError, UsageError
from satchel.content.index import parse_index
from satchel.content.names import check_bundle, check_locale
from sqlmodel import Session, col, select

from .authz import authorize_line, require_admin
from .database import Database
from .db import Line, Version
from .indexing import IndexSigner
from .tokens import Principal

MAX_NOTES = 2000


@dataclass(frozen=True, slots=True)
class Withdrawn:
    bundle: str
    locale: str
    version: int  # the version taken back
    serving: int  # the version the line's index names now


def _who(who: Principal) -> str:
    return f"{who.label} ({who.role})" if who.label else who.role


def _notes(notes: str) -> str:
    if not isinstance(notes, str) or len(notes) > MAX_NOTES:
        raise UsageError(f"notes are a string of at most {MAX_NOTES} characters")
    return notes


class Lines:
    def __init__(self, db: Database, index: IndexSigner, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.index = index
        self.clock = clock

    def withdraw(
        self, who: Principal, bundle: str, locale: str, version: int, notes: str = ""
    ) -> Withdrawn:
        """Take one version of a line back (not the only one still served)."""
        check_bundle(bundle)
        check_locale(locale)
        notes = _notes(notes)
        authorize_line(self.db, who, bundle, locale)

        def body(s: Session) -> Withdrawn:
            row = s.get(Version, (bundle, locale, version))
            if row is None:
                raise NotFoundError(f"{bundle}/{locale} has no version {version}")
            if not row.withdrawn:
                others = s.exec(
                    select(Version).where(
                        Version.bundle == bundle,
                        Version.locale == locale,
                        col(Version.withdrawn).is_(False),
                        Version.version != version,
                    )
                ).first()
                if others is None:
                    raise UsageError(
                        f"version {version} is the only one of {bundle}/{locale} still served;"
                        " publish a corrected version, or ask an admin to remove the line"
                    )
                row.withdrawn = True
                row.withdrawn_at = self.clock()
                row.withdrawn_by = _who(who)
                row.withdrawn_notes = notes
                s.add(row)
                s.flush()
            signed = self.index.resign(s, bundle, locale, self.clock())
            serving = parse_index(signed.body)[1].line.version
            return Withdrawn(bundle, locale, version, serving)

        return self.db.transaction(f"withdraw {bundle}/{locale} v{version}", body)

    def remove(self, who: Principal, bundle: str, locale: str, notes: str = "") -> None:
        """Take a whole line away (admins only): laptops that follow it drop it."""
        require_admin(who)
        check_bundle(bundle)
        check_locale(locale)
        notes = _notes(notes)

        def body(s: Session) -> None:
            line = s.get(Line, (bundle, locale))
            if line is None or line.latest_version < 1:
                raise NotFoundError(f"no bundle {bundle!r} in locale {locale!r}")
            if not line.removed:
                line.removed = True
                line.removed_at = self.clock()
                line.removed_by = _who(who)
                line.removed_notes = notes
                s.add(line)
                s.flush()
            self.index.resign(s, bundle, locale, self.clock())

        self.db.transaction(f"remove {bundle}/{locale}", body)
