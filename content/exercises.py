"""Exercises in Markdown lessons: ```` ```gift ```` blocks, their question ids, the publish check.

A fenced code block whose info string is ``gift`` (```` ```gift ```` or ``~~~gift``) holds one
or more GIFT questions (:mod:`satchel.content.gift`) separated by blank lines. Blocks are found
with markdown-it-py's CommonMark block parser, the parser the viewer renders lessons with, so
the publish check and the viewer agree on what is a block (inside lists and quotes too); the
n-th block here is the n-th ``gift`` fence token there.

Question ids, unique within a lesson (a duplicate is refused):

- a question with a ``::title::`` takes the title as a slug: ``::Mean vs. median::`` is
  ``mean-vs-median`` (letters of every script are kept, so ``::Середнє::`` is ``середнє``);
- one without takes ``q<n>``, its position in the lesson (1-based, counting every question of
  every block in order). Inserting a question before it changes it: give it a title to keep
  its id (and its learners' attempts) across versions.

The id is local to the lesson: an answer is recorded as (lesson path, id), the ``lesson`` and
``question`` of a viewer event; :func:`global_id` joins the two where one string is needed.

Bounds: a lesson over :data:`MAX_MARKDOWN_BYTES` holds no exercises (its ``gift`` blocks stay
code, and the publish check passes it by); a block is at most
:data:`~satchel.content.gift.MAX_BLOCK_CHARS`, a lesson at most
:data:`~satchel.content.gift.MAX_QUESTIONS` questions, a question at most
:data:`~satchel.content.gift.MAX_ANSWERS` answers.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace

from markdown_it import MarkdownIt

from .errors import FormatError
from .gift import MAX_QUESTIONS, Question, parse_gift

MAX_MARKDOWN_BYTES = 1024 * 1024  # bounds the block parse (bench/exercises.py)
MAX_ID_CHARS = 64
LESSON_SUFFIXES = (".md", ".markdown")

# Block structure only: inline parsing is the viewer's business and costs 4x more.
_md = MarkdownIt("commonmark").disable(["inline", "text_join"])
_MAYBE = re.compile(r"(```|~~~)[ \t]*gift", re.I)  # cheap: most lessons have no block at all
_CLOSER = re.compile(r"[ \t>]*(`{3,}|~{3,})[ \t]*")
_NOT_WORD = re.compile(r"[^\w]+")


@dataclass(frozen=True, slots=True)
class GiftBlock:
    """One ```` ```gift ```` block of a lesson: where it opens and its questions."""

    index: int  # 0-based among the lesson's gift blocks
    line: int  # 1-based line of the opening fence
    questions: tuple[Question, ...]


def is_gift_fence(info: str) -> bool:
    """Whether a fenced block's info string (markdown-it's ``token.info``) marks GIFT."""
    words = info.split(maxsplit=1)
    return bool(words) and words[0].lower() == "gift"


def slug(title: str) -> str:
    """An id from a title: NFKC, case-folded, runs of non-letters as one '-'; may be ''."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    return _NOT_WORD.sub("-", folded).strip("-_")[:MAX_ID_CHARS].rstrip("-_")


def global_id(lesson_path: str, question_id: str) -> str:
    """One string for a question in a bundle: ``lesson/path.md#id``."""
    return f"{lesson_path}#{question_id}"


def _closed(lines: list[str], start: int, end: int, markup: str) -> bool:
    """Whether the fence opened at line ``start`` ends with its own closing line."""
    if end - 1 <= start or end > len(lines):
        return False
    m = _CLOSER.fullmatch(lines[end - 1])
    return m is not None and m.group(1)[0] == markup[0] and len(m.group(1)) >= len(markup)


def gift_blocks(text: str, lesson_path: str) -> list[GiftBlock]:
    """The gift blocks of a Markdown lesson, their questions parsed and given ids.

    Raises FormatError naming ``lesson_path``, the line in the file and what is wrong.
    """
    where = lesson_path[:200]
    if len(text) > MAX_MARKDOWN_BYTES or not _MAYBE.search(text):
        return []
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    blocks: list[GiftBlock] = []
    count = 0
    seen: dict[str, int] = {}
    for token in _md.parse(text):
        if token.type != "fence" or not is_gift_fence(token.info) or token.map is None:
            continue
        start, end = token.map
        if not _closed(lines, start, end, token.markup):
            raise FormatError(
                f"{where}, line {start + 1}: the ```gift block is never closed;"
                f" end it with a line of {token.markup}"
            )
        found = parse_gift(
            token.content,
            where=where,
            first_line=start + 2,
            first_number=count + 1,
            limit=MAX_QUESTIONS - count,
        )
        if not found:
            raise FormatError(f"{where}, line {start + 1}: the ```gift block holds no question")
        questions = []
        for question in found:
            qid = slug(question.title) or question.id
            if qid in seen:
                raise FormatError(
                    f"{where}, line {question.line}: question id {qid!r} is already used on"
                    f" line {seen[qid]}; give this question a different ::title::"
                )
            seen[qid] = question.line
            questions.append(replace(question, id=qid))
        count += len(questions)
        blocks.append(GiftBlock(len(blocks), start + 1, tuple(questions)))
    return blocks


def questions_in_markdown(text: str, lesson_path: str) -> list[Question]:
    """Every question of a Markdown lesson, in order (see :func:`gift_blocks`)."""
    return [q for block in gift_blocks(text, lesson_path) for q in block.questions]


def check_lesson_exercises(path: str, data: bytes) -> None:
    """Raise FormatError if a Markdown lesson's gift blocks are malformed (what ``publish``
    runs on every ``.md`` file); other files, and lessons over the size bound, pass."""
    if not path.lower().endswith(LESSON_SUFFIXES) or len(data) > MAX_MARKDOWN_BYTES:
        return
    gift_blocks(data.decode("utf-8", "replace"), path)
