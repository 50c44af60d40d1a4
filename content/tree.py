"""Turn a source folder into a manifest draft, remembering where each chunk can be re-read.

Publishing reads every file once to chunk and hash it (fast, no compression), asks the server
which chunks it lacks, then re-reads only those to compress and upload them. So memory stays
flat however large the course is: only the chunk map is kept, never file contents.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .chunking import Chunker
from .errors import FormatError, UnsafePathError
from .manifest import FileEntry, ManifestDraft
from .paths import CHECKOUT_MARKER, check_publish_tree, to_bundle_path

# Built-in types only (a MimeTypes() instance ignores /etc/mime.types), so the same tree gets
# the same manifest on every machine.
_TYPES = mimetypes.MimeTypes()
for _ext, _type in {
    ".md": "text/markdown",
    ".cnxml": "application/xml",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".webp": "image/webp",
    ".webm": "video/webm",
    ".vtt": "text/vtt",
    ".pdb": "chemical/x-pdb",
}.items():
    _TYPES.add_type(_type, _ext)


def media_type(path: str) -> str:
    guessed, _ = _TYPES.guess_type(path, strict=False)
    return guessed.lower() if guessed else "application/octet-stream"


@dataclass(frozen=True, slots=True)
class ChunkSource:
    """Where the bytes of one chunk live in the source tree."""

    path: Path
    offset: int
    length: int

    def read(self) -> bytes:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read(self.length)
        if len(data) != self.length:
            raise FormatError(f"{self.path.name} changed while publishing; publish again")
        return data


@dataclass(frozen=True, slots=True)
class ScannedTree:
    draft: ManifestDraft
    sources: dict[str, ChunkSource]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.draft.files)


def _walk(root: Path) -> list[tuple[str, Path]]:
    """Every regular file under root as (bundle path, real path); links must stay inside."""
    real_root = root.resolve()
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel_dir = here.relative_to(root).parts
        for name in list(dirnames):
            if (here / name).is_symlink():
                raise UnsafePathError(f"{'/'.join((*rel_dir, name))!r} is a link to a folder")
        dirnames.sort()
        for name in sorted(filenames):
            if not rel_dir and name == CHECKOUT_MARKER:
                continue  # a checkout's marker: publishing a checked-out folder leaves it out
            full = here / name
            rel = to_bundle_path((*rel_dir, name))
            if full.is_symlink():
                try:
                    target = full.resolve(strict=True)
                except (OSError, RuntimeError):  # a loop, or a link to nothing
                    raise UnsafePathError(f"{rel!r} is a broken or looping link") from None
                if not target.is_relative_to(real_root):
                    raise UnsafePathError(f"{rel!r} is a link pointing outside the folder")
                full = target
            st = full.stat()
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePathError(f"{rel!r} is not a regular file")
            found.append((rel, full))
    found.sort(key=lambda item: item[0])
    return found


def scan_tree(root: Path, *, title: str, chunker: Chunker) -> ScannedTree:
    """Chunk and hash every file under ``root`` into a :class:`ManifestDraft`."""
    if not root.is_dir():
        raise FormatError(f"{root} is not a folder")
    files: list[FileEntry] = []
    sources: dict[str, ChunkSource] = {}
    walked = _walk(root)
    # Refused before any file is read: a name a USB stick or Windows cannot hold, a clash.
    check_publish_tree(rel for rel, _ in walked)
    for rel, full in walked:
        executable = bool(full.stat().st_mode & 0o111)
        cuts = list(chunker.cut_file(full))
        for cut in cuts:
            sources.setdefault(cut.chunk_id, ChunkSource(full, cut.offset, cut.length))
        files.append(
            FileEntry(
                path=rel,
                size=sum(c.length for c in cuts),
                mode=0o755 if executable else 0o644,
                media_type=media_type(rel),
                chunks=tuple((c.chunk_id, c.length) for c in cuts),
            )
        )
    draft = ManifestDraft(title=title, chunker=chunker.params, files=tuple(files))
    return ScannedTree(draft=draft, sources=sources)
