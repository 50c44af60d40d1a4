"""Authorization: what a principal may do. Refusals are :class:`ForbiddenError` (HTTP 403).

Teachers publish to granted bundles (and locale, when the grant names one). Curators publish
only locale variants of their granted bundle and locale, never a base line. Admins do
everything, including managing tokens. A line that is a variant stays one: its publishes
name the same base locale.
"""

from __future__ import annotations

from satchel.content.errors import ForbiddenError, NotFoundError, UsageError
from satchel.content.names import check_locale

from .database import Database
from .db import Line
from .tokens import ROLES, Principal


def require_admin(who: Principal) -> None:
    if who.role != "admin":
        raise ForbiddenError("only an admin token may manage tokens")


def check_grant(who: Principal, bundle: str, locale: str) -> None:
    """Refuse a principal whose grant names another bundle or locale."""
    if who.role not in ROLES:
        raise ForbiddenError(f"role {who.role} cannot publish")
    if who.role == "admin":
        return
    if who.bundle is not None and who.bundle != bundle:
        raise ForbiddenError(f"this token may publish only to bundle {who.bundle!r}")
    if who.locale is not None and who.locale != locale:
        raise ForbiddenError(f"this token may publish only locale {who.locale!r}")


def authorize_publish(
    db: Database, who: Principal, bundle: str, locale: str, from_locale: str | None = None
) -> int | None:
    """Refuse a publish the principal may not make; for a variant, the base's latest version."""
    check_grant(who, bundle, locale)
    if who.role == "curator" and from_locale is None:
        raise ForbiddenError("a curator publishes locale variants only: pass --from-locale BASE")
    with db.session() as s:
        line = s.get(Line, (bundle, locale))
        base = s.get(Line, (bundle, from_locale)) if from_locale is not None else None
    if from_locale is None:
        if line is not None and line.base_locale is not None:
            raise UsageError(
                f"{bundle}/{locale} is a variant of {line.base_locale!r}:"
                f" publish it with --from-locale {line.base_locale}"
            )
        return None
    check_locale(from_locale)
    if from_locale == locale:
        raise UsageError("a locale variant needs a base locale other than its own")
    if line is not None and line.latest_version > 0 and line.base_locale is None:
        if who.role == "curator":
            raise ForbiddenError(
                f"{bundle}/{locale} is a base line, not a variant: a curator cannot publish it"
            )
        raise UsageError(f"{bundle}/{locale} is a base line; it cannot become a variant")
    if line is not None and line.base_locale not in (None, from_locale):
        raise UsageError(
            f"{bundle}/{locale} is a variant of {line.base_locale!r}, not {from_locale!r}"
        )
    if base is None or base.latest_version < 1:
        raise NotFoundError(f"no published {bundle}/{from_locale} to make a variant of")
    if base.base_locale is not None:
        raise UsageError(
            f"{bundle}/{from_locale} is itself a variant; make variants of"
            f" {bundle}/{base.base_locale}"
        )
    return base.latest_version


def authorize_line(db: Database, who: Principal, bundle: str, locale: str) -> Line:
    """Refuse a change to a published line (withdrawing a version) the principal may not make:
    the same rights as publishing to it. Returns the line."""
    check_grant(who, bundle, locale)
    with db.session() as s:
        line = s.get(Line, (bundle, locale))
    if line is None or line.latest_version < 1:
        raise NotFoundError(f"no bundle {bundle!r} in locale {locale!r}")
    if who.role == "curator" and line.base_locale is None:
        raise ForbiddenError(f"{bundle}/{locale} is a base line: a curator changes variants only")
    return line


def authorize_class(who: Principal, bundle: str, locale: str) -> None:
    """Classes, learners, devices and reports of a line: admins and teachers of the bundle
    (and of the locale, when the grant names one). Curators are refused: a report is about
    children, not translations."""
    if who.role == "admin":
        return
    if who.role != "teacher":
        raise ForbiddenError("only teachers of the bundle and admins see classes and reports")
    if who.bundle is not None and who.bundle != bundle:
        raise ForbiddenError(f"this token is for the classes of bundle {who.bundle!r}")
    if who.locale is not None and who.locale != locale:
        raise ForbiddenError(f"this token is for the classes of locale {who.locale!r}")
