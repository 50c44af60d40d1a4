"""Classes, learners and devices as teachers manage them: create a class (its join code), list
who joined and which laptops report, revoke a device or a learner.

Every call names who asks (:class:`~satchel.server.tokens.Principal`) and is authorized by
:func:`~satchel.server.authz.authorize_class`: admins, and teachers of the class's bundle.
A device or learner is revocable by a teacher whose bundle it has a learner in. Revoking is
for good and says why: a revoked device's later batches are refused whole (the reason goes to
the log and the report); a revoked learner's later records are kept aside, never reported.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from satchel.content.errors import ForbiddenError, NotFoundError, UsageError
from satchel.content.joincode import generate_join_code, normalise_join_code
from satchel.content.names import check_bundle, check_locale
from satchel.content.receipts import check_device_id
from satchel.content.records import check_learner_id
from sqlalchemy import func
from sqlmodel import Session, col, select

from .authz import authorize_class
from .database import Database, aware
from .db import Device, LearnerRow, RecordAck, RecordRow, SchoolClass
from .tokens import Principal

MAX_CLASS_NAME = 200
MAX_REASON = 200


@dataclass(frozen=True, slots=True)
class ClassInfo:
    code: str
    bundle: str
    locale: str
    name: str
    created: str
    created_by: str
    learners: int


@dataclass(frozen=True, slots=True)
class LearnerInfo:
    learner: str  # id
    name: str
    class_code: str
    device: str
    joined: str
    first_seen: str
    records: int
    revoked: bool
    revoked_reason: str


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device: str
    first_seen: str
    last_seen: str
    learners: int
    acked_through: int
    revoked: bool
    revoked_reason: str
    refused_batches: int


def _iso(moment: datetime | None) -> str:
    return aware(moment).isoformat() if moment is not None else ""


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{what} must be text")
    clean = unicodedata.normalize("NFC", " ".join(value.split()))
    if not clean or len(clean) > limit:
        raise UsageError(f"{what} must be 1 to {limit} characters")
    if any(unicodedata.category(c) == "Cc" for c in clean):
        raise UsageError(f"{what} must be printable text")
    return clean


class Classes:
    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock

    # -- classes -----------------------------------------------------------------------------
    def create(self, who: Principal, bundle: str, locale: str, name: str) -> ClassInfo:
        """A new class of ``bundle``/``locale`` with a fresh join code."""
        check_bundle(bundle)
        check_locale(locale)
        authorize_class(who, bundle, locale)
        label = _text(name, "a class name", MAX_CLASS_NAME)
        by = f"{who.label} ({who.role})" if who.label else who.role
        now = self.clock()

        def body(s: Session) -> SchoolClass:
            row = SchoolClass(
                code=generate_join_code(),
                bundle=bundle,
                locale=locale,
                name=label,
                created_by=by,
                created_by_token=who.token_id,
                created=now,
            )
            s.add(row)
            s.flush()  # a code already taken (1 in 2^35): duplicate key, retried with another
            return row

        row = self.db.transaction("create a class", body)
        return ClassInfo(row.code, bundle, locale, label, _iso(now), by, 0)

    def list_classes(self, who: Principal, bundle: str, locale: str) -> list[ClassInfo]:
        check_bundle(bundle)
        check_locale(locale)
        authorize_class(who, bundle, locale)
        with self.db.session() as s:
            rows = s.exec(
                select(SchoolClass)
                .where(SchoolClass.bundle == bundle, SchoolClass.locale == locale)
                .order_by(col(SchoolClass.created), col(SchoolClass.code))
            ).all()
            counts = dict(
                s.exec(
                    select(LearnerRow.class_code, func.count())
                    .where(col(LearnerRow.class_code).in_([r.code for r in rows]))
                    .group_by(col(LearnerRow.class_code))
                ).all()
            )
        return [
            ClassInfo(
                r.code,
                r.bundle,
                r.locale,
                r.name,
                _iso(r.created),
                r.created_by,
                int(counts.get(r.code, 0)),
            )
            for r in rows
        ]

    def line_of(self, code: str) -> tuple[str, str]:
        """The bundle and locale of the class a join code names (public: the code is a name).
        UsageError for a mistyped code, NotFoundError for one the server never issued."""
        shown = normalise_join_code(code)
        with self.db.session() as s:
            row = s.get(SchoolClass, shown)
        if row is None:
            raise NotFoundError(f"no class has the join code {shown}; ask the teacher for it")
        return row.bundle, row.locale

    # -- learners ----------------------------------------------------------------------------
    def learners(self, who: Principal, bundle: str, locale: str) -> list[LearnerInfo]:
        check_bundle(bundle)
        check_locale(locale)
        authorize_class(who, bundle, locale)
        with self.db.session() as s:
            return self._learners(s, self._codes(s, bundle, locale))

    def _codes(self, s: Session, bundle: str, locale: str) -> list[str]:
        return list(
            s.exec(
                select(SchoolClass.code).where(
                    SchoolClass.bundle == bundle, SchoolClass.locale == locale
                )
            ).all()
        )

    def _learners(self, s: Session, codes: Sequence[str]) -> list[LearnerInfo]:
        rows = s.exec(
            select(LearnerRow)
            .where(col(LearnerRow.class_code).in_(codes))
            .order_by(col(LearnerRow.name), col(LearnerRow.id))
        ).all()
        counts = dict(
            s.exec(
                select(RecordRow.learner, func.count())
                .where(col(RecordRow.learner).in_([r.id for r in rows]))
                .group_by(col(RecordRow.learner))
            ).all()
        )
        return [_learner_info(r, int(counts.get(r.id, 0))) for r in rows]

    def revoke_learner(self, who: Principal, learner: str, reason: str) -> LearnerInfo:
        check_learner_id(learner, "revoke:")  # FormatError (422) for a malformed id
        why = _text(reason, "a reason", MAX_REASON)
        now = self.clock()

        def body(s: Session) -> LearnerInfo:
            row = s.exec(
                select(LearnerRow).where(LearnerRow.id == learner).with_for_update()
            ).first()
            if row is None:
                raise NotFoundError(f"no learner {learner} has reported to this server")
            self._authorize_codes(s, who, [row.class_code])
            if not row.revoked:
                row.revoked, row.revoked_reason, row.revoked_at = True, why, now
                s.add(row)
            count = s.exec(select(func.count()).where(RecordRow.learner == learner)).one()
            return _learner_info(row, int(count))

        return self.db.transaction("revoke a learner", body)

    # -- devices -----------------------------------------------------------------------------
    def devices(self, who: Principal, bundle: str, locale: str) -> list[DeviceInfo]:
        check_bundle(bundle)
        check_locale(locale)
        authorize_class(who, bundle, locale)
        with self.db.session() as s:
            codes = self._codes(s, bundle, locale)
            learners = s.exec(
                select(LearnerRow.device, func.count())
                .where(col(LearnerRow.class_code).in_(codes))
                .group_by(col(LearnerRow.device))
            ).all()
            return self._devices(s, dict(learners))

    def _devices(self, s: Session, learners: dict[str, int]) -> list[DeviceInfo]:
        ids = sorted(learners)
        rows = s.exec(select(Device).where(col(Device.id).in_(ids))).all()
        acks = dict(
            s.exec(
                select(RecordAck.device, RecordAck.acked_through).where(
                    col(RecordAck.device).in_(ids)
                )
            ).all()
        )
        infos = [
            DeviceInfo(
                r.id,
                _iso(r.first_seen),
                _iso(r.last_seen),
                int(learners.get(r.id, 0)),
                int(acks.get(r.id, 0)),
                r.revoked,
                r.revoked_reason,
                r.refused_batches,
            )
            for r in rows
        ]
        return sorted(infos, key=lambda d: d.last_seen, reverse=True)

    def revoke_device(self, who: Principal, device: str, reason: str) -> DeviceInfo:
        check_device_id(device, "revoke:")
        why = _text(reason, "a reason", MAX_REASON)
        now = self.clock()

        def body(s: Session) -> DeviceInfo:
            row = s.exec(select(Device).where(Device.id == device).with_for_update()).first()
            if row is None:
                raise NotFoundError(f"no device {device[:16]}... has reported to this server")
            codes = list(
                s.exec(
                    select(LearnerRow.class_code).where(LearnerRow.device == device).distinct()
                ).all()
            )
            self._authorize_codes(s, who, codes)
            if not row.revoked:
                row.revoked, row.revoked_reason, row.revoked_at = True, why, now
                s.add(row)
            n = s.exec(select(func.count()).where(LearnerRow.device == device)).one()
            return self._devices_row(s, row, int(n))

        return self.db.transaction("revoke a device", body)

    def _devices_row(self, s: Session, row: Device, learners: int) -> DeviceInfo:
        ack = s.get(RecordAck, row.id)
        return DeviceInfo(
            row.id,
            _iso(row.first_seen),
            _iso(row.last_seen),
            learners,
            ack.acked_through if ack is not None else 0,
            row.revoked,
            row.revoked_reason,
            row.refused_batches,
        )

    def _authorize_codes(self, s: Session, who: Principal, codes: Sequence[str]) -> None:
        """Allow an admin, or a teacher of a line one of ``codes`` (class codes) belongs to."""
        if who.role == "admin":
            return
        lines = s.exec(
            select(SchoolClass.bundle, SchoolClass.locale).where(col(SchoolClass.code).in_(codes))
        ).all()
        refusal: ForbiddenError | None = None
        for bundle, locale in lines:
            try:
                authorize_class(who, bundle, locale)
                return
            except ForbiddenError as exc:
                refusal = exc
        raise refusal or ForbiddenError(
            "only an admin may revoke a laptop or learner of no class of this server"
        )


def _learner_info(row: LearnerRow, records: int) -> LearnerInfo:
    return LearnerInfo(
        row.id,
        row.name,
        row.class_code,
        row.device,
        _iso(row.joined),
        _iso(row.first_seen),
        records,
        row.revoked,
        row.revoked_reason,
    )
