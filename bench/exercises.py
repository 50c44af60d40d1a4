"""Exercises: what finding, parsing and scoring them costs, against baselines in the same run.

1. The publish check on a real course (shell-novice v2, every Markdown file), against
   scanning the same folder (``scan_tree``: chunking and hashing, publish's first step).
2. Finding ``gift`` blocks in a 1 MiB lesson (the size bound) with markdown-it's block rules
   only, against markdown-it's full parse (what the viewer does to render the page).
3. Parsing a 64 KiB block of GIFT questions (the block bound) and scoring responses.
4. CNXML exercises of intro-stats v2, against rendering the same modules.

Run from the repository root:  python bench/exercises.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from markdown_it import MarkdownIt  # noqa: E402
from satchel.content.chunking import Chunker  # noqa: E402
from satchel.content.exercises import MAX_MARKDOWN_BYTES, gift_blocks  # noqa: E402
from satchel.content.gift import MAX_BLOCK_CHARS, parse_gift  # noqa: E402
from satchel.content.render_cnxml import Target, exercises_in_cnxml, render_cnxml  # noqa: E402
from satchel.content.scoring import score  # noqa: E402
from satchel.content.tree import scan_tree  # noqa: E402
from satchel.sync.publish import check_exercises  # noqa: E402

from harness.bench import corpus, table  # noqa: E402

QUESTIONS = [
    "::Capital {n}:: Capital of Ukraine? {{=Kyiv#Yes! ~Lviv#No. ~Odesa####Kyiv.}}",
    "Grant is {{~buried =entombed ~living}} in Grant's tomb ({n}).",
    "Is {n} even? {{T#Look again.#Yes.}}",
    "Which are prime ({n})? {{~%50%2 ~%50%3 ~%-100%4}}",
    "Two plus {{=two =2}} equals four ({n}).",
    "Pi to two places ({n})? {{#=3.14:0.005 =%50%3.1:0.05 ~#About 3.14.}}",
]
RESPONSES = ["0", "1", "true", "0,1", "TWO", "3,14"]


def best(run: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    rows: list[list[object]] = []

    shell = corpus("shell-novice/v2")
    scan = scan_tree(shell, title="shell", chunker=Chunker())
    markdown = [f for f in scan.draft.files if f.path.endswith(".md")]
    t_check = best(lambda: check_exercises(shell, scan.draft.files))
    t_scan = best(lambda: scan_tree(shell, title="shell", chunker=Chunker()), repeat=1)
    rows.append(
        [
            f"publish check, shell-novice v2 ({len(markdown)} .md files)",
            f"{t_check * 1000:.1f} ms",
            f"scan_tree {t_scan * 1000:.0f} ms",
            f"{t_check / t_scan:.3f}",
        ]
    )

    block = "```gift\n" + "\n\n".join(q.format(n=n) for n, q in enumerate(QUESTIONS)) + "\n```\n"
    filler = "A paragraph with *emphasis*, `code` and a [link](page.md).\n\n"
    lesson = block + filler * ((MAX_MARKDOWN_BYTES - len(block)) // len(filler))
    full = MarkdownIt("commonmark", {"html": False}).enable("table")
    t_blocks = best(lambda: gift_blocks(lesson, "lesson.md"))
    t_full = best(lambda: full.parse(lesson))
    rows.append(
        [
            f"find gift blocks in a {len(lesson) / 2**20:.2f} MiB lesson",
            f"{t_blocks * 1000:.0f} ms",
            f"markdown-it full parse {t_full * 1000:.0f} ms",
            f"{t_blocks / t_full:.2f}",
        ]
    )

    questions_text = ""
    n = 0
    while True:
        piece = QUESTIONS[n % len(QUESTIONS)].format(n=n) + "\n\n"
        if len(questions_text) + len(piece) > MAX_BLOCK_CHARS:
            break
        questions_text += piece
        n += 1
    # A full block holds more than a lesson's 200 questions: lift that bound here.
    parsed = parse_gift(questions_text, limit=len(questions_text))
    t_parse = best(lambda: parse_gift(questions_text, limit=len(questions_text)))
    rows.append(
        [
            f"parse {len(parsed)} GIFT questions ({len(questions_text):,} chars)",
            f"{t_parse * 1000:.1f} ms",
            f"{len(parsed) / t_parse:,.0f} questions/s",
            "-",
        ]
    )
    pairs = [(q, RESPONSES[i % len(RESPONSES)]) for i, q in enumerate(parsed)]
    t_score = best(lambda: [score(q, r) for q, r in pairs])
    rows.append(
        [
            f"score {len(pairs)} responses",
            f"{t_score * 1000:.1f} ms",
            f"{len(pairs) / t_score:,.0f} responses/s",
            "-",
        ]
    )

    stats = corpus("intro-stats/v2")
    modules = [p.read_bytes() for p in sorted(stats.glob("modules/*/index.cnxml"))]

    def resolve(ref: str, kind: str) -> Target:
        return Target(None)

    count = sum(len(exercises_in_cnxml(m, resolve)) for m in modules)
    t_ex = best(lambda: [exercises_in_cnxml(m, resolve) for m in modules], repeat=1)
    t_render = best(lambda: [render_cnxml(m, resolve) for m in modules], repeat=1)
    rows.append(
        [
            f"CNXML exercises of intro-stats v2 ({count:,} in {len(modules)} modules)",
            f"{t_ex * 1000:.0f} ms",
            f"render_cnxml {t_render * 1000:.0f} ms",
            f"{t_ex / t_render:.2f}",
        ]
    )
    print(table(["what", "time", "baseline (same run)", "ratio"], rows))


if __name__ == "__main__":
    main()
