"""``satchel view``: the offline lesson viewer on this laptop."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from satchel.edge.cli import err, run

commands = typer.Typer()


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
    err.print(f"viewing {store} on http://{host}:{port}/")
    serve(create_app(local), sock, log_level="warning")
