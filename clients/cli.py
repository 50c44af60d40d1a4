"""The ``satchel`` command: serve, token (create/list/revoke), publish, translations, sync,
checkout, status, fsck, export, import, keygen.

Output contract (docs and scripts rely on it): ``publish`` prints only the new version number
on stdout, ``token create`` only the token, ``sync --json`` one JSON object, ``sync --dry-run``
only the number of bytes the update would download (or, with ``--json``, one JSON object with
``bytes_to_download``). Progress and notices go to stderr. Exit codes: 0 ok; 1 any other
error; 2 bad usage; 3 the data failed verification or trust (nothing stored was changed); 4
the link failed, after any retries (run again to resume); 5 ``sync --max-bytes`` reached its
budget: everything received is kept, the version did not switch, the next sync resumes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from satchel.content.errors import ContentError, SatchelError, UsageError
from satchel.content.names import DEFAULT_LOCALE, check_bundle, check_locale
from satchel.content.signing import SigningKey
from satchel.sync.checkout import checkout as checkout_tree
from satchel.sync.errors import TransportError
from satchel.sync.local import LocalStore
from satchel.sync.publish import Publisher
from satchel.sync.resume import RetryPolicy
from satchel.sync.updater import SyncPlan, Updater

from .http import HttpClient, parse_rate, parse_size

if TYPE_CHECKING:
    from satchel.server.service import Repository

app = typer.Typer(
    name="satchel",
    help="Offline-first learning content: publish, sync, check out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
token_app = typer.Typer(help="Manage publishing tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")

err = Console(stderr=True, highlight=False, soft_wrap=True)
T = TypeVar("T")

SAMPLE_BUNDLE = "sample"


def fail(message: str, code: int = 1) -> NoReturn:
    # Plain write: rich would wrap a long reason over several lines.
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    raise typer.Exit(code)


EXIT_BUDGET = 5
RETRY_BASE_ENV = "SATCHEL_RETRY_BASE_SECONDS"


def run(
    action: Callable[[], T],
    *,
    content_note: str = "",
    link_note: Callable[[], str] = lambda: "",
) -> T:
    """Run a command body, turning Satchel errors into one line and an exit code."""
    try:
        return action()
    except UsageError as exc:
        fail(str(exc), 2)
    except ContentError as exc:
        fail(f"{exc}{content_note}", 3)
    except TransportError as exc:
        fail(f"{exc} ({link_note()}run the same command again to resume)", 4)
    except SatchelError as exc:
        fail(str(exc), 1)
    except OSError as exc:
        fail(f"{exc.filename or ''}: {exc.strerror or exc}", 1)


@contextmanager
def transfer_bar(description: str, enabled: bool) -> Iterator[Callable[[int, int | None], None]]:
    """A rich progress bar with speed and ETA on stderr; a no-op when not a terminal."""
    if not enabled or not err.is_terminal:
        yield lambda _done, _total: None
        return
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


Locale = Annotated[str, typer.Option("--locale", help="Locale code, e.g. en, uk, pt-BR.")]


# -- serve / token / keygen -------------------------------------------------------------------
def _repository(
    data: Path,
    database_url: str | None,
    storage: str | None,
    signing_key: Path | None,
    static_deltas: int = 3,
) -> Repository:
    from satchel.server.service import Repository
    from satchel.sync.store import FolderChunkStore

    store = None
    if storage:
        if storage.startswith("file://"):
            store = FolderChunkStore(Path(storage.removeprefix("file://")))
        elif "://" in storage:
            raise UsageError(
                f"storage {storage!r}: only a local folder (file://PATH or PATH) is"
                " supported so far"
            )
        else:
            store = FolderChunkStore(Path(storage))
    return Repository(
        data,
        database_url=database_url,
        signing_key=signing_key,
        store=store,
        static_deltas=static_deltas,
    )


@app.command()
def serve(
    data: Annotated[Path, typer.Option(help="Data folder: database, objects, signing key.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL; default SQLite in --data.")
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="Object storage; default DATA/objects.")
    ] = None,
    signing_key: Annotated[
        Path | None,
        typer.Option(help="Ed25519 key (satchel keygen); default DATA/signing-key.pem."),
    ] = None,
    sample: Annotated[
        bool,
        typer.Option("--sample", help="Publish the built-in sample bundle if it is not there yet."),
    ] = False,
    static_deltas: Annotated[
        int,
        typer.Option(
            help="Ready-made, cacheable update packs from each of the last K versions (0-16)."
        ),
    ] = 3,
) -> None:
    """Run the server (SQLite + a local folder unless told otherwise)."""
    import uvicorn
    from satchel.server.app import create_app

    repo = run(lambda: _repository(data, database_url, storage, signing_key, static_deltas))
    if sample and not any(b["bundle"] == SAMPLE_BUNDLE for b in repo.catalog()):
        import satchel.server

        source = Path(satchel.server.__file__).resolve().parent / "sample"
        version = run(
            lambda: repo.publish_folder(
                source,
                bundle=SAMPLE_BUNDLE,
                locale=DEFAULT_LOCALE,
                title="Numbers around us (sample)",
            )
        )
        err.print(f"published sample bundle '{SAMPLE_BUNDLE}' version {version}")
    err.print(f"publisher key fingerprint {repo.key.public.fingerprint}")
    err.print(f"serving {data} on http://{host}:{port}")
    uvicorn.run(create_app(repo), host=host, port=port, log_level="warning")


@token_app.command("create")
def token_create(
    data: Annotated[Path, typer.Option(help="The server's data folder.")],
    role: Annotated[str, typer.Option(help="admin, teacher or curator.")],
    bundle: Annotated[str | None, typer.Option(help="Limit the token to one bundle.")] = None,
    locale: Annotated[str | None, typer.Option(help="Limit the token to one locale.")] = None,
    label: Annotated[str, typer.Option(help="A note on who holds it.")] = "",
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL; default SQLite in --data.")
    ] = None,
) -> None:
    """Create a token and print it (only the token, on stdout)."""
    repo = run(lambda: _repository(data, database_url, None, None))
    token = run(lambda: repo.create_token(role, bundle=bundle, locale=locale, label=label))
    typer.echo(token)


@token_app.command("list")
def token_list(
    data: Annotated[Path, typer.Option(help="The server's data folder.")],
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL; default SQLite in --data.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array on stdout.")] = False,
) -> None:
    """List tokens (never their secrets): id, role, grant, label, created, revoked."""
    repo = run(lambda: _repository(data, database_url, None, None))
    tokens = run(repo.list_tokens)
    if as_json:
        typer.echo(json.dumps(tokens))
        return
    for t in tokens:
        grant = f"{t['bundle'] or '*'}/{t['locale'] or '*'}"
        state = "revoked" if t["revoked"] else "active"
        typer.echo(f"{t['id']}\t{t['role']}\t{grant}\t{state}\t{t['created']}\t{t['label']}")


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (see 'satchel token list').")],
    data: Annotated[Path, typer.Option(help="The server's data folder.")],
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL; default SQLite in --data.")
    ] = None,
) -> None:
    """Revoke a token: its next request fails."""
    repo = run(lambda: _repository(data, database_url, None, None))
    run(lambda: repo.revoke_token(token_id))
    err.print(f"token {token_id} revoked")


@app.command()
def keygen(
    out: Annotated[Path, typer.Option(help="Where to write the new private key (mode 0600).")],
) -> None:
    """Write a new Ed25519 signing key, for servers that share one key."""
    key = SigningKey.generate()
    try:
        key.save(out)
    except FileExistsError:
        fail(f"{out} exists; refusing to overwrite a signing key", 2)
    err.print(f"fingerprint {key.public.fingerprint}")


# -- publish / sync / checkout ---------------------------------------------------------------
@app.command()
def publish(
    src: Annotated[Path, typer.Argument(help="Folder with the course files.")],
    server: Annotated[str, typer.Option(help="Server URL, e.g. http://127.0.0.1:8000.")],
    token: Annotated[
        str, typer.Option(help="Teacher, curator or admin token.", envvar="SATCHEL_TOKEN")
    ],
    bundle: Annotated[str, typer.Option(help="Bundle name.")],
    locale: Locale = DEFAULT_LOCALE,
    title: Annotated[str, typer.Option(help="Title shown in catalogs.")] = "",
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
) -> None:
    """Publish a folder as a new version; uploads only chunks the server lacks."""
    run(lambda: (check_bundle(bundle), check_locale(locale)))
    if from_locale is not None:
        run(lambda: check_locale(from_locale))
    if not src.is_dir():
        fail(f"{src} is not a folder", 2)
    client = run(lambda: HttpClient(server, token=token))
    with client, transfer_bar("upload", True) as bar:
        result = run(
            lambda: Publisher(client).publish(
                src,
                bundle=bundle,
                locale=locale,
                title=title or src.name,
                notes=notes,
                progress=bar,
                from_locale=from_locale,
                base_version=base_version,
            )
        )
    err.print(
        f"{bundle}/{locale} version {result.version}: {result.files} files, {result.size:,} bytes;"
        f" uploaded {result.objects_uploaded} of {result.objects_total} chunks"
        f" ({result.pack_bytes:,} bytes)"
    )
    typer.echo(result.version)


@app.command()
def translations(
    server: Annotated[str, typer.Option(help="Server URL, e.g. http://127.0.0.1:8000.")],
    bundle: Annotated[str, typer.Option(help="Bundle name.")],
    locale: Annotated[str, typer.Option("--locale", help="The variant's locale.")],
    as_json: Annotated[bool, typer.Option("--json", help="The report as one JSON object.")] = False,
) -> None:
    """Each file of a locale variant: up to date, stale, missing or extra against its base."""
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


def _retry_base() -> float:
    raw = os.environ.get(RETRY_BASE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{RETRY_BASE_ENV}={raw!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise UsageError(f"{RETRY_BASE_ENV} must be between 0 and 3600 seconds")
    return value


@app.command()
def sync(
    server: Annotated[str, typer.Option(help="Server or peer URL.")],
    bundle: Annotated[str, typer.Option(help="Bundle name.")],
    store: Annotated[Path, typer.Option(help="Local store folder.")],
    locale: Locale = DEFAULT_LOCALE,
    rate_limit: Annotated[
        str | None, typer.Option(help="Cap download speed, bytes/s (e.g. 32k).")
    ] = None,
    trust: Annotated[str | None, typer.Option(help="Publisher key fingerprint to trust.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with the result.")
    ] = False,
    max_bytes: Annotated[
        str | None,
        typer.Option(
            help="Data budget: stop once about this many bytes of pack data have arrived"
            " (e.g. 500k, 2m; k=1000). Everything received is kept, the version does not"
            " switch yet, exit code 5; the next sync resumes where this one stopped."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the exact number of bytes the update would download (its pack of"
            " chunks), without downloading it. That number excludes the index and manifest"
            " exchanges, which a dry run makes (and keeps) and prints separately as"
            " 'index+manifest: X bytes'. The version does not switch.",
        ),
    ] = False,
    retries: Annotated[
        int,
        typer.Option(
            min=0,
            max=100,
            help="Retry a failed link this many times, waiting about 1, 2, 4... seconds"
            " (at most 30); each retry resumes where the last one stopped.",
        ),
    ] = 3,
) -> None:
    """Bring a bundle up to date: fetch only missing chunks, verify, switch atomically."""
    rate = run(lambda: parse_rate(rate_limit)) if rate_limit else None
    budget = run(lambda: parse_size(max_bytes)) if max_bytes is not None else None
    if dry_run and budget is not None:
        fail("--dry-run downloads nothing, so it takes no --max-bytes", 2)
    policy = RetryPolicy(retries=retries, base=run(_retry_base))
    started = time.monotonic()
    local = run(lambda: LocalStore(store))
    client = run(lambda: HttpClient(server, rate_limit=rate))

    def announce_pin(fingerprint: str, rotated: bool) -> None:
        # Said the moment the key is pinned, so it is seen even if the sync then fails.
        why = "key changed, as --trust asked" if rotated else "first use"
        err.print(f"trusting publisher key {fingerprint} ({why})")

    retried = [0]

    def announce_retry(exc: BaseException, attempt: int, delay: float) -> None:
        retried[0] = attempt
        if err.is_terminal:  # chatter for a person watching; scripts get one line at the end
            err.print(f"link failed ({exc}); retry {attempt} of {retries} in {delay:.1f} s")

    def link_note() -> str:
        n = retried[0]
        return f"gave up after {n} {'retry' if n == 1 else 'retries'}; " if n else ""

    updater = Updater(
        local, client, trust=trust, on_pin=announce_pin, retry=policy, on_retry=announce_retry
    )
    content_note = " (nothing stored was changed: the current version is intact)"
    if dry_run:
        with client:
            plan = run(
                lambda: updater.plan(bundle, locale), content_note=content_note, link_note=link_note
            )
        _print_plan(plan, as_json, client, time.monotonic() - started)
        return
    with client, transfer_bar("sync", not as_json) as bar:
        result = run(
            lambda: updater.sync(bundle, locale, progress=bar, max_bytes=budget),
            content_note=content_note,
            link_note=link_note,
        )
    seconds = time.monotonic() - started
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "bundle": result.bundle,
                    "locale": result.locale,
                    "version": result.version if result.complete else result.previous_version,
                    "target_version": result.version,
                    "previous_version": result.previous_version,
                    "changed": result.changed,
                    "complete": result.complete,
                    "chunks_downloaded": result.objects_fetched,
                    "pack_bytes": result.bytes_fetched,
                    "bytes_downloaded": client.counters.bytes_downloaded,
                    "bytes_uploaded": client.counters.bytes_uploaded,
                    "requests": client.counters.requests,
                    "retries": result.retries,
                    "seconds": round(seconds, 3),
                }
            )
        )
    if not result.complete:
        err.print(
            f"{bundle}/{locale}: budget reached after {result.bytes_fetched:,} bytes of chunk"
            f" data ({client.counters.bytes_downloaded:,} bytes in all); kept"
            f" {result.objects_fetched} chunks, version {result.previous_version or 'none'}"
            f" stays current; the next sync resumes where this one stopped"
        )
        raise typer.Exit(EXIT_BUDGET)
    if as_json:
        return
    if result.changed:
        err.print(
            f"{bundle}/{locale}: version {result.previous_version or 'none'} -> {result.version};"
            f" {client.counters.bytes_downloaded:,} bytes in {client.counters.requests} requests"
        )
    else:
        err.print(f"{bundle}/{locale}: version {result.version} is current")


def _print_plan(plan: SyncPlan, as_json: bool, client: HttpClient, seconds: float) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "bundle": plan.bundle,
                    "locale": plan.locale,
                    "dry_run": True,
                    "version": plan.previous_version,
                    "target_version": plan.version,
                    "previous_version": plan.previous_version,
                    "route": plan.route,
                    "chunks_to_download": plan.objects + plan.ranges,
                    "bytes_to_download": plan.bytes_to_download,
                    "index_manifest_bytes": plan.meta_bytes,
                    "bytes_downloaded": client.counters.bytes_downloaded,
                    "bytes_uploaded": client.counters.bytes_uploaded,
                    "requests": client.counters.requests,
                    "seconds": round(seconds, 3),
                }
            )
        )
        return
    typer.echo(plan.bytes_to_download)
    if plan.route == "none" and not plan.ranges:
        what = f"version {plan.version} is current: nothing to download"
    else:
        how = {"static": "ready-made pack", "dynamic": "pack", "none": "no pack"}[plan.route]
        finish = f" and {plan.ranges} partly received" if plan.ranges else ""
        what = (
            f"version {plan.previous_version or 'none'} -> {plan.version} would download"
            f" {plan.bytes_to_download:,} bytes ({how}: {plan.objects} chunks{finish})"
        )
    err.print(
        f"{plan.bundle}/{plan.locale}: {what}; index+manifest: {plan.meta_bytes:,} bytes"
        " (exchanged by this dry run, not counted above)"
    )


@app.command()
def checkout(
    store: Annotated[Path, typer.Option(help="Local store folder.")],
    bundle: Annotated[str, typer.Option(help="Bundle name.")],
    to: Annotated[Path, typer.Option("--to", help="Folder to write (replaced atomically).")],
    locale: Locale = DEFAULT_LOCALE,
    version: Annotated[int | None, typer.Option(help="Version; default the current one.")] = None,
) -> None:
    """Write a stored version out as plain files."""

    def body() -> None:
        local = LocalStore(store)
        ref = local.ref(check_bundle(bundle), check_locale(locale))
        if ref is None:
            raise UsageError(f"{bundle}/{locale} is not in {store}; run satchel sync first")
        wanted = ref.version if version is None else version
        manifest_id = ref.versions.get(wanted)
        if manifest_id is None:
            have = ", ".join(str(v) for v in sorted(ref.versions))
            raise UsageError(
                f"version {wanted} of {bundle}/{locale} is not in the store (have {have})"
            )
        checkout_tree(local.load_manifest(manifest_id), local.objects, to)
        err.print(f"{bundle}/{locale} version {wanted} written to {to}")

    run(body)


@app.command()
def fsck(
    store: Annotated[Path, typer.Option(help="Local store folder.")],
    repair: Annotated[
        bool, typer.Option("--repair", help="Delete bad objects so the next sync refetches them.")
    ] = False,
) -> None:
    """Verify every stored chunk against its id and every version for completeness."""
    from satchel.sync.fsck import fsck as check_store

    report = run(lambda: check_store(LocalStore(store), repair=repair))
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
        raise typer.Exit(3)


# -- USB sync packs ---------------------------------------------------------------------------
@app.command("export")
def export_usb(
    store: Annotated[Path, typer.Option(help="Local store folder.")],
    bundle: Annotated[str, typer.Option(help="Bundle name.")],
    to: Annotated[Path, typer.Option("--to", help="USB folder to write or refresh.")],
    locale: Locale = DEFAULT_LOCALE,
    since: Annotated[
        int | None,
        typer.Option(help="Leave out objects of this version (the stick's reader has it)."),
    ] = None,
) -> None:
    """Write the current version to a USB folder that any client can verify offline."""
    from satchel.sync.usb import export_stick

    result = run(lambda: export_stick(LocalStore(store), bundle, locale, to, since=since))
    files = len(result.pack_files)
    plural = "" if files == 1 else "s"
    err.print(
        f"{bundle}/{locale} version {result.version} -> {to}: wrote {result.objects_written}"
        f" objects ({result.bytes_written:,} bytes) in {files} pack file{plural};"
        f" the stick holds {result.objects_on_stick} objects"
    )


@app.command("import")
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
) -> None:
    """Import versions from a USB folder: verify everything, store what is missing, switch."""
    from functools import partial

    from satchel.sync.usb import UsbFetcher, list_stick, stick_entries

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
        fail("import needs --store DIR (or --list)", 2)
    local = run(lambda: LocalStore(store))
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
            fail(f"{path} carries no version to import", 1)

    def announce_pin(fingerprint: str, rotated: bool) -> None:
        why = "key changed, as --trust asked" if rotated else "first use"
        err.print(f"trusting publisher key {fingerprint} ({why})")

    updater = Updater(local, fetcher, trust=trust, on_pin=announce_pin)
    content_note = " (nothing stored was changed: the current version is intact)"
    for b, loc in lines:
        result = run(partial(updater.sync, b, loc), content_note=content_note)
        if result.changed:
            err.print(
                f"{b}/{loc}: version {result.previous_version or 'none'} -> {result.version};"
                f" imported {result.objects_fetched} objects ({result.pack_bytes:,} bytes)"
            )
        else:
            err.print(f"{b}/{loc}: version {result.version} is current")


@app.command()
def status(
    store: Annotated[Path, typer.Option(help="Local store folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Bundles, versions and sizes in a store, and updates it knows are pending (offline)."""
    from satchel.sync.status import store_status

    if not (store / "satchel.json").is_file():
        fail(f"{store} is not a Satchel store (run satchel sync or import first)", 2)
    report = run(lambda: store_status(LocalStore(store)))
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
                            "pending_version": line.pending_version,
                        }
                        for line in report.lines
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
        pending = f"; version {line.pending_version} pending" if line.pending_version else ""
        typer.echo(
            f"{line.bundle}/{line.locale} version {line.version} (kept: {kept}):"
            f" {line.files} files, {line.size:,} bytes, {state}{pending}"
        )
    typer.echo(f"{report.objects} objects, {report.stored_bytes:,} bytes on disk")


def main() -> None:
    app(prog_name="satchel")


if __name__ == "__main__":
    main()
