"""``satchel status``, ``gc`` and the store half of ``fsck``: a laptop's store, offline."""

from __future__ import annotations

import contextlib
import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from satchel.content.errors import EXIT_USAGE, EXIT_VERIFICATION
from satchel.edge.cli import err, fail, run
from satchel.sync.care import DEFAULT_KEEP
from satchel.sync.local import LocalStore

from .common import collect, locked
from .view import refresh_search

if TYPE_CHECKING:  # loaded by the commands that use them (tests/test_cli_startup.py)
    from satchel.sync.status import LineStatus
    from satchel.sync.updater import SyncPlan

commands = typer.Typer()


@commands.command()
def status(
    store: Annotated[Path, typer.Option(help="Local store folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    server: Annotated[
        str | None,
        typer.Option(
            help="Also ask this server or peer what each update would cost, exactly (a dry"
            " run: the index and manifests are fetched, no chunks)."
        ),
    ] = None,
) -> None:
    """Bundles, versions and sizes in a store, what is not on it, and what updates cost."""
    from satchel.sync.status import store_status

    if not (store / "satchel.json").is_file():
        fail(f"{store} is not a Satchel store (run satchel sync or import first)", EXIT_USAGE)
    local = run(lambda: LocalStore(store))
    exact: dict[tuple[str, str], SyncPlan] = {}
    if server is not None:
        from satchel.sync.updater import Updater

        from ..http import HttpClient

        client = run(lambda: HttpClient(server))
        updater = Updater(local, client)
        with client, run(lambda: locked(local)):
            for ref in run(local.refs):
                exact[(ref.bundle, ref.locale)] = run(partial(updater.plan, ref.bundle, ref.locale))
    report = run(lambda: store_status(local))

    def cost(line: LineStatus) -> tuple[int | None, int | None]:
        plan = exact.get((line.bundle, line.locale))
        if plan is not None:
            return (plan.version if plan.route != "none" or plan.ranges else None), (
                plan.bytes_to_download
            )
        return line.pending_version, line.update_bytes

    if as_json:
        typer.echo(
            json.dumps(
                {
                    "publisher": report.publisher,
                    "objects": report.objects,
                    "stored_bytes": report.stored_bytes,
                    "bundles": [
                        {
                            "bundle": line.bundle,
                            "locale": line.locale,
                            "title": line.title,
                            "version": line.version,
                            "versions": list(line.versions),
                            "files": line.files,
                            "size": line.size,
                            "objects_missing": line.objects_missing,
                            "only": list(line.only) if line.only is not None else None,
                            "files_here": line.files_here,
                            "bytes_not_here": line.bytes_not_here,
                            "pending_version": cost(line)[0],
                            "update_bytes": cost(line)[1],
                            "pending_objects_here": line.pending_here,
                            "pending_objects": line.pending_objects,
                        }
                        for line in report.lines
                    ],
                    "downloading": [
                        {
                            "bundle": d.bundle,
                            "locale": d.locale,
                            "version": d.version,
                            "objects_here": d.objects_here,
                            "objects": d.objects,
                            "bytes_missing": d.bytes_missing,
                        }
                        for d in report.downloading
                    ],
                }
            )
        )
        return
    for line in report.lines:
        kept = ", ".join(str(v) for v in line.versions)
        state = (
            "complete" if not line.objects_missing else f"{line.objects_missing} objects missing"
        )
        if line.only is not None:
            state += (
                f"; selective ({', '.join(line.only)}): {line.files_here} of {line.files} files"
                f" here, {line.bytes_not_here:,} bytes not on this laptop"
            )
        pending, update = cost(line)
        if pending is not None:
            if update is None:
                price = ", update cost unknown offline (status --server URL tells)"
            elif (line.bundle, line.locale) in exact:
                price = f", update costs {update:,} bytes"
            else:  # chunk bytes before compression: what it costs at most
                price = f", update needs at most {update:,} bytes"
            got = (
                f" ({line.pending_here:,} of {line.pending_objects:,} objects here)"
                if line.pending_here and line.pending_objects is not None
                else ""
            )
            state += f"; version {pending} pending{got}{price}"
        typer.echo(
            f"{line.bundle}/{line.locale} version {line.version} (versions kept: {kept}):"
            f" {line.files} files, {line.size:,} bytes, {state}"
        )
    for d in report.downloading:
        typer.echo(
            f"{d.bundle}/{d.locale} version {d.version} not here yet: {d.objects_here:,} of"
            f" {d.objects:,} objects here, {d.bytes_missing:,} bytes to go; run satchel sync"
            " to finish"
        )
    typer.echo(f"{report.objects} objects, {report.stored_bytes:,} bytes on disk")


@commands.command()
def gc(
    store: Annotated[Path, typer.Option(help="Local store folder.")],
    keep: Annotated[
        int, typer.Option(min=1, max=1000, help="Versions to keep per bundle.")
    ] = DEFAULT_KEEP,
) -> None:
    """Keep the newest versions of each bundle and delete chunks nothing kept uses."""
    if not (store / "satchel.json").is_file():
        fail(f"{store} is not a Satchel store", EXIT_USAGE)
    local = run(lambda: LocalStore(store))
    with run(lambda: locked(local)):
        freed = collect(local, keep)
        refresh_search(local)
    if not freed:
        err.print("nothing to collect")


def fsck_store(store: Path, repair: bool) -> None:
    """The ``fsck --store`` half: every object against its id, every version complete."""
    from satchel.sync.fsck import fsck as check_store

    local = run(lambda: LocalStore(store))
    with run(lambda: locked(local)) if repair else contextlib.nullcontext():
        report = run(lambda: check_store(local, repair=repair))
    for cid in report.corrupt:
        err.print(f"corrupt object {cid}" + (" (removed)" if cid in report.removed else ""))
    for cid in report.unverifiable:
        err.print(f"unverifiable object {cid} (its dictionary is bad or missing)")
    for line in report.incomplete:
        err.print(f"incomplete: {line}")
    err.print(
        f"{report.objects} objects checked, {len(report.corrupt)} corrupt,"
        f" {len(report.unverifiable)} unverifiable, {len(report.incomplete)} incomplete versions"
    )
    if not report.clean:
        raise typer.Exit(EXIT_VERIFICATION)
