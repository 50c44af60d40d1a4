"""Searchable text of lesson pages: Markdown, HTML and CNXML to title, headings and body."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from satchel.content.errors import FormatError
from satchel.content.render_cnxml import Target, render_cnxml
from satchel.content.render_markdown import markdown_title
from satchel.content.text import (
    MARK_END,
    MARK_START,
    MAX_BODY,
    MAX_HEADINGS,
    MAX_SOURCE_BYTES,
    MAX_TITLE,
    PageText,
    extract_text,
    kind_of,
    split_front_matter,
)

from harness.paths import CORPUS

KINDS = ("markdown", "html", "cnxml")


def test_kind_of_by_suffix() -> None:
    assert kind_of("episodes/01-intro.md") == "markdown"
    assert kind_of("a/B.MARKDOWN") == "markdown"
    assert kind_of("index.HTM") == "html"
    assert kind_of("p.xhtml") == "html"
    assert kind_of("modules/m1/index.cnxml") == "cnxml"
    assert kind_of("media/fig.png") is None
    assert kind_of("README") is None
    assert kind_of("collections/book.collection.xml") is None


# -- Markdown ---------------------------------------------------------------------------------
EPISODE = """---
title: "Pipes & Filters"
teaching: 25
---

:::::: objectives
- Explain the advantage of linking commands
::::::

## Sorting *files*

Use `sort -n` to sort &amp; count &eacute;l&egrave;ves. ![A pipe diagram](fig/pipe.svg)
Raw <b>HTML</b> shows as text.

```bash
wc -l *.pdb | sort -n
```

Setext heading
--------------
Last words.
"""


def test_markdown_front_matter_title_headings_body_and_code() -> None:
    text = extract_text(EPISODE.encode(), "markdown")
    assert text.title == "Pipes & Filters"
    assert text.headings == "Sorting files\nSetext heading"
    body = text.body
    assert "sort -n" in body and "& count élèves" in body  # entities decoded
    assert "A pipe diagram" in body  # an image's alt text
    assert "wc -l *.pdb | sort -n" in body  # code blocks are searchable
    assert "Raw <b>HTML</b> shows as text." in body  # the viewer shows it as text
    assert "Sorting" not in body and "Setext" not in body  # headings are their own column
    assert ":::" not in body and "objectives" not in body  # fenced-div markers are not text
    assert "teaching" not in body  # front matter is not text


def test_gift_blocks_give_their_questions_but_never_their_answers() -> None:
    """A search must not give an exercise away: stems and offered choices are text, accepted
    answers, the right choice's mark and feedback are not; a broken block gives nothing."""
    lesson = (
        "# Beans\n\nCount them.\n\n```gift\n"
        "::Tens:: Three groups of ten and four ones make how many beans? {#34}\n\n"
        "::Capital:: The capital of France is {=Lutetia-Parisiorum =Paris}\n\n"
        "::Pick:: Which is a fruit? {=Mango#Right, it grows on trees ~Carrot#A root, sorry}\n\n"
        "::Fact:: Beans are seeds. {TRUE#Yes indeed#Not so}\n"
        "```\n\n```gift\n::Broken:: Unclosed {=Zanzibar\n```\n"
    )
    body = extract_text(lesson.encode(), "markdown").body
    assert "how many beans" in body and "Tens" in body and "The capital of France" in body
    assert "Mango" in body and "Carrot" in body  # the choices the learner is shown
    for secret in ("34", "Paris", "Lutetia", "Right, it grows", "root, sorry", "TRUE",
                   "indeed", "Not so", "Zanzibar", "{", "="):  # fmt: skip
        assert secret not in body, secret


def test_markdown_title_is_the_first_heading_without_front_matter() -> None:
    text = extract_text("Intro line\n\n# Їжак і лисиця\n\n## Частина\n".encode(), "markdown")
    assert text.title == "Їжак і лисиця"
    assert text.headings == "Їжак і лисиця\nЧастина"
    assert split_front_matter("no front matter") == (None, "no front matter")
    assert split_front_matter("---\nlayout: x\n---\nbody") == (None, "body")


# -- HTML -------------------------------------------------------------------------------------
PAGE = b"""<!doctype html><html><head><title>Sampling &amp; Data</title>
<style>body { color: red }</style><script>var s = "<p>not text</p>";</script>
<meta name="description" content="meta text"></head>
<body><nav>Menu</nav><h1>Chapter <em>one</em></h1>
<p>Hello&nbsp;w<b>or</b>ld<br>next&#x21; <img src="a.png" alt="a blue chart"></p>
<template><p>template text</p></template><noscript>enable js</noscript>
<svg><text>svg label</text></svg><h2>Second</h2><div>tail &lt;tag&gt;</div></body></html>"""


def test_html_drops_markup_scripts_and_styles_and_decodes_entities() -> None:
    text = extract_text(PAGE, "html")
    assert text.title == "Sampling & Data"
    assert text.headings == "Chapter one\nSecond"
    assert text.body == "Menu Hello world next! a blue chart tail <tag>"
    for hidden in ("color", "not text", "meta text", "template text", "enable js", "svg label"):
        assert hidden not in text.body


def test_html_without_title_takes_its_first_heading_and_survives_broken_markup() -> None:
    text = extract_text(b"<h2>Only <i>heading</i><p>unclosed <b>bold <div>more", "html")
    assert text.title == "Only heading"
    assert "unclosed bold" in text.body and "more" in text.body
    # An unclosed <script> hides the rest (as in a browser), and never raises.
    assert extract_text(b"<p>before<script>x = 1; <p>inside", "html").body == "before"
    # A stray end tag inside a skipped element does not end the skipping early.
    assert "x" not in extract_text(b"<style></span>x{}</style><p>ok</p>", "html").body


def test_html_encodings() -> None:
    cyrillic = "<title>Кыргызча</title><p>Өнөр жана билим</p>"
    declared = f'<meta charset="windows-1251">{cyrillic}'.replace("Ө", "О").replace("ө", "о")
    assert extract_text(declared.encode("cp1251"), "html").title == "Кыргызча"
    assert extract_text(b"\xef\xbb\xbf" + cyrillic.encode(), "html").title == "Кыргызча"
    assert extract_text(cyrillic.encode("utf-16"), "html").body == "Өнөр жана билим"
    # Undeclared bytes that are not UTF-8: replaced, never an exception.
    assert extract_text(b"<p>caf\xe9</p>", "html").body == "caf\ufffd"


# -- CNXML ------------------------------------------------------------------------------------
MODULE = b"""<document xmlns="http://cnx.rice.edu/cnxml" xmlns:m="http://www.w3.org/1998/Math/MathML">
  <title>Sampling &amp; Data</title>
  <metadata xmlns:md="http://cnx.rice.edu/mdml"><md:title>metadata title</md:title>
    <md:abstract>metadata abstract</md:abstract></metadata>
  <content>
    <para id="p1">Statistics is about <emphasis effect="italics">da</emphasis>ta and
      <term>samples</term>.<newline/>Second line.</para>
    <section id="s1"><title>Key Terms</title>
      <para>A half is <m:math><m:mfrac><m:mn>1</m:mn><m:mn>2</m:mn></m:mfrac></m:math> here.</para>
      <figure id="f"><title>Figure title</title><caption>A chart caption.</caption></figure>
      <list><item>first</item><item>second</item></list>
    </section>
  </content>
  <glossary><definition><term>Datum</term><meaning>One value.</meaning></definition></glossary>
</document>"""


def test_cnxml_title_headings_body_without_math_or_metadata() -> None:
    text = extract_text(MODULE, "cnxml")
    assert text.title == "Sampling & Data"
    assert text.headings == "Key Terms\nFigure title"
    assert text.body == (
        "Statistics is about data and samples. Second line. A half is here."
        " A chart caption. first second Datum One value."
    )
    assert "metadata" not in text.body and "1 2" not in text.body


def test_cnxml_with_entities_is_read_as_tag_soup_without_expanding_them() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b'<document xmlns="http://cnx.rice.edu/cnxml"><title>T</title>'
        b"<content><para>&b;&b;&b; real words</para></content></document>"
    )
    text = extract_text(bomb, "cnxml")
    assert "real words" in text.body
    assert "aaaaaaaaaa" not in text.body.replace('"aaaaaaaaaa"', "")  # never expanded
    assert len(text.body) < 200


def test_truncated_and_foreign_cnxml_still_give_their_words() -> None:
    truncated = MODULE[: MODULE.index(b"Second line")]
    assert "Statistics is about" in extract_text(truncated, "cnxml").body
    other = b"<html><title>Not a module</title><p>words</p></html>"
    assert extract_text(other, "cnxml") == PageText("Not a module", "", "words")


# -- bounds and hostile input -----------------------------------------------------------------
def test_oversized_input_gives_no_text_and_parts_are_capped() -> None:
    assert extract_text(b"<p>x</p>" + b" " * MAX_SOURCE_BYTES, "html") == PageText()
    huge = "# " + "T" * 5000 + "\n\n" + ("## head\n\n" + "word " * 50 + "\n\n") * 3000
    text = extract_text(huge.encode(), "markdown")
    assert len(text.title) == MAX_TITLE
    assert len(text.headings) <= MAX_HEADINGS and len(text.body) <= MAX_BODY
    assert len(text.body) > MAX_BODY - 10  # filled up to the cap, not dropped


def test_a_heading_of_many_pieces_is_capped_without_rescanning_them() -> None:
    page = b"<h1>" + b"<b>x</b>" * 200_000 + b"</h1><p>after</p>"  # 200,000 pieces
    text = extract_text(page, "html")
    assert MAX_HEADINGS - 1 <= len(text.headings) <= MAX_HEADINGS and text.body == "after"


def test_marks_and_control_characters_never_reach_the_text() -> None:
    forged = f"<title>a{MARK_START}b</title><p>x{MARK_END}y\x00z\x1b</p>".encode()
    text = extract_text(forged, "html")
    assert text == PageText("ab", "", "xyz")


def test_hostile_html_is_read_without_expanding_or_fetching_anything() -> None:
    deep = extract_text(b"<div>" * 200_000 + b"deep words" + b"</div>" * 200_000, "html")
    assert deep.body == "deep words"
    # Entities a DOCTYPE declares, internal (a billion laughs) or external (a file), stay text.
    laughs = b"<!DOCTYPE html [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;&a;&a;'>]><p>&b;&b;</p>"
    assert "aaaa" not in extract_text(laughs, "html").body
    xxe = b"<!DOCTYPE html [<!ENTITY x SYSTEM 'file:///etc/hostname'>]><p>&x;</p>"
    assert extract_text(xxe, "html").body.endswith("&x;")
    # Processing instructions and CDATA sections are not a page's words.
    assert extract_text(b"<?php evil ?><p><![CDATA[hidden]]>shown</p>", "html").body == "shown"


def test_unknown_kind_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="no text extractor"):
        extract_text(b"x", "pdf")  # type: ignore[arg-type]


@given(st.binary(max_size=3000), st.sampled_from(KINDS))
def test_any_bytes_give_bounded_text_without_raising(data: bytes, kind: str) -> None:
    text = extract_text(data, kind)  # type: ignore[arg-type]
    assert len(text.title) <= MAX_TITLE and len(text.body) <= MAX_BODY
    assert MARK_START not in text.body + text.title + text.headings


@given(st.text(max_size=2000), st.sampled_from(KINDS))
def test_any_text_gives_bounded_text_without_raising(source: str, kind: str) -> None:
    text = extract_text(source.encode("utf-8", "surrogatepass"), kind)  # type: ignore[arg-type]
    assert "\x00" not in text.body


# -- the real corpus --------------------------------------------------------------------------
@pytest.mark.corpus
@pytest.mark.skipif(
    not (CORPUS / "intro-stats" / "v2").is_dir() or not (CORPUS / "shell-novice" / "v2").is_dir(),
    reason=f"shared corpus not found at {CORPUS} (needs intro-stats/v2, shell-novice/v2)",
)
def test_corpus_titles_agree_with_the_viewer() -> None:
    """Every module's title is the one the viewer renders; every episode's the one it shows."""
    modules = sorted((CORPUS / "intro-stats" / "v2" / "modules").glob("*/index.cnxml"))
    assert len(modules) == 102
    for path in modules:
        data = path.read_bytes()
        text = extract_text(data, "cnxml")
        assert text.title == render_cnxml(data, lambda _ref, _kind: Target(None)).title, path
        assert len(text.body) > 100 and "<" not in text.title
    episodes = sorted((CORPUS / "shell-novice" / "v2" / "episodes").glob("*.md"))
    assert len(episodes) >= 7
    for path in episodes:
        source = path.read_text("utf-8")
        assert extract_text(source.encode(), "markdown").title == markdown_title(source), path
