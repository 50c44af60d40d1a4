"""``satchel view``: the offline lesson viewer on this laptop; and the search index hook that
sync, import and gc run after they switch or drop versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from satchel.content.errors import SatchelError
from satchel.edge.cli import err, run
from satchel.sync.local import LocalStore

commands = typer.Typer()


def refresh_search(local: LocalStore, *, when: bool = True) -> None:
    """Bring the store's search index in step with its kept versions (the writer lock held);
    ``when`` False does nothing (a sync that stopped at its budget switched nothing).

    The index is derived data: failing to update it never fails the command that changed the
    store; it says so, and the next sync, import or gc tries again.
    """
    from satchel.sync.search import update_search_index

    if not when:
        return
    try:
        update_search_index(local)
    except SatchelError as exc:
        err.print(f"search index not updated ({exc}); the next sync, import or gc tries again")


def ensure_search(local: LocalStore) -> None:
    """Build the index of a store synced before search existed (when no writer is busy)."""
    from satchel.sync.care import writer_lock
    from satchel.sync.search import INDEX_NAME

    if (local.root / INDEX_NAME).exists():
        return
    try:
        with writer_lock(local):
            refresh_search(local)
    except SatchelError:
        pass  # a sync is running: it builds the index when it switches


@commands.command()
def view(
    store: Annotated[Path, typer.Option(help="Local store folder to show.")],
    host: Annotated[str, typer.Option(help="Address to listen on (keep it local).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8010,
) -> None:
    """Offline lesson viewer: every synced bundle and locale, served from the chunk store."""
    from satchel.edge.listen import bind, serve

    from ..view import create_app, open_store

    local = run(lambda: open_store(store))
    sock = run(lambda: bind(host, port))  # a busy port fails here, before the banner
    ensure_search(local)
    err.print(f"viewing {store} on http://{host}:{port}/")
    serve(create_app(local), sock, log_level="warning")
