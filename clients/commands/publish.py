"""``satchel publish`` and ``satchel translations``: a teacher's and a curator's commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from satchel.content.errors import EXIT_USAGE
from satchel.content.names import DEFAULT_LOCALE, check_bundle, check_locale
from satchel.edge.cli import err, fail, run

from .common import Locale, transfer_bar

if TYPE_CHECKING:  # loaded by the commands that use them (tests/test_cli_startup.py)
    from satchel.content.tree import Skipped

commands = typer.Typer()


@commands.command()
def publish(
    src: Annotated[Path, typer.Argument(help="Folder with the course files.")],
    server: Annotated[str, typer.Option(help="Server URL, e.g. http://127.0.0.1:8000.")],
    token: Annotated[
        str, typer.Option(help="Teacher, curator or admin token.", envvar="SATCHEL_TOKEN")
    ],
    bundle: Annotated[str, typer.Option(help="Bundle name.")],
    locale: Locale = DEFAULT_LOCALE,
    title: Annotated[
        str,
        typer.Option(
            help="Title shown in catalogs (default: satchel.toml's, else the last version's,"
            " else the bundle name)."
        ),
    ] = "",
    notes: Annotated[str, typer.Option(help="What changed, for the history.")] = "",
    from_locale: Annotated[
        str | None,
        typer.Option(help="Publish a locale variant of this locale's line (shares its files)."),
    ] = None,
    base_version: Annotated[
        int | None,
        typer.Option(
            help="With --from-locale: the base version this translation is now up to date"
            " with (default: what the variant said before; a new variant: the latest)."
        ),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            help="List every file and folder left out (junk such as .git/ and .DS_Store,"
            " what .satchelignore lists, links).",
        ),
    ] = False,
) -> None:
    """Publish a folder as a new version; uploads only chunks the server lacks. Left out: the
    usual junk (.git/, .DS_Store, Thumbs.db, *~ ...), what a .satchelignore in the folder
    lists (gitignore syntax), and links (each named on stderr)."""
    from satchel.content.tree import select_files
    from satchel.sync.publish import Publisher

    from ..http import HttpClient

    run(lambda: (check_bundle(bundle), check_locale(locale)))
    if from_locale is not None:
        run(lambda: check_locale(from_locale))
    if not src.is_dir():
        fail(f"{src} is not a folder", EXIT_USAGE)
    selected = run(lambda: select_files(src))
    _report_skipped(selected.skipped, verbose)
    client = run(lambda: HttpClient(server, token=token))
    with client, transfer_bar("upload", True) as bar:
        result = run(
            lambda: Publisher(client).publish(
                src,
                bundle=bundle,
                locale=locale,
                title=title,  # none given: the server keeps the last version's title
                notes=notes,
                progress=bar,
                from_locale=from_locale,
                base_version=base_version,
                selected=selected,
            )
        )
    err.print(
        f"{bundle}/{locale} version {result.version}: {result.files} files, {result.size:,} bytes;"
        f" uploaded {result.objects_uploaded} of {result.objects_total} chunks"
        f" ({result.pack_bytes:,} bytes)"
    )
    typer.echo(result.version)


def _report_skipped(skipped: tuple[Skipped, ...], verbose: bool) -> None:
    """Links always (a lesson may need one); the rest counted, or listed with --verbose."""
    for item in skipped:
        if item.reason == "link":
            err.print(
                f"skipped link {item.path} (links are not published; copy the file or folder"
                " in if laptops need it)"
            )
        elif verbose:
            err.print(f"skipped {item.path} ({item.reason})")
    others = sum(1 for item in skipped if item.reason != "link")
    if others and not verbose:
        what = "file or folder" if others == 1 else "files and folders"
        err.print(f"left out {others} junk or ignored {what} (--verbose lists them)")


@commands.command()
def translations(
    server: Annotated[str, typer.Option(help="Server URL, e.g. http://127.0.0.1:8000.")],
    bundle: Annotated[str, typer.Option(help="Bundle name.")],
    locale: Annotated[str, typer.Option("--locale", help="The variant's locale.")],
    as_json: Annotated[bool, typer.Option("--json", help="The report as one JSON object.")] = False,
) -> None:
    """Each file of a locale variant: up to date, stale, missing or extra against its base."""
    from ..http import HttpClient

    run(lambda: (check_bundle(bundle), check_locale(locale)))
    client = run(lambda: HttpClient(server))
    with client:
        report = run(lambda: client.translations(bundle, locale))
    if as_json:
        typer.echo(json.dumps(report))
        return
    typer.echo(
        f"{bundle}/{locale} v{report.get('version')} made from {report.get('base_locale')}"
        f" v{report.get('base_version')}; latest {report.get('base_locale')}"
        f" v{report.get('latest_base_version')}"
    )
    for item in report["files"]:
        typer.echo(f"{item['state']:<10} {item['path']}")
    counts: dict[str, int] = {}
    for item in report["files"]:
        counts[item["state"]] = counts.get(item["state"], 0) + 1
    err.print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no files")


@commands.command()
def withdraw(
    server: Annotated[str, typer.Option(help="Server URL, e.g. http://127.0.0.1:8000.")],
    token: Annotated[
        str, typer.Option(help="Teacher, curator or admin token.", envvar="SATCHEL_TOKEN")
    ],
    bundle: Annotated[str, typer.Option(help="Bundle name.")],
    version: Annotated[int, typer.Option(help="The version to take back.")],
    locale: Locale = DEFAULT_LOCALE,
    notes: Annotated[str, typer.Option(help="Why, for the history.")] = "",
) -> None:
    """Take a version back: laptops that have not switched to it skip it; those that hold it
    keep it until a newer one comes."""
    from ..http import HttpClient

    run(lambda: (check_bundle(bundle), check_locale(locale)))
    client = run(lambda: HttpClient(server, token=token))
    with client:
        serving = run(lambda: client.withdraw(bundle, locale, version, notes))
    err.print(
        f"{bundle}/{locale} version {version} withdrawn; laptops are offered version {serving}"
    )


@commands.command()
def remove(
    server: Annotated[str, typer.Option(help="Server URL, e.g. http://127.0.0.1:8000.")],
    token: Annotated[str, typer.Option(help="An admin token.", envvar="SATCHEL_TOKEN")],
    bundle: Annotated[str, typer.Option(help="Bundle name.")],
    locale: Locale = DEFAULT_LOCALE,
    notes: Annotated[str, typer.Option(help="Why, for the history.")] = "",
) -> None:
    """Take a whole bundle line away (a test bundle, say): laptops that follow it drop it."""
    from ..http import HttpClient

    run(lambda: (check_bundle(bundle), check_locale(locale)))
    client = run(lambda: HttpClient(server, token=token))
    with client:
        run(lambda: client.remove(bundle, locale, notes))
    err.print(f"{bundle}/{locale} removed; laptops drop it at their next sync")
