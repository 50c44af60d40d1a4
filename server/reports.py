"""What a teacher sees of a line's classes: per learner and lesson, opened and completed, each
question's attempts and last result, the questions the class misses most, and when each
laptop last reported. Typed read models, rendered as JSON, CSV or xAPI statements.

Only records of the line's classes are reported, never quarantined ones (a class code this
server never issued, a revoked learner): those are counted apart so nothing is silently
dropped. Records are taken in the order learners made them (time, then device seq), so "last
result" is the last attempt the learner made.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from satchel.content.names import check_bundle, check_locale
from satchel.content.records import Learner, Record
from satchel.content.xapi import Statement, record_statement
from sqlalchemy import func
from sqlmodel import Session, col, select

from .authz import authorize_class
from .classes import Classes, ClassInfo, DeviceInfo
from .database import Database, aware
from .db import LearnerRow, RecordRow
from .records import UNKNOWN_CLASS
from .tokens import Principal

FORMATS = ("json", "csv", "xapi")
CSV_COLUMNS = (
    "learner",
    "learner_id",
    "class",
    "bundle",
    "locale",
    "lesson",
    "opened",
    "completed",
    "question",
    "attempts",
    "correct",
    "score",
)


@dataclass(frozen=True, slots=True)
class QuestionResult:
    question: str
    attempts: int
    correct: bool | None  # the last attempt's result (None: not scored)
    score: float | None  # the last attempt's score, 0..1


@dataclass(frozen=True, slots=True)
class LessonProgress:
    lesson: str
    bundle: str
    locale: str
    opened: bool
    completed: bool
    answers: tuple[QuestionResult, ...]
    last_activity: str


@dataclass(frozen=True, slots=True)
class LearnerReport:
    learner: str  # the name, as the learner typed it at join
    id: str
    class_code: str
    device: str
    revoked: bool
    lessons: tuple[LessonProgress, ...]


@dataclass(frozen=True, slots=True)
class MissedQuestion:
    lesson: str
    question: str
    missed: int  # attempts scored wrong
    attempts: int
    learners: int  # learners who missed it at least once


@dataclass(frozen=True, slots=True)
class Quarantined:
    class_code: str
    reason: str
    records: int


@dataclass(frozen=True, slots=True)
class ClassReport:
    bundle: str
    locale: str
    generated: str
    classes: tuple[ClassInfo, ...]
    learners: tuple[LearnerReport, ...]
    missed: tuple[MissedQuestion, ...]
    devices: tuple[DeviceInfo, ...]
    quarantined: tuple[Quarantined, ...]


@dataclass
class _Lesson:
    bundle: str
    locale: str
    opened: bool = False
    completed: bool = False
    answers: dict[str, list[RecordRow]] = field(default_factory=dict)
    last: datetime | None = None


class Reports:
    def __init__(self, db: Database, classes: Classes, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.classes = classes
        self.clock = clock

    def report(self, who: Principal, bundle: str, locale: str) -> ClassReport:
        check_bundle(bundle)
        check_locale(locale)
        authorize_class(who, bundle, locale)
        classes = tuple(self.classes.list_classes(who, bundle, locale))
        devices = tuple(self.classes.devices(who, bundle, locale))
        codes = [c.code for c in classes]
        with self.db.session() as s:
            learners = s.exec(
                select(LearnerRow)
                .where(col(LearnerRow.class_code).in_(codes))
                .order_by(col(LearnerRow.name), col(LearnerRow.id))
            ).all()
            rows = self._records(s, [lr.id for lr in learners])
            quarantined = self._quarantined(s, bundle, locale, codes)
        by_learner: dict[str, list[RecordRow]] = {lr.id: [] for lr in learners}
        for r in rows:
            by_learner[r.learner].append(r)
        reports = tuple(
            LearnerReport(
                lr.name,
                lr.id,
                lr.class_code,
                lr.device,
                lr.revoked,
                _lessons(by_learner[lr.id]),
            )
            for lr in learners
        )
        return ClassReport(
            bundle,
            locale,
            aware(self.clock()).isoformat(),
            classes,
            reports,
            _missed(rows),
            devices,
            quarantined,
        )

    def _records(self, s: Session, learners: list[str]) -> list[RecordRow]:
        if not learners:
            return []
        return list(
            s.exec(
                select(RecordRow)
                .where(col(RecordRow.learner).in_(learners), col(RecordRow.quarantine).is_(None))
                .order_by(col(RecordRow.time), col(RecordRow.device), col(RecordRow.seq))
            ).all()
        )

    def _quarantined(
        self, s: Session, bundle: str, locale: str, codes: list[str]
    ) -> tuple[Quarantined, ...]:
        """Records of this line under a code no class has, and records of this line's
        classes kept aside (a revoked learner)."""
        unknown = s.exec(
            select(RecordRow.class_code, RecordRow.quarantine, func.count())
            .where(
                RecordRow.bundle == bundle,
                RecordRow.locale == locale,
                RecordRow.quarantine == UNKNOWN_CLASS,
            )
            .group_by(col(RecordRow.class_code), col(RecordRow.quarantine))
        ).all()
        held = s.exec(
            select(RecordRow.class_code, RecordRow.quarantine, func.count())
            .where(col(RecordRow.class_code).in_(codes), col(RecordRow.quarantine).is_not(None))
            .group_by(col(RecordRow.class_code), col(RecordRow.quarantine))
        ).all()
        found = {(code, why or ""): int(n) for code, why, n in [*unknown, *held]}
        return tuple(Quarantined(c, why, n) for (c, why), n in sorted(found.items()))

    def statements(
        self, who: Principal, bundle: str, locale: str, server_url: str
    ) -> list[Statement]:
        """The report's records as xAPI statements (one per record, ids stable across
        exports, so an LRS keeps each once)."""
        report = self.report(who, bundle, locale)
        names = {lr.id: lr for lr in report.learners}
        with self.db.session() as s:
            rows = self._records(s, list(names))
            joined = {
                lr.id: lr
                for lr in s.exec(select(LearnerRow).where(col(LearnerRow.id).in_(list(names))))
            }
        out: list[Statement] = []
        for r in rows:
            lr = joined[r.learner]
            learner = Learner(lr.id, lr.name, lr.class_code, lr.bundle, lr.locale, aware(lr.joined))
            out.append(record_statement(_record(r), learner, r.device, server_url))
        return out


def _record(r: RecordRow) -> Record:
    return Record(
        seq=r.seq,
        learner=r.learner,
        class_code=r.class_code,
        bundle=r.bundle,
        locale=r.locale,
        lesson=r.lesson,
        kind=r.kind,  # type: ignore[arg-type]  # stored from a checked record
        question=r.question,
        answer=r.answer,
        correct=r.correct,
        score_milli=r.score_milli,
        time=aware(r.time),
    )


def _lessons(rows: list[RecordRow]) -> tuple[LessonProgress, ...]:
    lessons: dict[tuple[str, str, str], _Lesson] = {}
    for r in rows:
        lesson = lessons.setdefault((r.bundle, r.locale, r.lesson), _Lesson(r.bundle, r.locale))
        lesson.last = r.time
        if r.kind == "opened":
            lesson.opened = True
        elif r.kind == "completed":
            lesson.opened = lesson.completed = True
        elif r.question is not None:
            lesson.opened = True
            lesson.answers.setdefault(r.question, []).append(r)
    return tuple(
        LessonProgress(
            path,
            lesson.bundle,
            lesson.locale,
            lesson.opened,
            lesson.completed,
            tuple(
                QuestionResult(
                    q,
                    len(tries),
                    tries[-1].correct,
                    None if tries[-1].score_milli is None else tries[-1].score_milli / 1000,
                )
                for q, tries in sorted(lesson.answers.items())
            ),
            aware(lesson.last).isoformat() if lesson.last else "",
        )
        for (_, _, path), lesson in sorted(lessons.items())
    )


def _missed(rows: list[RecordRow]) -> tuple[MissedQuestion, ...]:
    tally: dict[tuple[str, str], tuple[int, int, set[str]]] = {}
    for r in rows:
        if r.kind != "answered" or r.question is None:
            continue
        missed, attempts, who = tally.get((r.lesson, r.question), (0, 0, set()))
        if r.correct is False:
            missed += 1
            who.add(r.learner)
        tally[(r.lesson, r.question)] = (missed, attempts + 1, who)
    found = [
        MissedQuestion(lesson, q, missed, attempts, len(who))
        for (lesson, q), (missed, attempts, who) in tally.items()
        if missed
    ]
    return tuple(sorted(found, key=lambda m: (-m.missed, -m.learners, m.lesson, m.question)))


def report_csv(report: ClassReport) -> str:
    """One row per learner, lesson and question (a lesson without questions: one row)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for lr in report.learners:
        for lesson in lr.lessons:
            head = [
                _cell(lr.learner),
                lr.id,
                lr.class_code,
                lesson.bundle,
                lesson.locale,
                _cell(lesson.lesson),
                _flag(lesson.opened),
                _flag(lesson.completed),
            ]
            if not lesson.answers:
                writer.writerow([*head, "", "", "", ""])
            for a in lesson.answers:
                score = "" if a.score is None else f"{a.score:g}"
                writer.writerow([*head, _cell(a.question), a.attempts, _flag(a.correct), score])
    return out.getvalue()


def _flag(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def _cell(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
