"""Exercises in lessons: ```gift blocks in Markdown (ids, lines, bounds), CNXML exercises,
the form markup, and the publish check."""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from satchel.content.errors import FormatError
from satchel.content.exercise_html import Labels, exercise_html, question_html
from satchel.content.exercises import (
    MAX_MARKDOWN_BYTES,
    check_lesson_exercises,
    gift_blocks,
    global_id,
    is_gift_fence,
    questions_in_markdown,
    slug,
)
from satchel.content.gift import MAX_ANSWERS, MAX_BLOCK_CHARS, MAX_QUESTIONS, parse_gift
from satchel.content.render_cnxml import Exercise, Target, exercises_in_cnxml, render_cnxml
from satchel.content.scoring import MAX_ESSAY_CHARS, MAX_RESPONSE_CHARS
from satchel.server.repository import Repository

from harness.paths import CORPUS, REPO
from harness.repo import publish, write_tree

LESSON = """# Capitals and means

Some text, then a block.

```gift
// a comment line
::Capital:: Capital of Ukraine? {=Київ =Kyiv}

Which is prime? {=3 ~4 ~6}
```

- In a list item:

  ~~~gift
  ::Середнє значення:: The mean of 1, 2, 3? {#2}
  ~~~

> ```gift
> Describe your town. {}
> ```

```python
not = {"a gift": block}
```
"""


# -- Markdown blocks -----------------------------------------------------------------------------
def test_questions_ids_and_lines_in_a_lesson() -> None:
    questions = questions_in_markdown(LESSON, "unit1/lesson.md")
    assert [(q.id, q.kind, q.line) for q in questions] == [
        ("capital", "short_answer", 7),
        ("q2", "multiple_choice", 9),
        ("середнє-значення", "numeric", 15),
        ("q4", "essay", 19),
    ]
    blocks = gift_blocks(LESSON, "unit1/lesson.md")
    assert [(b.index, b.line, len(b.questions)) for b in blocks] == [
        (0, 5, 2),
        (1, 14, 1),
        (2, 18, 1),
    ]
    assert global_id("unit1/lesson.md", "q2") == "unit1/lesson.md#q2"


def test_ids_are_stable_slugs() -> None:
    assert slug("Mean vs. Median (2)") == "mean-vs-median-2"
    assert slug("  Ünïcode  ＦＵＬＬ width ") == "ünïcode-full-width"
    assert slug("!!!") == ""
    assert slug("x" * 200) == "x" * 64
    text = "```gift\n::!!!:: Q {T}\n```\n"
    assert questions_in_markdown(text, "a.md")[0].id == "q1"  # an empty slug: positional


def test_fence_info_and_what_is_not_a_block() -> None:
    assert is_gift_fence("gift") and is_gift_fence(" GIFT extra") and not is_gift_fence("")
    assert not is_gift_fence("gifted")
    nested = "````markdown\n```gift\nQ {\n```\n````\n"  # an example of GIFT, shown as code
    assert questions_in_markdown(nested, "a.md") == []
    indented = "Text\n\n    ```gift\n    Q {\n    ```\n"  # an indented code block
    assert questions_in_markdown(indented, "a.md") == []
    assert questions_in_markdown("No exercises here.", "a.md") == []


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("# L\n\n```gift\nQ? {=a ~b\n```\n", "lessons/l.md, line 4: the answer block { is never"),
        ("# L\n\n```gift\nQ? {T}\n\nQ2 {#x}\n```\n", "lessons/l.md, line 6: numeric answer 'x'"),
        ("# L\n\n```gift\nQ? {T}\n", "lessons/l.md, line 3: the ```gift block is never closed"),
        ("> ```gift\n> Q? {T}\n\nafter\n", "lessons/l.md, line 1: the ```gift block is never"),
        ("```gift\n// only a comment\n```\n", "lessons/l.md, line 1: the ```gift block holds no"),
        (
            "```gift\n::Same:: a {T}\n```\n\n```gift\n::same:: b {F}\n```\n",
            "lessons/l.md, line 6: question id 'same' is already used on line 2",
        ),
        (
            "```gift\n::Q2:: a {T}\n\nb {F}\n```\n",
            "lessons/l.md, line 4: question id 'q2' is already used on line 2",
        ),
        ("```gift\n" + "x" * 70_000 + "\n```\n", "lessons/l.md, line 2: a block of questions"),
    ],
)
def test_malformed_blocks_name_file_and_line(text: str, what: str) -> None:
    with pytest.raises(FormatError) as err:
        questions_in_markdown(text, "lessons/l.md")
    assert str(err.value).startswith(what), str(err.value)
    with pytest.raises(FormatError):
        check_lesson_exercises("lessons/l.md", text.encode())


def test_questions_per_lesson_are_bounded() -> None:
    block = "```gift\n" + "\n\n".join(f"Q{n} {{T}}" for n in range(100)) + "\n```\n\n"
    assert len(questions_in_markdown(block * 2, "a.md")) == MAX_QUESTIONS
    with pytest.raises(FormatError, match=f"over {MAX_QUESTIONS} questions in one lesson"):
        questions_in_markdown(block * 2 + "```gift\nOne more {T}\n```\n", "a.md")


def test_oversized_lessons_hold_no_exercises() -> None:
    filler = "Just text.\n" * (MAX_MARKDOWN_BYTES // 11 + 1)
    big = "```gift\nQ? {=a ~b\n```\n" + filler
    assert len(big) > MAX_MARKDOWN_BYTES
    assert questions_in_markdown(big, "a.md") == []
    check_lesson_exercises("a.md", big.encode())  # passes: its block stays code


def test_hostile_markdown() -> None:
    nul = "```gift\nQ\x00? {=a\x00 ~b}\n```\n"
    (q,) = questions_in_markdown(nul, "a.md")  # markdown-it turns NUL into U+FFFD
    assert q.text == "Q\ufffd?"
    quoted = "> " * 5 + "```gift\n" + "> " * 5 + "Q {T}\n" + "> " * 5 + "```\n"
    assert [q.kind for q in questions_in_markdown(quoted, "a.md")] == ["true_false"]
    # Past markdown-it's nesting limit a fence is not a block, for the viewer either.
    assert questions_in_markdown(quoted.replace("> " * 5, "> " * 5000), "a.md") == []
    braces = "```gift\nQ " + "{" * 30_000 + "}" * 30_000 + "\n```\n"
    with pytest.raises(FormatError, match=r"line 2: a \{ inside"):
        questions_in_markdown(braces, "a.md")
    check_lesson_exercises("a.md", b"```gift\nQ? {=\xff\xfe ~b}\n```\n")  # bad UTF-8: replaced
    check_lesson_exercises("a.html", b"```gift\nQ? {\n```\n")  # not a Markdown lesson


def test_docs_example_and_limits_match_the_code() -> None:
    doc = (REPO / "docs" / "viewer.md").read_text("utf-8")
    example = re.search(r"````markdown\n(.*?)````", doc, re.S)
    assert example is not None
    found = questions_in_markdown(example.group(1), "docs/viewer.md")
    assert [(q.id, q.kind) for q in found] == [
        ("capital", "multiple_choice"),
        ("q2", "short_answer"),
        ("q3", "numeric"),
    ]
    for row in (
        f"| {MAX_MARKDOWN_BYTES // 2**20} MiB |",
        f"| one `gift` block | {MAX_BLOCK_CHARS:,} characters |",
        f"| questions in one lesson | {MAX_QUESTIONS} |",
        f"| answers in one question | {MAX_ANSWERS} |",
        f"| response (essay) | {MAX_RESPONSE_CHARS:,} characters ({MAX_ESSAY_CHARS:,}) |",
    ):
        assert row in doc


# -- form markup ---------------------------------------------------------------------------------
class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(markup: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(markup)
    return parser.tags


FORMS = """::Pick:: Choose <b>one</b>: {=a<script> ~b & c}

Grant is {T#Wrong.#Right.}

Which are even? {~%50%2 ~%50%4 ~%-100%3}

Two plus {=two =2} equals four.

Pi? {#3.14:0.01}

Explain. {}

Read this first."""


def test_every_input_has_a_label_and_the_form_is_accessible() -> None:
    for q in parse_gift(FORMS):
        markup = question_html(q, lesson="unit/l.md")
        found = tags(markup)
        ids = [a["id"] for _, a in found if a.get("id")]
        assert len(ids) == len(set(ids)), markup
        if q.kind == "description":
            assert [t for t, _ in found] == ["div"]
            continue
        form = found[0]
        assert form[0] == "form"
        assert (form[1]["data-question"], form[1]["data-kind"], form[1]["data-lesson"]) == (
            q.id,
            q.kind,
            "unit/l.md",
        )
        inputs = [a for t, a in found if t in ("input", "textarea")]
        labelled = {a["for"] for t, a in found if t == "label"}
        assert inputs and all(a["id"] in labelled for a in inputs)
        assert all(a["name"] == "answer" for a in inputs)
        kinds = {a.get("type") for a in inputs}
        expected = {
            "multiple_choice": {"radio"},
            "true_false": {"radio"},
            "multiple_answers": {"checkbox"},
            "short_answer": {"text"},
            "numeric": {"text"},
            "essay": {None},
        }[q.kind]
        assert kinds == expected
        if q.kind in ("multiple_choice", "true_false", "multiple_answers"):
            assert "<fieldset><legend>" in markup
        assert ("button", {"type": "submit"}) in found
        assert any(a.get("aria-live") == "polite" for _, a in found)
        assert not any(k.startswith("on") or k == "style" for _, a in found for k in a)
        assert "<script" not in markup and "<b>" not in markup


@given(st.text(max_size=80))
def test_slugs_never_hold_the_id_separator(title: str) -> None:
    assert "--" not in slug(title)


def test_ids_of_questions_on_one_page_do_not_clash() -> None:
    text = "```gift\n::Q1:: a {~x =y}\n\n::Q1 0:: b {~x =y}\n\n::Q1 answer:: {=z}\n```\n"
    page = "".join(question_html(q) for q in questions_in_markdown(text, "a.md"))
    ids = [a["id"] for _, a in tags(page) if a.get("id")]
    assert (
        len(ids) == len(set(ids)) == 12
    )  # 4 per question: form, 2 inputs or prompt+input, feedback


def test_text_is_escaped_and_markdown_goes_through_the_callers_renderer() -> None:
    (q,) = parse_gift("[markdown]Is **this** <i>bold</i>? {T}")
    plain = question_html(q)
    assert "**this** &lt;i&gt;bold&lt;/i&gt;?" in plain
    rendered = question_html(q, render_markdown=lambda s: f"<span>{s.upper()}</span>")
    assert "<span>IS **THIS** <I>BOLD</I>?</span>" in rendered
    (h,) = parse_gift("[html]<img src=x onerror=alert(1)> {T}")
    assert "<img" not in question_html(h, render_markdown=lambda s: s)  # html: always escaped
    (m,) = parse_gift("Grant is {~buried =entombed} in Grant's tomb.")
    assert "Grant is <span" in question_html(m) and "in Grant&#x27;s tomb." in question_html(m)
    words = Labels(check="Перевірити", true="Так", false="Ні")
    tf = question_html(parse_gift("Q {T}")[0], labels=words)
    assert "Перевірити" in tf and ">Так</label>" in tf


# -- CNXML ---------------------------------------------------------------------------------------
MODULE = b"""<document xmlns="http://cnx.rice.edu/cnxml" xmlns:m="http://www.w3.org/1998/Math/MathML">
<title>Sampling</title><content>
<para id="intro">Read <link url="http://example.org/x">this</link>.</para>
<exercise id="ex-one"><problem id="p1"><para>What is <m:math><m:mn>2</m:mn></m:math>?
<image src="../../media/fig.jpg" alt="figure"/></para></problem>
<solution id="s1"><para>Two, <emphasis effect="italics">exactly</emphasis>.</para></solution>
</exercise>
<note><exercise><problem><para>No id, no solution. &lt;script&gt;x&lt;/script&gt;</para></problem>
</exercise></note>
<exercise id="ex-one"><problem><para>A repeated id.</para></problem>
<solution><para>First.</para></solution><solution><para>Second.</para></solution></exercise>
<exercise id="bad id!"><problem><para>An id that is not one.</para></problem></exercise>
</content></document>"""


def resolve(ref: str, kind: str) -> Target:
    return Target(None, external=ref.startswith("http")) if "://" in ref else Target("/f/" + ref)


def test_exercises_in_a_module() -> None:
    found = exercises_in_cnxml(MODULE, resolve)
    assert [(e.id, e.solution_html is not None) for e in found] == [
        ("ex-one", True),
        ("exercise-2", False),
        ("exercise-3", True),
        ("exercise-4", False),
    ]
    first = found[0]
    assert '<div id="p1" class="problem">' in first.problem_html
    assert (
        "<mn>2</mn>" in first.problem_html and 'src="/f/../../media/fig.jpg"' in first.problem_html
    )
    assert first.solution_html is not None and "<em>exactly</em>" in first.solution_html
    assert "&lt;script&gt;" in found[1].problem_html
    assert "First." in (found[2].solution_html or "") and "Second." in (
        found[2].solution_html or ""
    )


def test_render_hook_gets_the_same_exercises() -> None:
    seen: list[Exercise] = []

    def hook(exercise: Exercise) -> str:
        seen.append(exercise)
        return f"[exercise {exercise.id}]"

    page = render_cnxml(MODULE, resolve, exercise=hook)
    assert seen == exercises_in_cnxml(MODULE, resolve)
    assert "[exercise ex-one]" in page.html and "<details" not in page.html
    assert "[exercise exercise-2]" in page.html  # inside a note too
    default = render_cnxml(MODULE, resolve).html
    assert "<details" in default and "[exercise" not in default


def test_exercise_markup() -> None:
    first, second = exercises_in_cnxml(MODULE, resolve)[:2]
    markup = exercise_html(first, lesson="modules/m1/index.cnxml")
    found = tags(markup)
    assert ("details", {"class": "solution"}) in found
    form = next(a for t, a in found if t == "form")
    assert (form["data-question"], form["data-kind"], form["data-lesson"]) == (
        "ex-one",
        "self_assessment",
        "modules/m1/index.cnxml",
    )
    buttons = [a["value"] for t, a in found if t == "button"]
    assert buttons == ["got-it", "not-yet"]
    assert any(a.get("aria-live") == "polite" for _, a in found)
    assert "<form" not in exercise_html(second)  # nothing to check against


def test_malformed_modules_are_refused() -> None:
    for bad in (b"<!DOCTYPE x><document/>", b"<other/>", b"<document", b"\x00" * 10):
        with pytest.raises(FormatError):
            exercises_in_cnxml(bad, resolve)
    deep = b'<document xmlns="http://cnx.rice.edu/cnxml"><content>' + b"<section>" * 5000
    deep += b"<exercise><problem><para>deep</para></problem></exercise>" + b"</section>" * 5000
    deep += b"</content></document>"
    (only,) = exercises_in_cnxml(deep, resolve)
    assert "deep" in only.problem_html


needs_corpus = pytest.mark.skipif(
    not (CORPUS / "intro-stats" / "v2" / "modules").is_dir(),
    reason=f"shared corpus not found at {CORPUS} (needs intro-stats/v2)",
)


@pytest.mark.corpus
@needs_corpus
def test_every_exercise_of_the_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    """Counted two ways: the parser, and a plain text search of the same bytes."""
    counts: dict[bytes, tuple[int, int]] = {}  # v2 and v3 share most modules: check each once
    exercises = solved = 0
    for module in sorted(CORPUS.glob("*/**/modules/*/index.cnxml")):
        data = module.read_bytes()
        key = hashlib.sha256(data).digest()
        if key not in counts:
            found = exercises_in_cnxml(data, lambda ref, kind: Target(None))
            text = re.sub(rb"<!--.*?-->", b"", data, flags=re.S)  # some solutions are comments
            spans = re.findall(rb"<exercise[\s>].*?</exercise>", text, re.S)
            assert len(found) == len(spans), module
            assert len({e.id for e in found}) == len(found), module
            with_solution = sum(1 for e in found if e.solution_html is not None)
            assert with_solution == sum(b"<solution" in s for s in spans), module
            assert all(e.problem_html.strip() for e in found), module
            counts[key] = (len(found), with_solution)
        exercises += counts[key][0]
        solved += counts[key][1]
    for lesson in sorted(CORPUS.glob("**/*.md")):
        check_lesson_exercises(lesson.name, lesson.read_bytes())  # no false alarms
    assert exercises > 0
    with capsys.disabled():
        print(f"\ncorpus: {exercises} CNXML exercises, {solved} with a solution")


# -- publish -------------------------------------------------------------------------------------
def test_publish_refuses_a_malformed_gift_block(repo: Repository, tmp_path: Path) -> None:
    files = {
        "index.md": b"# Course\n",
        "lessons/quiz.md": b"# Quiz\n\n```gift\n::Q1:: Fine? {T}\n\nBroken? {=a ~b\n```\n",
    }
    with pytest.raises(FormatError) as err:
        publish(repo, write_tree(tmp_path / "bad", files))
    assert str(err.value) == (
        "lessons/quiz.md, line 6: the answer block { is never closed with }"
        " (a blank line ends a question)"
    )
    files["lessons/quiz.md"] = files["lessons/quiz.md"].replace(b"~b\n", b"~b}\n")
    assert publish(repo, write_tree(tmp_path / "good", files)).version == 1  # none before
