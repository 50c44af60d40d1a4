"""Shared helpers for bench scripts: corpus location and baselines measured in the same run."""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import zstandard

from .paths import CORPUS


def corpus(tree: str) -> Path:
    path = CORPUS / tree
    if not path.is_dir():
        sys.exit(
            f"corpus tree {tree} not found at ../shared/corpus (bench needs the shared corpus)"
        )
    return path


def tar_zstd_size(root: Path, level: int = 19) -> int:
    """Size of ``tar --sort=name -C root . | zstd -LEVEL`` (the single-stream baseline)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
    cctx = zstandard.ZstdCompressor(level=level, threads=-1)
    return len(cctx.compress(buf.getvalue()))


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [headers] + [[f"{c:,}" if isinstance(c, int) else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
