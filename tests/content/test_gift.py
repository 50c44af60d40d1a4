"""GIFT questions: the parser against Moodle's documented examples, its errors, hostile
input, property tests (only FormatError; round trip through to_gift), and scoring."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from satchel.content.errors import FormatError
from satchel.content.gift import (
    MAX_ANSWERS,
    MAX_BLOCK_CHARS,
    Choice,
    NumericAnswer,
    Question,
    parse_gift,
    to_gift,
)
from satchel.content.scoring import (
    MAX_ESSAY_CHARS,
    MAX_RESPONSE_CHARS,
    Result,
    score,
    score_self_assessment,
)


def one(text: str) -> Question:
    questions = parse_gift(text)
    assert len(questions) == 1, questions
    return questions[0]


# -- golden: the examples of Moodle's GIFT documentation --------------------------------------
def test_multiple_choice() -> None:
    q = one("Who's buried in Grant's tomb?{~Grant ~Jefferson =no one}")
    assert q == Question(
        "q1",
        "",
        "multiple_choice",
        "Who's buried in Grant's tomb?",
        choices=(Choice("Grant", 0.0), Choice("Jefferson", 0.0), Choice("no one", 100.0)),
    )


def test_missing_word_keeps_the_text_on_both_sides() -> None:
    q = one("Grant is {~buried =entombed ~living} in Grant's tomb.")
    assert (q.kind, q.text, q.text_after) == ("multiple_choice", "Grant is", "in Grant's tomb.")
    assert q.missing_word
    assert [c.text for c in q.choices] == ["buried", "entombed", "living"]


def test_answers_on_their_own_lines() -> None:
    q = one(
        "The American holiday of Thanksgiving is celebrated on the {\n"
        "    ~second\n    ~third\n    =fourth\n} Thursday of November."
    )
    assert [(c.text, c.percent) for c in q.choices] == [
        ("second", 0.0),
        ("third", 0.0),
        ("fourth", 100.0),
    ]
    assert q.text_after == "Thursday of November."


def test_feedback_title_and_comments() -> None:
    q = one(
        "// multiple choice with specified feedback for right and wrong answers\n"
        "::Q2:: What's between orange and green in the spectrum?\n"
        "{ =yellow # right; good! ~red # wrong, it's yellow ~blue # wrong, it's yellow }"
    )
    assert (q.title, q.line) == ("Q2", 2)
    assert q.choices == (
        Choice("yellow", 100.0, "right; good!"),
        Choice("red", 0.0, "wrong, it's yellow"),
        Choice("blue", 0.0, "wrong, it's yellow"),
    )


def test_true_false_and_its_feedback() -> None:
    assert one("Grant was buried in a tomb in New York City.{T}").truth is True
    assert one("The sun rises in the West.{FALSE}").truth is False
    q = one("Grant is buried in Grant's tomb.{FALSE#No one is buried in Grant's tomb.}")
    # The first feedback is for a wrong answer (here: true), the second for the right one.
    assert (q.kind, q.truth, q.feedback_true, q.feedback_false) == (
        "true_false",
        False,
        "No one is buried in Grant's tomb.",
        "",
    )
    q = one("1+1=2 {TRUE#No, it is two.#Yes!}")
    assert (q.text, q.feedback_true, q.feedback_false) == ("1+1=2", "Yes!", "No, it is two.")


def test_short_answer() -> None:
    q = one("Who's buried in Grant's tomb?{=no one =nobody}")
    assert (q.kind, q.answers) == (
        "short_answer",
        (Choice("no one", 100.0), Choice("nobody", 100.0)),
    )
    q = one("Two plus two equals {=four =4}.")
    assert (q.text, q.text_after) == ("Two plus two equals", ".")


def test_numeric_forms() -> None:
    q = one("When was Ulysses S. Grant born?{#1822:5}")
    assert q.numeric == (NumericAnswer(Decimal(1822), Decimal(5)),)
    q = one("What is the value of pi (to 3 decimal places)? {#3.14159:0.0005}.")
    assert q.numeric[0].low == Decimal("3.14109") and q.text_after == "."
    q = one("What is a number from 1 to 5? {#1..5}")
    assert (q.numeric[0].value, q.numeric[0].tolerance) == (3, 2)
    assert (q.numeric[0].low, q.numeric[0].high) == (1, 5)
    q = one(
        "When was Ulysses S. Grant born? {#\n"
        "    =1822:0      # Correct! Full credit.\n"
        "    =%50%1822:2  # He was born in 1822. Half credit for being close.\n"
        "}"
    )
    assert q.numeric == (
        NumericAnswer(Decimal(1822), Decimal(0), 100.0, "Correct! Full credit."),
        NumericAnswer(
            Decimal(1822), Decimal(2), 50.0, "He was born in 1822. Half credit for being close."
        ),
    )
    q = one("How many sides has a triangle? {#3 ~#Count them again.}")
    assert (q.numeric[0].value, q.other_feedback) == (3, "Count them again.")


def test_weights_and_multiple_answers() -> None:
    q = one(
        "What two people are entombed in Grant's tomb? {\n"
        "   ~%-100%No one\n   ~%50%Grant\n   ~%50%Grant's wife\n   ~%-100%Grant's father\n}"
    )
    assert q.kind == "multiple_answers"
    assert [c.percent for c in q.choices] == [-100.0, 50.0, 50.0, -100.0]
    q = one("Which is a prime? {=3 ~%50%9 is not, but close ~4}")
    assert q.kind == "multiple_choice" and q.choices[1] == Choice("9 is not, but close", 50.0)
    q = one("Capital of France? {=Paris =%50%Lutetia#That is the Roman name.}")
    assert q.answers[1] == Choice("Lutetia", 50.0, "That is the Roman name.")


def test_essay_description_and_general_feedback() -> None:
    q = one("Write a short biography of Dag Hammarskjöld. {}")
    assert (q.kind, q.scored) == ("essay", False)
    q = one("You can use your pencil and paper for these next math questions.")
    assert (q.kind, q.text) == ("description", q.text)
    q = one("Is 2 prime? {T####Two is the only even prime.}")
    assert (q.kind, q.general_feedback) == ("true_false", "Two is the only even prime.")
    q = one("Explain. {####A model answer.}")
    assert (q.kind, q.general_feedback) == ("essay", "A model answer.")


def test_escapes_and_format_tags() -> None:
    q = one(
        "::GIFT Control Characters::\n"
        "Which of the following is NOT a control character for the GIFT import format? {\n"
        "   ~\\~     # \\~ is a control character.\n"
        "   ~\\=     # \\= is a control character.\n"
        "   ~\\#     # \\# is a control character.\n"
        "   ~\\{     # \\{ is a control character.\n"
        "   ~\\}     # \\} is a control character.\n"
        "   =\\\\     # Correct! \\\\ (backslash) is not a control character.\n"
        "}"
    )
    assert [c.text for c in q.choices] == ["~", "=", "#", "{", "}", "\\"]
    assert q.choices[0].feedback == "~ is a control character."
    q = one("Which answer equals 5? {~ \\= 2 + 2 = \\= 2 + 3 ~ \\= 2 + 4}")
    assert [c.text for c in q.choices] == ["= 2 + 2", "= 2 + 3", "= 2 + 4"]
    q = one("::Ti\\:tle::[markdown]Line one\\nline **two** at http://example.org {T}")
    assert (q.title, q.format) == ("Ti:tle", "markdown")
    assert q.text == "Line one\nline **two** at http://example.org"
    q = one("[html]<b>Bold</b> or not? {=[html]yes ~[plain]no}")
    assert (q.format, q.text, q.choices[0].text) == ("html", "<b>Bold</b> or not?", "yes")


def test_several_questions_categories_and_windows_line_ends() -> None:
    text = "$CATEGORY: $course$/Top\r\n\r\n::A:: one {T}\r\n\r\n// only a comment\r\n\r\ntwo {F}"
    qs = parse_gift(text, first_line=10)
    assert [(q.id, q.title, q.line) for q in qs] == [("q1", "A", 12), ("q2", "", 16)]


# -- errors: line and what is wrong ------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("Q?\n{=a ~b", 2, "never closed"),
        ("Q? =a ~b}", 1, "a } with no {"),
        ("Q? {=a {~b}}", 1, "a { inside an answer block"),
        ("Q? {=a ~b}\nand {T}", 2, "a second answer block"),
        ("::title without end {T}", 1, "not closed with ::"),
        ("Q? {~a ~b}", 1, "no correct answer"),
        ("Q? {~%100%a}", 1, "at least two answers"),
        ("Q? {~%50%a ~%30%b ~c}", 1, "add up to 80%"),
        ("Q? {~%150%a =b}", 1, "not a percentage from -100 to 100"),
        ("Q? {=a ~}", 1, "an empty answer"),
        ("Q? {answer}", 1, "unknown answer syntax 'answer'"),
        ("Q? {true}", 1, "in capitals"),
        ("Q? {=%50%half}", 1, "no answer is fully right"),
        ("Q? {#three}", 1, "is not a number"),
        ("Q? {#\n1:x}", 2, "is not a number"),
        ("Q? {#5..1}", 1, "ends below its start"),
        ("Q? {#3:-1}", 1, "negative"),
        ("Q? {#}", 1, "holds no number"),
        ("Q? {#1e999999}", 1, "is not a number"),
        ("Q? {#3 ~4}", 1, "only #feedback"),
        ("Match {=cat -> food =dog -> bone}", 1, "matching questions"),
        ("::" + "t" * 300 + ":: Q {T}", 1, "over 200 characters"),
    ],
)
def test_malformed_questions_name_the_line(text: str, line: int, what: str) -> None:
    with pytest.raises(FormatError) as err:
        parse_gift(text, where="lesson.md", first_line=1)
    message = str(err.value)
    assert message.startswith(f"lesson.md, line {line}: "), message
    assert what in message
    assert "\n" not in message


# -- hostile input -----------------------------------------------------------------------------
def test_oversized_block_is_refused_by_its_size() -> None:
    question = "Q? {=a ~b}\n\n"
    with pytest.raises(FormatError, match=f"over {MAX_BLOCK_CHARS:,} characters"):
        parse_gift(question * (10 * 1024 * 1024 // len(question)))  # 10 MB of good questions
    fits = question * 150
    assert len(fits) < MAX_BLOCK_CHARS and len(parse_gift(fits)) == 150


def test_deeply_nested_braces() -> None:
    with pytest.raises(FormatError, match=r"a \{ inside an answer block"):
        parse_gift("Q? " + "{" * 30_000 + "}" * 30_000)


def test_unterminated_escapes_and_nul_bytes() -> None:
    assert one("Q? \\").text == "Q? \\"
    with pytest.raises(FormatError, match="never closed"):
        parse_gift("Q? {=a\\}")  # the only } is escaped
    q = one("Q\x00? {=a\x00b ~c}")
    assert (q.text, q.choices[0].text) == ("Q\x00?", "a\x00b")


def test_ten_thousand_answers_are_refused() -> None:
    with pytest.raises(FormatError, match=f"over {MAX_ANSWERS} answers"):
        parse_gift("Q? {=a " + "~b " * 10_000 + "}")
    ok = one("Q? {=a " + "~b " * (MAX_ANSWERS - 1) + "}")
    assert len(ok.choices) == MAX_ANSWERS


def test_not_a_string() -> None:
    with pytest.raises(FormatError, match="must be a string"):
        parse_gift(b"Q? {T}")  # type: ignore[arg-type]


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from("{}~=#:%\\.-/[]abT F0123456789\n \t"), max_size=200))
def test_parser_raises_only_format_error_on_gift_like_text(text: str) -> None:
    try:
        questions = parse_gift(text)
    except FormatError as exc:
        assert "\n" not in str(exc)
        return
    for q in questions:
        assert (
            q.kind in ("description", "essay")
            or q.choices
            or q.answers
            or q.numeric
            or (q.truth is not None)
        )


@settings(max_examples=100)
@given(st.text(max_size=300))
def test_parser_raises_only_format_error_on_any_text(text: str) -> None:
    with contextlib.suppress(FormatError):
        parse_gift(text)


# -- round trip --------------------------------------------------------------------------------
_plain = (
    st.text(
        alphabet=st.characters(
            exclude_categories=("Cs", "Cc", "Zl", "Zp"), exclude_characters="%["
        ),
        min_size=1,
        max_size=20,
    )
    .map(lambda s: " ".join(s.split()))
    .filter(lambda s: bool(s) and not s.startswith("//"))
)
_optional = st.one_of(st.just(""), _plain)
_percent = st.integers(-100, 100).map(float)
_number = st.decimals(
    min_value=-(10**6), max_value=10**6, allow_nan=False, allow_infinity=False, places=3
)


@st.composite
def questions(draw: st.DrawFn) -> Question:
    kind = draw(
        st.sampled_from(
            [
                "multiple_choice",
                "multiple_answers",
                "true_false",
                "short_answer",
                "numeric",
                "essay",
                "description",
            ]
        )
    )
    base = Question(
        "q1",
        draw(_optional),
        kind,
        draw(_plain),
        text_after="" if kind == "description" else draw(_optional),
        format=draw(st.sampled_from(["moodle", "html", "markdown", "plain"])),
        general_feedback="" if kind == "description" else draw(_optional),
    )
    fields: dict[str, object] = {}
    if kind == "multiple_choice":
        wrong = draw(
            st.lists(
                st.tuples(_plain, _percent.filter(lambda p: p < 100), _optional),
                min_size=1,
                max_size=5,
            )
        )
        right = (draw(_plain), 100.0, draw(_optional))
        items = [right, *wrong] if draw(st.booleans()) else [*wrong, right]
        fields["choices"] = tuple(Choice(*c) for c in items)
    elif kind == "multiple_answers":
        n = draw(st.integers(2, 4))
        good = [100 // n] * n
        good[0] += 100 - sum(good)
        bad = draw(st.lists(st.integers(-100, 0), max_size=3))
        fields["choices"] = tuple(
            Choice(draw(_plain), float(p), draw(_optional)) for p in [*good, *bad]
        )
    elif kind == "true_false":
        fields.update(
            truth=draw(st.booleans()), feedback_true=draw(_optional), feedback_false=draw(_optional)
        )
    elif kind == "short_answer":
        extra = draw(
            st.lists(st.tuples(_plain, st.integers(0, 100).map(float), _optional), max_size=3)
        )
        fields["answers"] = (
            Choice(draw(_plain), 100.0, draw(_optional)),
            *(Choice(*a) for a in extra),
        )
    elif kind == "numeric":
        answers = [NumericAnswer(draw(_number), abs(draw(_number)), 100.0, draw(_optional))]
        for _ in range(draw(st.integers(0, 2))):
            answers.append(
                NumericAnswer(
                    draw(_number),
                    abs(draw(_number)),
                    float(draw(st.integers(0, 100))),
                    draw(_optional),
                )
            )
        fields.update(numeric=tuple(answers), other_feedback=draw(_optional))
    return replace(base, **fields)  # type: ignore[arg-type]


@settings(max_examples=200)
@given(questions())
def test_round_trip_through_gift_text(question: Question) -> None:
    written = to_gift(question)
    assert "\n" not in written
    (back,) = parse_gift(written)
    assert back == question, written


def test_round_trip_of_every_golden_example() -> None:
    texts = [
        "Who's buried in Grant's tomb?{~Grant ~Jefferson =no one}",
        "Grant is buried in Grant's tomb.{FALSE#No one is buried in Grant's tomb.}",
        "When was Ulysses S. Grant born? {#=1822:0#Yes =%50%1822:2#Close ~#No}",
        "What two people? {~%-100%No one ~%50%Grant ~%50%Grant's wife}",
        "::T\\:1::[markdown]A \\{b\\} {=a\\=b#c\\#d =%25%e####gen}",
        "Q? {#1..5}",
        "Write. {}",
        "Just text.",
    ]
    for text in texts:
        (q,) = parse_gift(text)
        assert parse_gift(to_gift(q)) == [q], text


# -- scoring -----------------------------------------------------------------------------------
MC = one(
    "Colour? {=yellow#Yes! ~red#No, red is not. ~%50%gold#Almost.####Between orange and green.}"
)


def test_score_multiple_choice() -> None:
    assert score(MC, "0") == Result(True, 1.0, "Yes!", "yellow", "Between orange and green.")
    assert score(MC, " 1 ") == Result(False, 0.0, "No, red is not.", "red", MC.general_feedback)
    partial = score(MC, "2")
    assert (partial.correct, partial.score, partial.feedback) == (False, 0.5, "Almost.")
    assert score(MC, "").correct is False  # nothing chosen: a wrong attempt
    for bad in ("3", "-1", "1.0", "yellow", "0,1", "9" * 50):
        with pytest.raises(FormatError, match="choice number from 0 to 2"):
            score(MC, bad)


def test_score_multiple_answers_partial_credit() -> None:
    q = one("Tomb? {~%-100%No one ~%50%Grant#Yes ~%50%Grant's wife#Yes ~Napoleon}")
    assert score(q, "1,2") == Result(True, 1.0, "Yes\nYes", "Grant; Grant's wife")
    assert score(q, "1").score == 0.5
    assert score(q, "0,1").score == 0.0  # negative credit, kept at 0
    everything = score(q, "1,2,3")
    assert (everything.score, everything.correct) == (1.0, False)  # 0% choice ticked too
    assert score(q, "").score == 0.0
    with pytest.raises(FormatError, match="twice"):
        score(q, "1,1")


def test_score_true_false() -> None:
    q = one("Grant is buried in Grant's tomb.{F#No one is.#Right.}")
    assert score(q, "false") == Result(True, 1.0, "Right.", "false")
    assert score(q, "TRUE") == Result(False, 0.0, "No one is.", "true")
    with pytest.raises(FormatError, match="'true' or 'false'"):
        score(q, "maybe")


def test_score_short_answer_ignores_case_space_and_unicode_form() -> None:
    q = one("Столиця України? {=Київ#Так! =%50%Kyiv#Англійською.}")
    assert score(q, "  КИЇВ ").correct is True
    assert score(q, "київ").feedback == "Так!"
    # "ї" written as і + combining diaeresis (NFD) is the same word.
    assert score(q, "Кии\u0308в".replace("и\u0308", "і\u0308")).correct is True
    assert score(q, "KYIV").score == 0.5
    assert score(q, "Львів") == Result(False, 0.0, "", "Львів")
    q = one("Two words? {=New   York}")
    assert score(q, "new york").correct is True
    q = one("German street? {=Straße}")
    assert score(q, "STRASSE").correct is True  # case folding, not lower()


@pytest.mark.parametrize(
    ("answer", "right"),
    [
        ("3.6", True),  # exactly at the edge: 3.6 - 3.5 is 0.1 in decimal, not in binary
        ("3.4", True),
        ("3,4", True),  # a decimal comma
        ("3.60000000000000000001", False),
        ("3.39999999999999999999", False),
        ("35e-1", True),
        ("+3.5", True),
        ("３.５", True),  # digits of another script (here full width) are digits
        ("three", False),
        ("3.5.1", False),
        ("1e999999", False),
        ("", False),
    ],
)
def test_score_numeric_tolerance_edges(answer: str, right: bool) -> None:
    q = one("Value? {#3.5:0.1}")
    assert score(q, answer).correct is right


def test_score_numeric_ranges_and_partial_credit() -> None:
    q = one("Born? {#=1822:0#Exactly. =%50%1822:2#Close. ~#Look it up.}")
    assert score(q, "1822") == Result(True, 1.0, "Exactly.", "1822")
    assert score(q, "1824") == Result(False, 0.5, "Close.", "1824")
    assert score(q, "1825") == Result(False, 0.0, "Look it up.", "1825")
    r = one("Between? {#1..5}")
    assert [score(r, x).correct for x in ("1", "5", "0.999", "5.001")] == [True, True, False, False]


def test_score_essay_and_description() -> None:
    q = one("Explain. {####Model answer.}")
    assert score(q, "Because.") == Result(None, 0.0, "", "Because.", "Model answer.")
    assert score(q, "x" * MAX_ESSAY_CHARS).correct is None
    with pytest.raises(FormatError, match="nothing to answer"):
        score(one("Read this."), "x")


@pytest.mark.parametrize("bad", [None, 3, ["0"], {"a": 1}, b"0", 1.5])
def test_responses_of_the_wrong_type_are_refused(bad: object) -> None:
    for q in (MC, one("Q? {T}"), one("Q? {=a}"), one("Q? {#1}"), one("Q? {}")):
        with pytest.raises(FormatError, match="must be a string"):
            score(q, bad)


def test_huge_and_broken_responses_are_refused() -> None:
    with pytest.raises(FormatError, match="over 1,000 characters"):
        score(one("Q? {=a}"), "a" * (MAX_RESPONSE_CHARS + 1))
    with pytest.raises(FormatError, match="over 20,000 characters"):
        score(one("Q? {}"), "a" * (MAX_ESSAY_CHARS + 1))
    with pytest.raises(FormatError, match="not valid Unicode"):
        score(one("Q? {=a}"), "\ud800")  # a lone surrogate, as json.loads can produce
    assert score(one("Q? {=a}"), "a\x00").correct is False


def test_self_assessment() -> None:
    assert score_self_assessment("ex1", "got-it") == Result(True, 1.0, "", "got-it")
    assert score_self_assessment("ex1", "not-yet").correct is False
    for bad in ("yes", None, 1):
        with pytest.raises(FormatError, match="'got-it' or 'not-yet'"):
            score_self_assessment("ex1", bad)
