"""A small synthetic course in two locales for the viewer tests: Markdown, CNXML with a
collection, a real PNG, a media file of many chunks, an HTML page, and hostile bits."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

from satchel.server.repository import Repository
from satchel.sync.local import LocalStore
from satchel.sync.updater import Updater

from harness.repo import RepoFetcher, publish, write_tree


def png(width: int, height: int, rgb: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    """A valid RGB PNG of one colour (browsers decode it; naturalWidth == width)."""

    def block(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + block(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + block(b"IDAT", zlib.compress(row * height))
        + block(b"IEND", b"")
    )


CNXML_M1 = """<document xmlns="http://cnx.rice.edu/cnxml" xmlns:m="http://www.w3.org/1998/Math/MathML">
  <title>Sampling &amp; Data</title>
  <metadata xmlns:md="http://cnx.rice.edu/mdml"><md:title>ignored</md:title></metadata>
  <content>
    <para id="p1">Statistics is about <emphasis effect="italics">data</emphasis> and
      <term>samples</term>.<newline/>Second line.</para>
    <list id="l1" list-type="enumerated"><item>first</item><item>second</item></list>
    <figure id="fig1"><media id="md1" alt="A blue chart">
      <image src="../../media/chart.png" mime-type="image/png"/></media>
      <caption>A chart of the data.</caption></figure>
    <table id="t1" summary="Ages"><title>Ages</title><tgroup cols="2">
      <thead><row><entry>Name</entry><entry>Age</entry></row></thead>
      <tbody><row><entry>Ana</entry><entry>12</entry></row></tbody></tgroup></table>
    <note id="n1" class="statistics try"><title>Try it</title><para>Count again.</para></note>
    <para id="p2">See <link url="https://openstax.org/details">OpenStax</link>, the
      <link document="m2">next module</link> and <link target-id="fig1">the figure</link>.
      A half is <m:math><m:mfrac><m:mn>1</m:mn><m:mn>2</m:mn></m:mfrac></m:math>.</para>
    <para id="p3"><link url="javascript:alert(1)">bad</link>
      <media alt="outside"><image src="https://example.com/track.png"/></media></para>
    <section id="s1"><title>Exercises</title>
      <exercise id="e1"><problem><para>What is a sample?</para></problem>
        <solution><para>A part of the population.</para></solution></exercise></section>
  </content>
</document>
"""

CNXML_M2 = """<document xmlns="http://cnx.rice.edu/cnxml">
  <title>Descriptive Statistics</title>
  <content><para id="q">Means and medians.</para></content>
</document>
"""

CNXML_M1_ES = """<document xmlns="http://cnx.rice.edu/cnxml">
  <title>Muestreo y datos</title>
  <content><para id="p1">La estadística trata de datos.</para>
    <figure id="fig1"><media alt="Un gráfico azul">
      <image src="../../media/chart.png" mime-type="image/png"/></media></figure></content>
</document>
"""

COLLECTION = """<col:collection xmlns="http://cnx.rice.edu/collxml" xmlns:md="http://cnx.rice.edu/mdml"
    xmlns:col="http://cnx.rice.edu/collxml">
  <metadata><md:title>Course Book</md:title></metadata>
  <col:content>
    <col:subcollection><md:title>Chapter One</md:title>
      <col:content><col:module document="m1"/><col:module document="m2"/></col:content>
    </col:subcollection>
  </col:content>
</col:collection>
"""

README = """---
title: "Welcome to the course"
---

Start with [the first episode](episodes/01-intro.md) or read
[the book](https://openstax.org/books) online. <script>alert("x")</script>
[bad](javascript:alert(1)) ![tracker](https://example.com/pixel.png)
"""

EPISODE = """---
title: Introducing the Shell
teaching: 5
---

:::::: objectives

- Learn the shell.

::::::

### What is the Shell?

![](fig/shell.png){alt='A shell window'}

Back to the [start](../README.md). See [the clip](../media/clip.mp4).
"""

HTML_PAGE = """<!doctype html><html lang="en"><head><title>Plain Page</title></head>
<body><h1>Plain</h1><img src="../media/chart.png" alt="chart">
<img src="http://127.0.0.1:{trap}/outside.png" alt="outside"></body></html>
"""

CONFIG = "title: Course\nepisodes:\n- 01-intro.md\n- 02-missing.md\n\nlearners:\n"


def course_files(seed: int = 0, trap_port: int = 9) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {
        "README.md": README.encode(),
        "config.yaml": CONFIG.encode(),
        "episodes/01-intro.md": EPISODE.encode(),
        "episodes/fig/shell.png": png(40, 20, (10, 200, 10)),
        "collections/book.collection.xml": COLLECTION.encode(),
        "modules/m1/index.cnxml": CNXML_M1.encode(),
        "modules/m2/index.cnxml": CNXML_M2.encode(),
        "media/chart.png": png(64, 32),
        "media/clip.mp4": rng.randbytes(300_000),
        "media/clip.uk.vtt": b"WEBVTT\n\n00:00.000 --> 00:01.000\n\xd0\x9f\xd1\x80\xd0\xb8\n",
        "pages/plain.html": HTML_PAGE.replace("{trap}", str(trap_port)).encode(),
    }


def course_files_es(files: dict[str, bytes]) -> dict[str, bytes]:
    return {
        "collections/book.collection.xml": COLLECTION.replace("Course Book", "Libro").encode(),
        "modules/m1/index.cnxml": CNXML_M1_ES.encode(),
        "media/chart.png": files["media/chart.png"],
    }


def build_course(
    repo: Repository, store: LocalStore, tmp: Path, *, trap_port: int = 9
) -> dict[str, bytes]:
    """Publish the course (en and es) into ``repo`` and sync both into ``store``."""
    files = course_files(trap_port=trap_port)
    publish(repo, write_tree(tmp / "src-en", files), title="Course")
    publish(repo, write_tree(tmp / "src-es", course_files_es(files)), locale="es", title="Curso")
    fetcher = RepoFetcher(repo)
    Updater(store, fetcher).sync("course", "en")
    Updater(store, fetcher).sync("course", "es")
    return files
