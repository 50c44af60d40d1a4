"""The ``satchel`` command: the composition root above the server and the clients.

The server's commands (:mod:`satchel.server.commands`) and the clients' (one module per job
under :mod:`satchel.clients.commands`) are mounted here as one command; neither side imports
the other. ``fsck`` checks either kind of data, so it is the one command defined here.

Output contract (docs and scripts rely on it): ``publish`` prints only the new version number
on stdout, ``token create`` only the token, ``sync --json`` one JSON object, ``sync --dry-run``
only the number of bytes the update would download (or, with ``--json``, one JSON object with
``bytes_to_download``). Progress and notices go to stderr. Exit codes: 0 ok; 1 any other
error; 2 bad usage; 3 the data failed verification or trust (nothing stored was changed); 4
the link failed, after any retries (run again to resume); 5 ``sync --max-bytes`` reached its
budget: everything received is kept, the version did not switch, the next sync resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from satchel.clients.commands import publish, share, store, sync, usb, view
from satchel.content.errors import EXIT_USAGE
from satchel.edge.cli import fail
from satchel.server import commands as server

app = typer.Typer(
    name="satchel",
    help="Offline-first learning content: publish, sync, check out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(server.commands)
app.add_typer(server.token_commands, name="token")
for side in (publish, sync, store, usb, share, view):
    app.add_typer(side.commands)


@app.command()
def fsck(
    store_dir: Annotated[Path | None, typer.Option("--store", help="Local store folder.")] = None,
    data: Annotated[
        Path | None, typer.Option(help="A server's data folder (instead of --store).")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="With --data: the server's SQLAlchemy URL.")
    ] = None,
    storage: Annotated[str | None, typer.Option(help="With --data: its object storage.")] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Delete bad objects so the next sync refetches them.")
    ] = False,
) -> None:
    """Verify every stored chunk against its id and every version for completeness."""
    if (store_dir is None) == (data is None):
        fail("give either --store (a local store) or --data (a server's data folder)", EXIT_USAGE)
    if data is not None:
        server.fsck_server(data, database_url, storage, repair)
    else:
        assert store_dir is not None
        store.fsck_store(store_dir, repair)


def main() -> None:
    app(prog_name="satchel")
