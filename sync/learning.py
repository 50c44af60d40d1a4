"""What one learner has done on this store, derived from its outbox: continue, done, attempts.

The viewer's "continue where I was", the lessons marked done and a course's progress are not
kept anywhere of their own: they are read from the learner's records in the store's outbox
(``STORE/progress.sqlite``, :mod:`satchel.sync.outbox`), which are durable the moment they are
recorded, append-only and never deleted (not even once a receipt covers them). So they survive
a restart, a version switch (a lesson is its path; a new version of it is the same lesson) and
a sync that sends the records away, and a learner's place is the same on every viewer of the
store (a laptop's, or a hub's for every phone).

:class:`Journeys` keeps each learner's state and brings it up to date from the records after
the last one it has read (``Outbox.records(after=)``), so a page costs one indexed query of
the new records, not a scan of the learner's history.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from cachetools import LRUCache
from satchel.content.records import Record

from .outbox import Outbox

CACHED_LEARNERS = 1000


@dataclass(frozen=True, slots=True)
class Attempts:
    count: int
    last_correct: bool | None  # the last attempt's result (None: not scored)


@dataclass
class LineJourney:
    """One learner in one bundle and locale."""

    opened: set[str] = field(default_factory=set)  # lesson paths
    completed: set[str] = field(default_factory=set)
    last: str | None = None  # the lesson opened or completed most recently
    last_time: datetime | None = None
    attempts: dict[tuple[str, str], Attempts] = field(default_factory=dict)  # (lesson, question)

    def done_of(self, lessons: list[str]) -> int:
        """How many of ``lessons`` (a version's lesson paths) are done."""
        return sum(1 for path in lessons if path in self.completed)


@dataclass
class Journey:
    """Everything one learner did on this store, up to the record ``through``."""

    learner: str
    through: int = 0  # the seq of the last record read
    lines: dict[tuple[str, str], LineJourney] = field(default_factory=dict)
    last_line: tuple[str, str] | None = None  # where the learner was most recently

    def line(self, bundle: str, locale: str) -> LineJourney:
        return self.lines.get((bundle, locale)) or LineJourney()

    def copy(self) -> Journey:
        """A copy a page can read while the next record updates the original."""
        lines = {
            key: LineJourney(set(x.opened), set(x.completed), x.last, x.last_time, dict(x.attempts))
            for key, x in self.lines.items()
        }
        return Journey(self.learner, self.through, lines, self.last_line)

    def add(self, record: Record) -> None:
        key = (record.bundle, record.locale)
        line = self.lines.setdefault(key, LineJourney())
        if record.kind == "answered":
            if record.question is not None:
                slot = (record.lesson, record.question)
                before = line.attempts.get(slot)
                line.attempts[slot] = Attempts((before.count if before else 0) + 1, record.correct)
        else:
            (line.opened if record.kind == "opened" else line.completed).add(record.lesson)
            line.last = record.lesson
            line.last_time = record.time
            self.last_line = key
        self.through = max(self.through, record.seq)


class Journeys:
    """Every learner's :class:`Journey` of one outbox, kept up to date from its records."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._lock = threading.Lock()
        self._known: LRUCache[str, Journey] = LRUCache(CACHED_LEARNERS)

    def of(self, learner: str) -> Journey:
        """The learner's journey as of now (the records since the last call are read)."""
        with self._lock:
            journey = self._known.get(learner) or Journey(learner)
            for record in self.outbox.records(learner=learner, after=journey.through):
                journey.add(record)
            self._known[learner] = journey
            return journey.copy()
