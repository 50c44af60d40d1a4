"""``satchel export`` and ``satchel import``: versions carried on a USB stick."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from satchel.content.errors import EXIT_NOT_FOUND, EXIT_USAGE
from satchel.content.names import DEFAULT_LOCALE
from satchel.edge.cli import err, fail, run
from satchel.sync.care import DEFAULT_KEEP
from satchel.sync.local import LocalStore

from .common import (
    EveryBundle,
    EveryLocale,
    Keep,
    Reserve,
    collect,
    locked,
    parse_reserve,
    pin_notice,
)
from .view import refresh_search

commands = typer.Typer()


@commands.command("export")
def export_usb(
    store: Annotated[Path, typer.Option(help="Local store folder.")],
    to: Annotated[Path, typer.Option("--to", help="USB folder to write or refresh.")],
    bundle: EveryBundle = None,
    locale: EveryLocale = None,
    since: Annotated[
        int | None,
        typer.Option(
            help="Leave out objects of this version (the stick's reader has it); needs --bundle."
        ),
    ] = None,
) -> None:
    """Write the current version (or every line's) to a USB folder that any client can verify
    offline, with this laptop's pending learning records (sealed) and the receipts a relay
    holds."""
    from satchel.sync.usb import export_stick

    from .records import say_stick_out, stick_out

    if since is not None and bundle is None:
        fail("--since names a version of one bundle: give --bundle too", EXIT_USAGE)
    local = run(lambda: LocalStore(store)) if (store / "satchel.json").is_file() else None
    if local is None:
        fail(f"{store} is not a Satchel store (run satchel sync or import first)", EXIT_USAGE)
    if bundle is not None:
        lines = [(bundle, locale or DEFAULT_LOCALE)]
    else:
        lines = [(r.bundle, r.locale) for r in run(local.refs) if locale in (None, r.locale)]
    if not lines:
        out = stick_out(local, to)  # a store of learning records only (a relay's, say)
        if out is None:
            where = f" in locale {locale}" if locale else ""
            fail(f"{store} holds no bundle{where} and no learning records to export")
        say_stick_out(out, to)
        return
    written = 0
    for b, loc in lines:
        result = run(partial(export_stick, local, b, loc, to, since=since))
        written += result.bytes_written
        files = len(result.pack_files)
        plural = "" if files == 1 else "s"
        err.print(
            f"{b}/{loc} version {result.version} -> {to}: wrote {result.objects_written}"
            f" objects ({result.bytes_written:,} bytes) in {files} pack file{plural};"
            f" the stick holds {result.objects_on_stick} objects"
        )
    if len(lines) > 1:
        err.print(f"{len(lines)} lines exported to {to}: {written:,} bytes written")
    say_stick_out(stick_out(local, to), to)


@commands.command("import")
def import_usb(
    path: Annotated[Path, typer.Argument(help="USB folder written by satchel export.")],
    store: Annotated[Path | None, typer.Option(help="Local store folder.")] = None,
    bundle: Annotated[
        str | None, typer.Option(help="Import only this bundle; default all on the stick.")
    ] = None,
    locale: Annotated[str | None, typer.Option(help="Import only this locale.")] = None,
    trust: Annotated[str | None, typer.Option(help="Publisher key fingerprint to trust.")] = None,
    list_only: Annotated[
        bool, typer.Option("--list", help="Print what is on the stick; needs no store.")
    ] = False,
    keep: Keep = DEFAULT_KEEP,
    reserve: Reserve = "50m",
    server: Annotated[
        str | None,
        typer.Option(
            help="Forward the stick's learning records to this server now (a connected"
            " laptop), and write the receipts back to the stick."
        ),
    ] = None,
) -> None:
    """Import versions from a USB folder: verify everything, store what is missing, switch.
    Learning records on it are collected to forward; receipts for this laptop are applied."""
    from satchel.sync.records_sync import stick_has_records
    from satchel.sync.updater import Updater
    from satchel.sync.usb import UsbFetcher, list_stick, stick_entries

    from .records import import_records

    if list_only:
        listing = run(lambda: list_stick(path))
        for line in listing.lines:
            e = line.entry
            typer.echo(
                f"{e.bundle}/{e.locale} version {e.version}:"
                f" {line.objects_on_stick} of {line.objects} objects on the stick"
            )
        typer.echo(
            f"{listing.objects} objects in {listing.pack_files} pack files,"
            f" {listing.pack_bytes:,} bytes"
        )
        return
    if store is None:
        fail("import needs --store DIR (or --list)", EXIT_USAGE)
    local = run(lambda: LocalStore(store))
    if not (path / "satchel-usb.json").is_file() and stick_has_records(path):
        import_records(local, path, server)  # a stick of learning records only
        return
    fetcher = run(lambda: UsbFetcher(path))
    if bundle is not None:
        lines = [(bundle, locale or DEFAULT_LOCALE)]
    else:
        lines = [
            (e.bundle, e.locale)
            for e in run(lambda: stick_entries(path))
            if locale is None or e.locale == locale
        ]
        if not lines:
            fail(f"{path} carries no version to import", EXIT_NOT_FOUND)

    reserve_bytes = run(lambda: parse_reserve(reserve))
    updater = Updater(local, fetcher, trust=trust, on_pin=pin_notice, reserve=reserve_bytes)
    content_note = " (nothing stored was changed: the current version is intact)"
    with run(lambda: locked(local)):
        for b, loc in lines:
            result = run(partial(updater.sync, b, loc), content_note=content_note)
            if result.changed:
                err.print(
                    f"{b}/{loc}: version {result.previous_version or 'none'} -> {result.version};"
                    f" imported {result.objects_fetched} objects ({result.pack_bytes:,} bytes)"
                )
            else:
                err.print(f"{b}/{loc}: version {result.version} is current")
        collect(local, keep)
        refresh_search(local)
    import_records(local, path, server)
