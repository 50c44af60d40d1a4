"""Moodle GIFT questions: the typed model, the parser and its inverse.

The subset (Moodle's own importer, ``question/format/gift/format.php``, is the reference):

- ``// comment`` lines (only at the start of a line: ``http://`` in text stays text);
- ``::title::`` (the question id comes from it, see :mod:`satchel.content.exercises`),
  ``[markdown]``/``[html]``/``[plain]``/``[moodle]`` format tags (the question's format is
  recorded; a tag on an answer or feedback is accepted and dropped);
- escapes ``\\~ \\= \\# \\{ \\} \\: \\\\`` and ``\\n`` (a line break);
- one answer block ``{...}`` per question; text after it makes a "missing word" question
  (``text`` before the blank, ``text_after`` after it); ``####general feedback`` last in it;
- multiple choice ``{=right ~wrong#feedback ~%50%half}``; with no ``=`` answer and weights
  ``~%50%`` it is multiple answers (checkboxes), whose right weights must add up to 100%;
- true/false ``{T}``, ``{TRUE}``, ``{F}``, ``{FALSE}``, then ``#feedback if wrong#if right``;
- short answer ``{=answer =%50%other#feedback}``;
- numeric ``{#3.5:0.1}``, ``{#1..5}``, ``{#=3.5:0.1 =%50%3:1#feedback ~#any other answer}``;
- essay ``{}`` (recorded, never scored) and description (no answer block: shown, not asked);
- ``$CATEGORY:`` paragraphs are ignored (they come with Moodle exports).

Matching questions (``{=a -> b}``) and Moodle's ``*`` wildcard in short answers are not
supported and say so. Everything is bounded (:data:`MAX_BLOCK_CHARS`, :data:`MAX_ANSWERS`,
:data:`MAX_TITLE_CHARS`) and every error is a FormatError naming the line and what to change.
Scoring lives in :mod:`satchel.content.scoring`, Markdown lessons' ```` ```gift ```` blocks in
:mod:`satchel.content.exercises`, and form markup in :mod:`satchel.content.exercise_html`.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, replace
from decimal import Decimal, localcontext
from typing import Literal

from .errors import FormatError

MAX_BLOCK_CHARS = 64 * 1024  # one block of questions (a ```gift fence, or a text given to parse)
MAX_QUESTIONS = 200  # in one lesson (all its blocks)
MAX_ANSWERS = 50  # choices or accepted answers in one question
MAX_TITLE_CHARS = 200
MAX_NUMBER_CHARS = 40  # "3.14159", "-1.5e-3": longer is not a number a lesson needs

Kind = Literal[
    "multiple_choice",  # one right answer (radio buttons)
    "multiple_answers",  # several right answers with weights (checkboxes)
    "true_false",
    "short_answer",
    "numeric",
    "essay",  # recorded, not scored
    "description",  # shown, nothing to answer
]
TextFormat = Literal["moodle", "html", "markdown", "plain"]
FORMATS: tuple[TextFormat, ...] = ("moodle", "html", "markdown", "plain")
SCORED: frozenset[Kind] = frozenset(
    {"multiple_choice", "multiple_answers", "true_false", "short_answer", "numeric"}
)


@dataclass(frozen=True, slots=True)
class Choice:
    """A choice of a multiple-choice question, or an accepted short answer."""

    text: str
    percent: float  # credit for this answer, -100..100 (Moodle's %50% weights); = is 100
    feedback: str = ""


@dataclass(frozen=True, slots=True)
class NumericAnswer:
    """An accepted number: ``value`` plus or minus ``tolerance`` (a range ``a..b`` is stored
    as its midpoint and half-width, as Moodle does). Decimal, so 3.6 is within 3.5:0.1."""

    value: Decimal
    tolerance: Decimal
    percent: float = 100.0
    feedback: str = ""

    @property
    def low(self) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = 200
            return self.value - self.tolerance

    @property
    def high(self) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = 200
            return self.value + self.tolerance


@dataclass(frozen=True, slots=True)
class Question:
    """One question. ``text``/``text_after`` are plain (unescaped) GIFT text in ``format``."""

    id: str
    title: str
    kind: Kind
    text: str
    text_after: str = ""  # missing word: the text after the blank
    format: TextFormat = "moodle"
    choices: tuple[Choice, ...] = ()  # multiple_choice, multiple_answers: shown in this order
    answers: tuple[Choice, ...] = ()  # short_answer: accepted answers (never shown)
    numeric: tuple[NumericAnswer, ...] = ()
    truth: bool | None = None  # true_false: the right answer
    feedback_true: str = ""  # true_false: shown to a learner who answered true
    feedback_false: str = ""
    other_feedback: str = ""  # numeric: shown for a number no answer accepts (``~#...``)
    general_feedback: str = ""  # shown after any attempt
    line: int = 1  # where the question starts in its source (for messages)

    @property
    def scored(self) -> bool:
        return self.kind in SCORED

    @property
    def missing_word(self) -> bool:
        return bool(self.text_after)


# -- escapes -----------------------------------------------------------------------------------
_PAIR = re.compile(r"\\[\s\S]")
_SPECIAL = "~=#{}:"


def _mask(raw: str) -> str:
    """``raw`` with every escape pair blanked out (same length): every ``{``, ``~``, ``#``...
    left in the result is a real control character at the same index in ``raw``."""
    return _PAIR.sub("__", raw)


def _unescape_pair(m: re.Match[str]) -> str:
    ch = m.group(0)[1]
    if ch in _SPECIAL or ch == "\\":
        return ch
    if ch == "n":
        return "\n"
    return m.group(0)  # Moodle keeps other backslashes as they are


def unescape(raw: str) -> str:
    return _PAIR.sub(_unescape_pair, raw)


def escape(text: str) -> str:
    """GIFT text for ``text``: control characters, backslashes and line breaks escaped."""
    out = text.replace("\\", "\\\\")
    for ch in _SPECIAL:
        out = out.replace(ch, "\\" + ch)
    return out.replace("\r", "").replace("\n", "\\n")


# -- parsing -----------------------------------------------------------------------------------
class _Source:
    """The text of one question with the source line of every character, for messages."""

    def __init__(self, lines: list[tuple[int, str]], where: str) -> None:
        self.where = where
        self.raw = "\n".join(text for _, text in lines)
        self.masked = _mask(self.raw)
        self.starts: list[int] = []
        self.numbers: list[int] = []
        offset = 0
        for number, text in lines:
            self.starts.append(offset)
            self.numbers.append(number)
            offset += len(text) + 1

    def line(self, pos: int) -> int:
        return self.numbers[max(0, bisect.bisect_right(self.starts, pos) - 1)]

    def error(self, pos: int, what: str) -> FormatError:
        return FormatError(f"{self.where}, line {self.line(pos)}: {what}")


_FORMAT_TAG = re.compile(r"\s*\[(moodle|html|markdown|plain)\]")
_WEIGHT = re.compile(r"\s*%(\s*-?[\d.]{1,12}\s*)%")  # %50%, %-100%, %33.3%
_PERCENT = re.compile(r"-?(\d{1,3}(\.\d{1,7})?|\.\d{1,7})")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?")
_TRUTH = {"T": True, "TRUE": True, "F": False, "FALSE": False}


def _clean(raw: str) -> str:
    """Plain text of a part: unescaped, a leading format tag dropped, trimmed."""
    m = _FORMAT_TAG.match(raw)
    if m:
        raw = raw[m.end() :]
    return unescape(raw).strip()


def parse_number(text: str) -> Decimal | None:
    """A finite decimal number written as in GIFT (``3.5``, ``-1e3``), else None. Digits of
    any script count (``١٢.٥`` is 12.5), as Python's Decimal reads them."""
    text = text.strip()
    if len(text) > MAX_NUMBER_CHARS or not _NUMBER.fullmatch(text):
        return None
    return Decimal(text)  # the pattern admits only finite decimal literals


@dataclass(frozen=True, slots=True)
class _Part:
    """One answer of a block: its marker, weight (if written), text and feedback (raw)."""

    start: int  # index in the question's source (for messages)
    marker: str  # "=", "~", or "" for text before the first marker
    percent: float | None
    text: str
    feedback: str


class _Parser:
    """Parses one question (one paragraph of GIFT)."""

    def __init__(self, src: _Source) -> None:
        self.src = src
        self.raw = src.raw
        self.m = src.masked  # structure is read here, text is sliced from raw

    def error(self, pos: int, what: str) -> FormatError:
        return self.src.error(pos, what)

    def parts(self, start: int, end: int, markers: str) -> list[_Part]:
        """The answers in ``[start, end)``, split at unescaped marker characters."""
        m = self.m
        cuts = [i for i in range(start, end) if m[i] in markers]
        if len(cuts) > MAX_ANSWERS:
            raise self.error(cuts[MAX_ANSWERS], f"over {MAX_ANSWERS} answers in one question")
        bounds = [*cuts, end]
        out: list[_Part] = []
        if m[start : bounds[0]].strip():
            out.append(self.part(start, bounds[0], ""))
        for n, cut in enumerate(cuts):
            out.append(self.part(cut + 1, bounds[n + 1], m[cut]))
        return out

    def part(self, start: int, end: int, marker: str) -> _Part:
        while start < end and self.m[start].isspace():  # messages point at the answer itself
            start += 1
        percent: float | None = None
        w = _WEIGHT.match(self.m, start, end)
        if w:
            written = w.group(1).strip()
            if not _PERCENT.fullmatch(written) or not -100 <= float(written) <= 100:
                raise self.error(start, f"weight %{written}% is not a percentage from -100 to 100")
            percent = float(written)
            start = w.end()
        hash_at = self.m.find("#", start, end)
        if hash_at == -1:
            return _Part(start, marker, percent, self.raw[start:end], "")
        return _Part(start, marker, percent, self.raw[start:hash_at], self.raw[hash_at + 1 : end])

    def question(self, qid: str) -> Question | None:
        raw, m = self.raw, self.m
        pos = len(m) - len(m.lstrip())
        if m.startswith("$CATEGORY:", pos):
            return None
        title = ""
        if m.startswith("::", pos):
            close = m.find("::", pos + 2)
            if close == -1:
                raise self.error(pos, "the title opened with :: is not closed with ::")
            title = " ".join(unescape(raw[pos + 2 : close]).split())
            if len(title) > MAX_TITLE_CHARS:
                raise self.error(pos, f"the title is over {MAX_TITLE_CHARS} characters")
            pos = close + 2
        fmt: TextFormat = "moodle"
        tag = _FORMAT_TAG.match(m, pos)
        if tag:
            fmt = FORMATS[FORMATS.index(tag.group(1))]
            pos = tag.end()
        line = self.src.numbers[0]
        opening, closing = m.find("{", pos), m.find("}", pos)
        if opening == -1 and closing == -1:
            text = unescape(raw[pos:]).strip()
            return Question(qid, title, "description", text, format=fmt, line=line)
        if closing == -1:
            raise self.error(
                opening, "the answer block { is never closed with } (a blank line ends a question)"
            )
        if opening == -1 or closing < opening:
            raise self.error(closing, "a } with no { before it; write \\} for a brace in text")
        nested = m.find("{", opening + 1, closing)
        if nested != -1:
            raise self.error(nested, "a { inside an answer block; write \\{ for a brace in text")
        extra = [i for i in (m.find("{", closing), m.find("}", closing + 1)) if i != -1]
        if extra:
            raise self.error(
                min(extra),
                "a second answer block in one question: leave a blank line between questions,"
                " or write \\{ and \\} for braces in text",
            )
        start, end = opening + 1, closing
        general = m.rfind("####", start, end)
        base = Question(
            qid,
            title,
            "essay",
            unescape(raw[pos:opening]).strip(),
            text_after=unescape(raw[closing + 1 :]).strip(),
            format=fmt,
            general_feedback=_clean(raw[general + 4 : end]) if general != -1 else "",
            line=line,
        )
        if general != -1:
            end = general
        first = start + len(m[start:end]) - len(m[start:end].lstrip())
        body = m[first:end].rstrip()
        if not body:
            return base  # an essay
        if body.startswith("#"):
            return self.numeric(base, first + 1, end)
        if "~" in body:
            return self.choice(base, start, end)
        hash_at = body.find("#")
        if body[: hash_at if hash_at != -1 else len(body)].strip() in _TRUTH:
            return self.true_false(base, first, end)
        if "=" in body and "->" in body:
            raise self.error(first, "matching questions (=a -> b) are not supported")
        return self.short_answer(base, start, end)

    def choice(self, base: Question, start: int, end: int) -> Question:
        choices: list[Choice] = []
        single = False
        for part in self.parts(start, end, "~="):
            text = _clean(part.text)
            if not part.marker:
                raise self.error(
                    part.start,
                    f"unknown answer syntax {text[:40]!r}: start each answer with = (right)"
                    " or ~ (wrong)",
                )
            if not text:
                raise self.error(part.start, "an empty answer: write its text after = or ~")
            single = single or part.marker == "="
            default = 100.0 if part.marker == "=" else 0.0
            percent = default if part.percent is None else part.percent
            choices.append(Choice(text, percent, _clean(part.feedback)))
        if len(choices) < 2:
            raise self.error(start, "a multiple-choice question needs at least two answers")
        if single:
            if max(c.percent for c in choices) < 100:
                raise self.error(start, "no answer is fully right: mark the right one with =")
            return replace(base, kind="multiple_choice", choices=tuple(choices))
        right = sum(c.percent for c in choices if c.percent > 0)
        if right <= 0:
            raise self.error(
                start,
                "no correct answer: mark the right answer with =, or give the right answers"
                " weights like ~%50%",
            )
        if abs(right - 100) > 0.01:
            raise self.error(start, f"the right answers' weights add up to {right:g}%, not 100%")
        return replace(base, kind="multiple_answers", choices=tuple(choices))

    def true_false(self, base: Question, start: int, end: int) -> Question:
        cuts = [i for i in range(start, end) if self.m[i] == "#"][:2]
        bounds = [start - 1, *cuts, end]
        pieces = [self.raw[bounds[i] + 1 : bounds[i + 1]] for i in range(len(bounds) - 1)]
        truth = _TRUTH[self.m[start : bounds[1]].strip()]
        wrong = _clean(pieces[1]) if len(pieces) > 1 else ""
        right = _clean(pieces[2]) if len(pieces) > 2 else ""
        return replace(
            base,
            kind="true_false",
            truth=truth,
            feedback_true=right if truth else wrong,
            feedback_false=wrong if truth else right,
        )

    def short_answer(self, base: Question, start: int, end: int) -> Question:
        answers: list[Choice] = []
        for part in self.parts(start, end, "="):
            text = _clean(part.text)
            if not part.marker:
                hint = ""
                if text.upper() in _TRUTH:
                    hint = "; for true/false write T, TRUE, F or FALSE in capitals"
                raise self.error(
                    part.start,
                    f"unknown answer syntax {text[:40]!r}: start each answer with = (right)"
                    f" or ~ (wrong){hint}",
                )
            if not text:
                raise self.error(part.start, "an empty answer: write its text after =")
            percent = 100.0 if part.percent is None else part.percent
            if percent < 0:
                raise self.error(part.start, "a short answer's weight cannot be negative")
            answers.append(Choice(text, percent, _clean(part.feedback)))
        if not any(a.percent == 100 for a in answers):
            raise self.error(start, "no answer is fully right: give one =answer with no weight")
        return replace(base, kind="short_answer", answers=tuple(answers))

    def numeric(self, base: Question, start: int, end: int) -> Question:
        other = ""
        tilde = self.m.find("~", start, end)
        if tilde != -1:
            rest = self.part(tilde + 1, end, "~")
            if rest.text.strip() or rest.percent is not None:
                raise self.error(
                    tilde, "after ~ in a numeric block only #feedback for any other answer may come"
                )
            other = _clean(rest.feedback)
            end = tilde
        answers: list[NumericAnswer] = []
        for part in self.parts(start, end, "="):
            percent = 100.0 if part.percent is None else part.percent
            if percent < 0:
                raise self.error(part.start, "a numeric answer's weight cannot be negative")
            answers.append(self.number(part, percent))
        if not answers:
            raise self.error(start, "a numeric block {#...} holds no number")
        if not any(a.percent == 100 for a in answers):
            raise self.error(start, "no answer is fully right: give one number with no weight")
        return replace(base, kind="numeric", numeric=tuple(answers), other_feedback=other)

    def number(self, part: _Part, percent: float) -> NumericAnswer:
        """``3.5``, ``3.5:0.1`` or ``1..5`` (a range is kept as midpoint and half-width)."""
        shown = unescape(part.text).strip()[:40]

        def num(s: str) -> Decimal:
            value = parse_number(s)
            if value is None:
                raise self.error(
                    part.start,
                    f"numeric answer {shown!r} is not a number: write 3.5, 3.5:0.1 or 1..5",
                )
            return value

        written = _mask(part.text)
        with localcontext() as ctx:
            ctx.prec = 200  # exact for the short numbers admitted
            if ".." in written:
                cut = written.index("..")
                low, high = num(part.text[:cut]), num(part.text[cut + 2 :])
                if low > high:
                    raise self.error(part.start, f"range {shown!r} ends below its start")
                value, tolerance = (low + high) / 2, (high - low) / 2
            elif ":" in written:
                cut = written.index(":")
                value, tolerance = num(part.text[:cut]), num(part.text[cut + 1 :])
                if tolerance < 0:
                    raise self.error(part.start, f"the tolerance in {shown!r} is negative")
            else:
                value, tolerance = num(part.text), Decimal(0)
        return NumericAnswer(value, tolerance, percent, _clean(part.feedback))


def _paragraphs(lines: list[tuple[int, str]]) -> list[list[tuple[int, str]]]:
    """Questions are separated by blank lines; comment lines are dropped."""
    out: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for number, text in lines:
        if not text.strip():
            if current:
                out.append(current)
                current = []
        elif not text.lstrip().startswith("//"):
            current.append((number, text))
    if current:
        out.append(current)
    return out


def parse_gift(
    text: str,
    *,
    where: str = "GIFT text",
    first_line: int = 1,
    first_number: int = 1,
    limit: int = MAX_QUESTIONS,
) -> list[Question]:
    """Every question of a GIFT text, in order, with positional ids ``q<n>`` counted from
    ``first_number`` (:mod:`satchel.content.exercises` gives titled questions their own ids).

    ``where`` and ``first_line`` place error messages ("lesson.md, line 12: ..."); at most
    ``limit`` questions.
    """
    if not isinstance(text, str):
        raise FormatError(f"{where}: GIFT text must be a string")
    if len(text) > MAX_BLOCK_CHARS:
        raise FormatError(
            f"{where}, line {first_line}: a block of questions is over {MAX_BLOCK_CHARS:,}"
            " characters; split it into several blocks"
        )
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[Question] = []
    for paragraph in _paragraphs([(first_line + n, line) for n, line in enumerate(lines)]):
        question = _Parser(_Source(paragraph, where)).question(f"q{first_number + len(out)}")
        if question is None:
            continue
        if len(out) >= limit:
            raise FormatError(
                f"{where}, line {paragraph[0][0]}: over {MAX_QUESTIONS} questions in one lesson;"
                " split the lesson"
            )
        out.append(question)
    return out


# -- writing -----------------------------------------------------------------------------------
def _weight(percent: float) -> str:
    # repr() is exact for a float; Decimal turns "1e-05" into the "0.00001" GIFT expects.
    return f"%{Decimal(repr(percent)).normalize():f}%"


def _answer(marker: str, choice: Choice, percent: str) -> str:
    feedback = f"#{escape(choice.feedback)}" if choice.feedback else ""
    return f"{marker}{percent}{escape(choice.text)}{feedback}"


def to_gift(question: Question) -> str:
    """GIFT text for ``question`` (one line); ``parse_gift`` of it gives the question back
    (id, line and positions aside). Texts that start with ``[``, ``%`` or ``//`` after a
    format tag or marker are outside that guarantee, as in Moodle's own exporter."""
    q = question
    head = f"::{escape(q.title)}:: " if q.title else ""
    if q.format != "moodle" or q.text.startswith("["):
        head += f"[{q.format}]"
    head += escape(q.text)
    if q.kind == "description":
        return head
    general = f"####{escape(q.general_feedback)}" if q.general_feedback else ""
    if q.kind == "essay":
        body = ""
    elif q.kind in ("multiple_choice", "multiple_answers"):
        parts = []
        for c in q.choices:
            if q.kind == "multiple_choice" and c.percent == 100:
                parts.append(_answer("=", c, ""))
            else:
                parts.append(_answer("~", c, _weight(c.percent) if c.percent else ""))
        body = " ".join(parts)
    elif q.kind == "true_false":
        right, wrong = (
            (q.feedback_true, q.feedback_false) if q.truth else (q.feedback_false, q.feedback_true)
        )
        body = "TRUE" if q.truth else "FALSE"
        if wrong or right:
            body += f"#{escape(wrong)}"
        if right:
            body += f"#{escape(right)}"
    elif q.kind == "short_answer":
        body = " ".join(
            _answer("=", a, "" if a.percent == 100 else _weight(a.percent)) for a in q.answers
        )
    else:  # numeric
        items = []
        for n in q.numeric:
            weight = "" if n.percent == 100 else _weight(n.percent)
            feedback = f"#{escape(n.feedback)}" if n.feedback else ""
            items.append(f"={weight}{n.value}:{n.tolerance}{feedback}")
        if q.other_feedback:
            items.append(f"~#{escape(q.other_feedback)}")
        body = "#" + " ".join(items)
    after = f" {escape(q.text_after)}" if q.text_after else ""
    return f"{head} {{{body}{general}}}{after}"
