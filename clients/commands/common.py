"""Options and helpers the client commands share: locale, keep and reserve, the writer lock,
garbage collection after a switch, and the transfer bar."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from satchel.content.names import DEFAULT_LOCALE
from satchel.edge.cli import err, run
from satchel.sync.care import collect_garbage, writer_lock
from satchel.sync.local import LocalStore

Locale = Annotated[str, typer.Option("--locale", help="Locale code, e.g. en, uk, pt-BR.")]
# Commands that work on every line held unless one is named (sync, export).
EveryLocale = Annotated[
    str | None,
    typer.Option(
        "--locale",
        help=f"Locale code, e.g. en, uk, pt-BR (default {DEFAULT_LOCALE}).",
        show_default=False,
    ),
]
EveryBundle = Annotated[
    str | None,
    typer.Option(
        help="Bundle name. Without it: every bundle and locale the store holds (with --locale:"
        " every bundle of that locale)."
    ),
]
Keep = Annotated[
    int, typer.Option(min=1, max=1000, help="Versions to keep per bundle (older: deleted).")
]
Reserve = Annotated[
    str,
    typer.Option(
        help="Disk space to leave free (e.g. 50m, 1g; k=1000); 'off' skips the check"
        " (for filesystems that misreport free space)."
    ),
]


@contextmanager
def transfer_bar(description: str, enabled: bool) -> Iterator[Callable[[int, int | None], None]]:
    """A rich progress bar with speed and ETA on stderr; a no-op when not a terminal."""
    if not enabled or not err.is_terminal:
        yield lambda _done, _total: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def locked(local: LocalStore) -> contextlib.ExitStack[bool | None]:
    """The store's writer lock, entered now so that a busy store fails with one line."""
    stack = contextlib.ExitStack()
    stack.enter_context(writer_lock(local))
    return stack


def parse_reserve(text: str) -> int | None:
    """``--reserve``: a size, ``0`` (only what the sync needs must fit) or ``off`` (no check)."""
    from ..http import parse_size

    value = text.strip().lower()
    if value == "off":
        return None
    return 0 if value == "0" else parse_size(value)


def collect(local: LocalStore, keep: int) -> int:
    """Keep ``keep`` versions per line and delete what nothing kept uses; returns bytes freed."""
    result = run(lambda: collect_garbage(local, keep))
    if result.versions_dropped or result.objects_deleted:
        err.print(
            f"kept the newest {keep} version{'s' if keep != 1 else ''}: dropped"
            f" {', '.join(result.versions_dropped) or 'no versions'}, freed"
            f" {result.bytes_freed:,} bytes ({result.objects_deleted} objects)"
        )
    return result.bytes_freed


def pin_notice(fingerprint: str, rotated: bool) -> None:
    """Said the moment a key is pinned, so it is seen even if the command then fails."""
    why = "key changed, as --trust asked" if rotated else "first use"
    err.print(f"trusting publisher key {fingerprint} ({why})")
