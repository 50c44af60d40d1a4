"""``satchel share`` and ``satchel peers``: a store served to the classroom, found by mDNS."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
from pathlib import Path
from typing import Annotated

import typer
from satchel.content.errors import EXIT_USAGE
from satchel.edge.cli import err, fail, run
from satchel.sync.local import LocalStore

commands = typer.Typer()


@commands.command()
def share(
    store: Annotated[Path, typer.Option(help="Local store folder to serve (read-only).")],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: the LAN).")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8001,
    name: Annotated[str | None, typer.Option(help="Name announced on the LAN.")] = None,
    announce: Annotated[
        bool, typer.Option("--announce/--no-announce", help="Announce with mDNS (zeroconf).")
    ] = True,
    viewer: Annotated[
        bool,
        typer.Option(
            "--viewer",
            help="Also serve the lesson viewer to every browser on the LAN (a classroom hub);"
            " learners pick their name, and what they do is recorded on this store.",
        ),
    ] = False,
) -> None:
    """Serve this store to other laptops with the server's protocol; they verify everything."""
    from satchel.edge.listen import bind, serve

    from ..share import announce as mdns
    from ..share import create_share_app
    from .view import ensure_search

    if not (store / "satchel.json").is_file():
        fail(f"{store} is not a Satchel store (run satchel sync or import first)", EXIT_USAGE)
    local = run(lambda: LocalStore(store))
    # The address given, when it is a name (hub.school), is a name the hub answers to.
    names = () if _is_address(host) else (host,)
    app_ = create_share_app(local, viewer=viewer, names=names)
    sock = run(lambda: bind(host, port))  # a busy port fails here, before anything is announced
    if viewer:
        ensure_search(local)
    with contextlib.ExitStack() as stack:
        if announce:
            try:
                announced = stack.enter_context(mdns(local, host, port, name))
                err.print(f"announced on the LAN as {announced}")
            except OSError as exc:  # no multicast on this network: serving still works
                err.print(f"not announced on the LAN ({exc.strerror or exc}); serving anyway")
        err.print(f"sharing {store} read-only on http://{host}:{port}")
        if viewer:
            err.print(f"lesson viewer for the LAN on http://{host}:{port}/ (a hub)")
        serve(app_, sock, log_level="warning")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return not host
    return True


@commands.command()
def peers(
    timeout: Annotated[float, typer.Option(min=0.1, max=60, help="Seconds to listen.")] = 3.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """List relays (satchel share) announced on the LAN."""
    from ..share import find_peers

    found = run(lambda: find_peers(timeout))
    if as_json:
        typer.echo(json.dumps({"peers": [dataclasses.asdict(p) for p in found]}))
        return
    for p in found:
        typer.echo(f"{p.url}  {p.name}  publisher {p.publisher or '?'}  {p.bundles}")
    if not found:
        err.print(f"no peers found in {timeout:g} s")
