"""The trees bench/scale.py measures, generated reproducibly, and their one-file edits (in the
harness, so the bench's tests need not import bench/).

- Video: lecture files of incompressible bytes, an AES-128-CTR keystream keyed by the seed and
  the file name (reproducible and fast, unlike ``os.urandom``).
- Pages: lesson-like HTML, sentences drawn from a seeded word list with Zipf-like frequencies
  (varied, compressible text), 10 pages a lesson and 100 lessons a unit.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from satchel.content.paths import CHECKOUT_MARKER

from harness import tools

MIB = 1 << 20
GIB = 1 << 30
PAGE_BYTES = 10_700  # mean page size: 10,000 pages make the 107 MB
# A page stops after the section that passes its drawn size, then gets its quiz: ~1.1 KB more.
PAGE_OVERSHOOT = 1_100


def keystream(seed: int, name: str) -> Callable[[int], bytes]:
    """Incompressible, reproducible bytes: AES-128-CTR of zeros, keyed by seed and name."""
    key = hashlib.sha256(f"satchel-scale/{seed}/{name}".encode()).digest()[:16]
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    zeros = bytes(MIB)

    def take(n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            out += encryptor.update(zeros[: min(MIB, n - len(out))])
        return bytes(out)

    return take


def make_video(root: Path, gib: float, seed: int) -> None:
    """Lecture files of 64-256 MiB summing to exactly ``gib`` GiB, four per unit."""
    rng = random.Random(seed)
    remaining = int(gib * GIB)
    i = 0
    while remaining > 0:
        size = min(remaining, rng.randint(64, 256) * MIB)
        path = root / f"unit-{i // 4 + 1:02d}" / f"lecture-{i + 1:02d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        take = keystream(seed, path.name)
        with open(path, "wb") as f:
            left = size
            while left:
                block = take(min(16 * MIB, left))
                f.write(block)
                left -= len(block)
        remaining -= size
        i += 1


_WORD_TEXT = """
the of and to a in is that for it as with be on this are by an or from at which can we
not have one all their there when if more each they these two other some what was has
its but would will into than then so many may most only also how about between first
any same such new used use each very over both well where after must before through
data value values mean median mode sample samples population variable variables random
probability distribution normal standard deviation error test hypothesis interval
confidence level table graph chart frequency percent proportion ratio average number
numbers count total sum difference measure measures scale range spread center outlier
student students class teacher lesson unit chapter section example examples exercise
problem problems answer answers question questions solution method result results
study survey experiment group groups treatment control variable observation study
water energy plant plants animal cells cell light heat force motion speed time distance
earth soil rain river map country city region history people language reading writing
story word words sentence paragraph letter sound number fraction decimal area volume
length width height angle line lines point points shape circle square triangle rectangle
add subtract multiply divide equal equals greater less larger smaller increase decrease
find show explain compare describe identify calculate estimate predict record collect
because therefore however although while since unless until during within without
important useful simple common different similar large small high low long short next
"""
WORDS = _WORD_TEXT.split()

HEADINGS = [
    "Introduction", "Key ideas", "Worked example", "Try it", "Practice", "Summary",
    "Vocabulary", "Going further", "Activity", "Discussion", "Review", "Background",
]  # fmt: skip


class PageWriter:
    """Lesson-like HTML pages from a seeded word list (Zipf-like word frequencies)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        words = list(dict.fromkeys(WORDS))
        self.rng.shuffle(words)
        self.words = words
        weights = [1.0 / (rank + 1) for rank in range(len(words))]
        self.cum = [sum(weights[: i + 1]) for i in range(len(weights))]

    def sentence(self) -> str:
        words = self.rng.choices(self.words, cum_weights=self.cum, k=self.rng.randint(6, 22))
        text = " ".join(words)
        if self.rng.random() < 0.3:
            cut = self.rng.randint(2, len(words) - 2)
            text = " ".join(words[:cut]) + ", " + " ".join(words[cut:])
        return text[0].upper() + text[1:] + self.rng.choice(".....?!")

    def paragraph(self) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(2, 7)))

    def title(self) -> str:
        words = self.rng.choices(self.words, cum_weights=self.cum, k=self.rng.randint(2, 5))
        return " ".join(w.capitalize() for w in words)

    def page(self, unit: int, lesson: int, number: int) -> str:
        target = self.rng.lognormvariate(math.log(PAGE_BYTES - PAGE_OVERSHOOT) - 0.125, 0.5)
        title = self.title()
        parts = [
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>Unit {unit}, lesson {lesson}: {title}</title>\n"
            '<link rel="stylesheet" href="../../course.css">\n</head>\n<body>\n'
            f'<nav class="crumbs"><a href="../../index.html">Course</a> &rsaquo; '
            f'<a href="../index.html">Unit {unit}</a> &rsaquo; Lesson {lesson}, page {number}'
            f"</nav>\n<main>\n<h1>{title}</h1>\n"
            f'<p class="objectives">{self.sentence()}</p>\n'
        ]
        size = sum(len(p) for p in parts)
        section = 0
        while size < target:
            section += 1
            body = [f'<section id="s{section}">\n<h2>{self.rng.choice(HEADINGS)}</h2>\n']
            body += [f"<p>{self.paragraph()}</p>\n" for _ in range(self.rng.randint(1, 4))]
            roll = self.rng.random()
            if roll < 0.3:
                items = "".join(f"<li>{self.sentence()}</li>\n" for _ in range(3))
                body.append(f"<ul>\n{items}</ul>\n")
            elif roll < 0.45:
                alt = self.sentence()
                body.append(
                    f'<figure><img src="fig-{number}-{section}.png" alt="{alt}">'
                    f"<figcaption>{alt}</figcaption></figure>\n"
                )
            body.append("</section>\n")
            size += sum(len(p) for p in body)
            parts += body
        questions = "".join(f"<li>{self.sentence()}</li>\n" for _ in range(3))
        parts.append(
            f'<section class="check">\n<h2>Check your understanding</h2>\n<ol>\n{questions}'
            "</ol>\n</section>\n</main>\n"
            f"<footer>Unit {unit}, lesson {lesson}. Shared under CC BY 4.0.</footer>\n"
            "</body>\n</html>\n"
        )
        return "".join(parts)


def page_path(i: int) -> str:
    """Page ``i`` (from 0): 10 pages a lesson, 100 lessons a unit."""
    return f"unit-{i // 1000 + 1:03d}/lesson-{i // 10 % 100 + 1:03d}/page-{i % 10 + 1:02d}.html"


def make_pages(root: Path, count: int, seed: int) -> None:
    writer = PageWriter(seed)
    for i in range(count):
        path = root / page_path(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        unit, lesson = i // 1000 + 1, i // 10 % 100 + 1
        path.write_text(writer.page(unit, lesson, i % 10 + 1), "utf-8")


def insert_sentence(path: Path) -> None:
    """A one-sentence correction in the middle of a text file (after a full stop)."""
    data = path.read_bytes()
    middle = data.find(b". ", len(data) // 2)
    at = (middle + 2) if middle >= 0 else len(data) // 2
    path.write_bytes(data[:at] + b"A corrected sentence for this update. " + data[at:])


def patch_video(path: Path, seed: int) -> None:
    """One MiB of a lecture re-encoded: new bytes in the middle, same size."""
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        f.write(keystream(seed, f"{path.name}/update")(MIB))


def tree_size(root: Path) -> tuple[int, int]:
    """(files, bytes) of a tree."""
    files = size = 0
    for path in root.rglob("*"):
        if path.is_file():
            files += 1
            size += path.stat().st_size
    return files, size


def tree_mismatch(expected: Path, actual: Path) -> str:
    """First difference between two trees, streamed (no tree held in memory); "" if none.
    A checkout's own marker file is not part of the tree."""
    want = sorted(p.relative_to(expected) for p in expected.rglob("*") if p.is_file())
    have = sorted(
        p.relative_to(actual)
        for p in actual.rglob("*")
        if p.is_file() and p.relative_to(actual) != Path(CHECKOUT_MARKER)
    )
    if want != have:
        extra = sorted(set(have) - set(want))[:1]
        lost = sorted(set(want) - set(have))[:1]
        return f"WRONG OUTPUT: files differ (missing {lost}, unexpected {extra})"
    for rel in want:
        if not tools.same_file(expected / rel, actual / rel):
            return f"WRONG OUTPUT: {rel} differs"
    return ""


def page_counts(text: str) -> tuple[int, ...]:
    """``--pages 1000,10_000``: page counts (zeros dropped), or an argparse error."""
    try:
        values = tuple(int(v.replace("_", "")) for v in text.split(",") if v.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"bad page counts {text!r}: {error}") from error
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"bad page counts {text!r}: must not be negative")
    return tuple(v for v in values if v)
