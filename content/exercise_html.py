"""Accessible form markup for exercises: GIFT questions and CNXML self-assessments.

One ``<form>`` per question, usable with the keyboard alone and with a screen reader:
choices in a ``<fieldset>`` whose ``<legend>`` is the question, a real ``<label for>`` on every
input, radio buttons for one answer (multiple choice, true/false), checkboxes for several,
a text input for short and numeric answers (``inputmode="decimal"``, not ``type="number"``,
so "3,5" can be typed and is kept as typed), a submit button and an ``aria-live="polite"``
region for the feedback.

There is no script, style or event attribute here (the viewer's CSP forbids inline script).
The viewer's own external script submits a form, reading ``data-question``, ``data-kind`` and
``data-lesson`` from it and the ``answer`` field(s) (checkboxes joined with commas; for a
self-assessment, the value of the button pressed, ``event.submitter``), and puts the result's
feedback into the ``[aria-live]`` region. Every text is escaped. Question text in
``[markdown]`` format is rendered by the caller's ``render_markdown`` (safe, *inline* HTML: it
goes inside ``<legend>`` and ``<label>``), or shown escaped when none is given, so this module
stays free of a Markdown configuration; ``[html]`` text is shown escaped, never as markup
(the rule for raw HTML in Markdown lessons too). Interface words come from :class:`Labels`.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from .gift import Question, TextFormat
from .render_cnxml import Exercise
from .scoring import MAX_ESSAY_CHARS, MAX_RESPONSE_CHARS

TextRenderer = Callable[[str], str]
"""GIFT text in Markdown -> safe inline HTML (the viewer's markdown-it with ``html: False``)."""


@dataclass(frozen=True, slots=True)
class Labels:
    """The words of the forms, for a viewer that speaks another language."""

    answer: str = "Your answer"
    check: str = "Check"
    true: str = "True"
    false: str = "False"
    blank: str = "blank"
    choose_all: str = "(choose all that apply)"
    solution: str = "Check your answer"
    self_check: str = "Did you get it right?"
    got_it: str = "I got it"
    not_yet: str = "Not yet"


DEFAULT_LABELS = Labels()


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _text(text: str, fmt: TextFormat, render: TextRenderer | None) -> str:
    if fmt == "markdown" and render is not None:
        return render(text)
    return _e(text).replace("\n", "<br>")


def _form_open(qid: str, kind: str, lesson: str, css: str) -> str:
    attrs = f' data-lesson="{_e(lesson)}"' if lesson else ""
    return (
        f'<form class="{css}" id="gift-{_e(qid)}" data-question="{_e(qid)}"'
        f' data-kind="{_e(kind)}"{attrs} method="post">'
    )


def _form_close(fid: str, submit: str) -> str:
    return (
        f'<button type="submit">{_e(submit)}</button>'
        f'<div class="exercise-feedback" id="{fid}--feedback" role="status" aria-live="polite">'
        "</div></form>"
    )


def question_html(
    question: Question,
    *,
    lesson: str = "",
    render_markdown: TextRenderer | None = None,
    labels: Labels = DEFAULT_LABELS,
) -> str:
    """The HTML of one question: a form, or a plain block for a description.

    Element ids are ``gift-<id>`` and ``gift-<id>--<part>``: a slug never holds ``--``, so two
    questions of a page cannot clash.
    """
    q = question
    fid = f"gift-{_e(q.id)}"

    def text(value: str) -> str:
        return _text(value, q.format, render_markdown)

    if q.kind == "description":
        return (
            f'<div class="gift-description" id="{fid}" data-question="{_e(q.id)}">'
            f"{text(q.text)}</div>"
        )
    prompt = text(q.text)
    if q.missing_word:
        prompt += (
            ' <span class="gift-blank" aria-hidden="true">_____</span>'
            f'<span class="visually-hidden">{_e(labels.blank)}</span> {text(q.text_after)}'
        )
    out = [_form_open(q.id, q.kind, lesson, "gift")]
    if q.kind in ("multiple_choice", "true_false", "multiple_answers"):
        if q.kind == "true_false":
            options = [("true", _e(labels.true)), ("false", _e(labels.false))]
        else:
            options = [(str(n), text(c.text)) for n, c in enumerate(q.choices)]
        kind = "checkbox" if q.kind == "multiple_answers" else "radio"
        hint = ""
        if kind == "checkbox":
            hint = f' <span class="gift-hint">{_e(labels.choose_all)}</span>'
        out.append(f"<fieldset><legend>{prompt}{hint}</legend>")
        for value, label in options:
            iid = f"{fid}--{value}"
            out.append(
                f'<div class="gift-choice"><input type="{kind}" name="answer" id="{iid}"'
                f' value="{value}"> <label for="{iid}">{label}</label></div>'
            )
        out.append("</fieldset>")
    else:
        out.append(f'<p class="gift-prompt" id="{fid}--prompt">{prompt}</p>')
        iid = f"{fid}--answer"
        out.append(f'<label for="{iid}">{_e(labels.answer)}</label> ')
        common = f'name="answer" id="{iid}" aria-describedby="{fid}--prompt"'
        if q.kind == "essay":
            out.append(f'<textarea {common} rows="6" maxlength="{MAX_ESSAY_CHARS}"></textarea>')
        else:
            mode = ' inputmode="decimal"' if q.kind == "numeric" else ""
            out.append(
                f'<input type="text" {common}{mode} maxlength="{MAX_RESPONSE_CHARS}"'
                ' autocomplete="off">'
            )
    out.append(_form_close(fid, labels.check))
    return "".join(out)


def exercise_html(exercise: Exercise, *, lesson: str = "", labels: Labels = DEFAULT_LABELS) -> str:
    """A CNXML exercise: its problem, then "check your answer" (the solution, folded) with a
    self-assessment form inside it; an exercise with no solution is shown as it is."""
    eid = _e(exercise.id)
    out = [f'<div class="exercise" id="{eid}">{exercise.problem_html}']
    if exercise.solution_html is not None:
        out.append(f'<details class="solution"><summary>{_e(labels.solution)}</summary>')
        out.append(exercise.solution_html)
        fid = f"self-{eid}"
        attrs = f' data-lesson="{_e(lesson)}"' if lesson else ""
        out.append(
            f'<form class="self-check" id="{fid}" data-question="{eid}"'
            f' data-kind="self_assessment"{attrs} method="post">'
            f"<fieldset><legend>{_e(labels.self_check)}</legend>"
            f'<button type="submit" name="answer" value="got-it">{_e(labels.got_it)}</button> '
            f'<button type="submit" name="answer" value="not-yet">{_e(labels.not_yet)}</button>'
            f'</fieldset><div class="exercise-feedback" id="{fid}--feedback" role="status"'
            ' aria-live="polite"></div></form></details>'
        )
    out.append("</div>")
    return "".join(out)
