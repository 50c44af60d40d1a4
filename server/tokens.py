"""Tokens: who is asking. Issued, listed, revoked and checked here; only hashes are stored.

A request's token becomes a :class:`Principal`. Nothing caches tokens, so a revoked token
fails at its next request, and a long request (a web upload) checks its principal again
before it commits. Work the server does for itself (the sample bundle) runs as
:data:`SYSTEM`, which no token can become and which is never stored.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from satchel.content.errors import AuthError, NotFoundError, UsageError
from satchel.content.names import check_bundle, check_locale
from sqlmodel import col, select

from .database import Database, aware
from .db import Token

ROLES = ("admin", "teacher", "curator")
MAX_LABEL = 200
MAX_TOKEN = 200  # characters of a presented token worth hashing


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: int | None  # None: the server itself (SYSTEM)
    role: str
    bundle: str | None
    locale: str | None
    label: str = ""


SYSTEM = Principal(None, "admin", None, None, "in-process publish")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed: never its secret or its hash."""

    id: int
    role: str
    bundle: str | None
    locale: str | None
    label: str
    created: str
    revoked: bool
    revoked_at: str | None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    info: TokenInfo
    token: str  # the secret: in this answer only


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Tokens:
    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock

    def issue(
        self, role: str, *, bundle: str | None = None, locale: str | None = None, label: str = ""
    ) -> IssuedToken:
        if role not in ROLES:
            raise UsageError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if bundle is not None:
            check_bundle(bundle)
        if locale is not None:
            check_locale(locale)
        if role == "curator" and (bundle is None or locale is None):
            raise UsageError("a curator token needs --bundle and --locale")
        if not isinstance(label, str) or len(label) > MAX_LABEL:
            raise UsageError(f"a token label is a string of at most {MAX_LABEL} characters")
        token = "sat_" + secrets.token_urlsafe(32)
        row = Token(
            token_hash=hash_token(token),
            role=role,
            bundle=bundle,
            locale=locale,
            label=label,
            created=self.clock(),
        )
        with self.db.session() as s:
            s.add(row)
            s.commit()
            s.refresh(row)
        return IssuedToken(_info(row), token)

    def create(
        self, role: str, *, bundle: str | None = None, locale: str | None = None, label: str = ""
    ) -> str:
        """A new token's secret (see :meth:`issue` for its id too)."""
        return self.issue(role, bundle=bundle, locale=locale, label=label).token

    def list(self) -> list[TokenInfo]:
        """Every token, oldest first."""
        with self.db.session() as s:
            rows = s.exec(select(Token).order_by(col(Token.id))).all()
        return [_info(row) for row in rows]

    def revoke(self, token_id: int) -> TokenInfo:
        """Revoke a token; the next request with it fails."""
        with self.db.session() as s:
            row = s.get(Token, token_id)
            if row is None:
                raise NotFoundError(f"no token {token_id}")
            if not row.revoked:
                row.revoked = True
                row.revoked_at = self.clock()
                s.add(row)
                s.commit()
                s.refresh(row)
        return _info(row)

    def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise AuthError("this needs a token: pass --token (see 'satchel token create')")
        if len(token) > MAX_TOKEN:
            raise AuthError("token is unknown or revoked")
        with self.db.session() as s:
            row = s.exec(select(Token).where(Token.token_hash == hash_token(token))).first()
        if row is None or row.revoked or row.id is None:
            raise AuthError("token is unknown or revoked")
        return Principal(row.id, row.role, row.bundle, row.locale, row.label)

    def recheck(self, who: Principal) -> None:
        """Refuse a principal whose token was revoked since it was authenticated."""
        if who.token_id is None:
            return  # SYSTEM
        with self.db.session() as s:
            row = s.get(Token, who.token_id)
        if row is None or row.revoked:
            raise AuthError("token was revoked while this request ran; nothing was published")


def _info(row: Token) -> TokenInfo:
    assert row.id is not None  # rows are read back after they are stored
    return TokenInfo(
        id=row.id,
        role=row.role,
        bundle=row.bundle,
        locale=row.locale,
        label=row.label,
        created=aware(row.created).isoformat(),
        revoked=row.revoked,
        revoked_at=aware(row.revoked_at).isoformat() if row.revoked_at else None,
    )
