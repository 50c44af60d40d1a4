"""Turn a source folder into a manifest draft, remembering where each chunk can be re-read.

Publishing reads every file once to chunk and hash it (fast, no compression), asks the server
which chunks it lacks, then re-reads only those to compress and upload them. So memory stays
flat however large the course is: only the chunk map is kept, never file contents.

Which files (:func:`select_files`): every regular file under the folder, except

- the usual junk of operating systems, editors and version control (:data:`DEFAULT_IGNORES`:
  ``.git/``, ``.DS_Store``, ``Thumbs.db``, ``*~``...), and what a ``.satchelignore`` at the
  top of the folder lists, in gitignore syntax (read by ``pathspec``, after the defaults, so
  ``!Thumbs.db`` there publishes one after all);
- links, to files or folders, inside the folder or outside it: a manifest has no links, a
  link inside would publish the same bytes twice under two names, and one pointing outside
  would publish files from beyond the course folder. They are skipped and reported
  (``satchel publish`` names each one), never followed;
- anything that is not a regular file (a pipe, a socket, a device): skipped and reported.

A folder with nothing left to publish is refused.
"""

from __future__ import annotations

import mimetypes
import os
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from .chunking import Chunker
from .errors import FormatError, UsageError
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
class Skipped:
    """A path publishing leaves out, and why."""

    path: str  # relative to the folder, with "/" (a folder's ends with "/")
    reason: str  # "ignored", "link" or "not a regular file"


@dataclass(frozen=True, slots=True)
class SelectedFiles:
    files: tuple[tuple[str, Path], ...]  # (bundle path, file), sorted by bundle path
    skipped: tuple[Skipped, ...]


@dataclass(frozen=True, slots=True)
class ScannedTree:
    draft: ManifestDraft
    sources: dict[str, ChunkSource]
    skipped: tuple[Skipped, ...] = field(default=())

    @property
    def size(self) -> int:
        return sum(f.size for f in self.draft.files)


IGNORE_FILE = ".satchelignore"
MAX_IGNORE_BYTES = 64 * 1024
DEFAULT_IGNORES = (
    # version control
    ".git/",
    ".svn/",
    ".hg/",
    ".bzr/",
    "CVS/",
    # macOS, Windows and Linux desktops
    ".DS_Store",
    "._*",
    "__MACOSX/",
    ".Spotlight-V100/",
    ".Trashes/",
    ".fseventsd/",
    ".TemporaryItems/",
    "Thumbs.db",
    "ehthumbs.db",
    "desktop.ini",
    "$RECYCLE.BIN/",
    ".directory",
    ".Trash-*/",
    # editors and office suites: backups, swap and lock files
    "*~",
    ".*.swp",
    ".*.swo",
    "~$*",
    ".~lock.*#",
    # publishing's own settings
    IGNORE_FILE,
)
"""Skipped in every publish, before the folder's own ``.satchelignore`` (gitignore syntax)."""


def ignore_rules(root: Path) -> pathspec.GitIgnoreSpec:
    """The defaults, then the folder's ``.satchelignore`` (so it can re-include with ``!``)."""
    lines = list(DEFAULT_IGNORES)
    own = root / IGNORE_FILE
    if own.is_file() and not own.is_symlink():
        if own.stat().st_size > MAX_IGNORE_BYTES:
            raise UsageError(f"{IGNORE_FILE} is over {MAX_IGNORE_BYTES:,} bytes")
        try:
            lines += own.read_text("utf-8").splitlines()
        except UnicodeDecodeError:
            raise UsageError(f"{IGNORE_FILE} is not UTF-8 text") from None
    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except (ValueError, TypeError) as exc:  # pathspec's verdict on a malformed pattern
        raise UsageError(f"{IGNORE_FILE}: {exc}") from None


def select_files(root: Path) -> SelectedFiles:
    """The files a publish of ``root`` takes, and what it skips (see the module's rules)."""
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder")
    rules = ignore_rules(root)
    found: list[tuple[str, Path]] = []
    skipped: list[Skipped] = []

    def walk(folder: str, rel_dir: tuple[str, ...]) -> None:
        # os.scandir's entries know what they are (d_type): no stat per file, where os.walk
        # and two more lstat calls per file cost seconds for 100,000 files.
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return  # unreadable: skipped like os.walk does
        prefix = "".join(f"{part}/" for part in rel_dir)
        folders = {entry.name for entry in entries if _is_dir(entry)}
        below: list[os.DirEntry[str]] = []
        for entry in entries:  # folders first, as a walk from the top lists them
            if entry.name not in folders:
                continue
            rel = f"{prefix}{entry.name}/"
            if entry.is_symlink():
                skipped.append(Skipped(rel, "link"))
            elif rules.match_file(rel):
                skipped.append(Skipped(rel, "ignored"))  # nothing below it is looked at
            else:
                below.append(entry)
        for entry in entries:
            if entry.name in folders:
                continue
            name = entry.name
            if not rel_dir and name == CHECKOUT_MARKER:
                continue  # a checkout's marker: publishing a checked-out folder leaves it out
            rel = f"{prefix}{name}"
            if rules.match_file(rel):
                skipped.append(Skipped(rel, "ignored"))
            elif entry.is_symlink():
                skipped.append(Skipped(rel, "link"))
            elif not entry.is_file(follow_symlinks=False):
                skipped.append(Skipped(rel, "not a regular file"))
            else:
                found.append((_bundle_path(root, (*rel_dir, name)), Path(entry.path)))
        for entry in below:
            walk(entry.path, (*rel_dir, entry.name))

    walk(os.fspath(root), ())
    found.sort(key=lambda item: item[0])
    return SelectedFiles(tuple(found), tuple(skipped))


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """A folder, or a link to one (reported as a link); a link loop is neither, as in os.walk."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _bundle_path(root: Path, parts: tuple[str, ...]) -> str:
    try:
        return to_bundle_path(parts)
    except FormatError as exc:  # a name no laptop could check out: the folder must change
        raise UsageError(f"cannot publish {root}: {exc}") from None


def scan_tree(
    root: Path, *, title: str, chunker: Chunker, selected: SelectedFiles | None = None
) -> ScannedTree:
    """Chunk and hash every file :func:`select_files` takes into a :class:`ManifestDraft`
    (``selected``: its answer, when the caller already asked: 100,000 files take seconds)."""
    if selected is None:
        selected = select_files(root)
    if not selected.files:
        ignored = f" ({len(selected.skipped)} skipped: junk, ignored or links)"
        raise UsageError(
            f"nothing to publish in {root}: it holds no files"
            + (ignored if selected.skipped else "")
        )
    files: list[FileEntry] = []
    sources: dict[str, ChunkSource] = {}
    # Refused before any file is read: a name a USB stick or Windows cannot hold, a clash.
    try:
        check_publish_tree(rel for rel, _ in selected.files)
    except FormatError as exc:  # the teacher's folder must change: a usage error, exit 2
        raise UsageError(f"cannot publish {root}: {exc}") from None
    for rel, full in selected.files:
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
    return ScannedTree(draft=draft, sources=sources, skipped=selected.skipped)
