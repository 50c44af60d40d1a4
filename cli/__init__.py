"""The ``satchel`` command: the composition root above the server and the clients.

The server's commands (:mod:`satchel.server.commands`) and the clients' (one module per job
under :mod:`satchel.clients.commands`) are mounted here as one command; neither side imports
the other. ``fsck`` checks either kind of data, so it is the one command defined here.

Output contract (docs and scripts rely on it): ``publish`` prints only the new version number
on stdout, ``token create`` only the token, ``sync --json`` one JSON object (with
``--bundle``: that line's; without it, every line the store holds: ``{"lines": [one object
per line], "complete", "bytes_downloaded", "bytes_uploaded", "requests", "seconds"}``),
``sync --dry-run`` only the number of bytes the update would download (or, with ``--json``,
one JSON object with ``bytes_to_download``). Progress and notices go to stderr; an error is
one line there.

Exit codes (one table: :data:`satchel.content.errors.EXIT_CODES`):

    0    ok
    1    any other error
    2    bad usage: a wrong option, name, folder or combination
    3    the data failed verification or trust (nothing stored was changed)
    4    the link failed, after any retries (run again to resume)
    5    sync --max-bytes reached its budget: everything received is kept, the version did not
         switch, the next sync resumes
    6    not found: no such bundle, locale, version, file or token
    7    this machine cannot: a port in use, a full disk, a folder it may not write
    8    refused: a token that is missing, unknown, revoked or not allowed this
    130  interrupted (Ctrl-C): everything verified is kept; run the same command to resume

``--help`` names what each option takes (:mod:`satchel.cli.help`); ``--version`` prints the
installed version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from satchel.clients.commands import publish, records, share, store, sync, usb, view
from satchel.content.errors import EXIT_CODES, EXIT_USAGE
from satchel.edge.cli import fail
from satchel.server import class_commands
from satchel.server import commands as server

from .help import plain_help

app = typer.Typer(
    name="satchel",
    help="Offline-first learning content: publish, sync, check out.",
    epilog="Exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items()),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(server.commands)
app.add_typer(server.token_commands, name="token")
app.add_typer(class_commands.class_commands, name="class")
app.add_typer(class_commands.device_commands, name="device")
app.add_typer(class_commands.learner_commands, name="learner")
for side in (publish, sync, store, usb, share, view, records):
    app.add_typer(side.commands)


def _print_version(value: bool) -> None:
    if value:
        from importlib import metadata  # 35 ms: only for --version

        typer.echo(f"satchel {metadata.version('satchel')}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Offline-first learning content: publish, sync, check out."""


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


def command() -> Any:
    """The ``satchel`` command as the console script runs it (with plain help)."""
    return plain_help(typer.main.get_command(app))


def main() -> None:
    command()(prog_name="satchel")
