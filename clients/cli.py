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

import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
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
from satchel.sync.care import DEFAULT_KEEP, collect_garbage, writer_lock
from satchel.sync.checkout import checkout_line
from satchel.sync.errors import TransportError
from satchel.sync.local import LocalStore
from satchel.sync.publish import Publisher
from satchel.sync.resume import RetryPolicy
from satchel.sync.status import LineStatus
from satchel.sync.updater import Only, SyncPlan, Updater

from .http import HttpClient, parse_rate, parse_size

if TYPE_CHECKING:
    from satchel.server.service import Repository
    from satchel.sync.store import ChunkStore

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
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        help="SQLAlchemy URL, e.g. postgresql+psycopg://USER@HOST/DB; default SQLite in --data.",
        envvar="SATCHEL_DATABASE_URL",
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


# -- serve / token / keygen -------------------------------------------------------------------
def _repository(
    data: Path,
    database_url: str | None,
    storage: str | None,
    signing_key: Path | None,
    static_deltas: int = 3,
    *,
    signs: bool = True,
) -> Repository:
    from satchel.server.service import Repository
    from satchel.sync.store import MemoryChunkStore

    if signing_key is not None and not signing_key.is_file():
        # Replicas must share one key: never make up a new one where a file was named.
        raise UsageError(
            f"signing key {signing_key} does not exist; create it once with"
            f" 'satchel keygen --out {signing_key}' and give the same file to every replica"
        )
    return Repository(
        data,
        database_url=database_url,
        signing_key=signing_key,
        # Administration touches no objects: do not create DATA/objects (or reach S3) for it.
        store=_chunk_store(storage) if signs else MemoryChunkStore(),
        static_deltas=static_deltas,
        signs=signs,
    )


def _chunk_store(storage: str | None) -> ChunkStore | None:
    """``--storage``: s3://bucket/prefix, file://PATH or a folder path (None: DATA/objects)."""
    from satchel.sync.store import FolderChunkStore

    if not storage:
        return None
    if storage.startswith("s3://"):
        from satchel.server.s3store import S3ChunkStore

        return S3ChunkStore.from_url(storage)
    if storage.startswith("file://"):
        return FolderChunkStore(Path(storage.removeprefix("file://")))
    if "://" in storage:
        raise UsageError(f"storage {storage!r}: use s3://bucket/prefix, file://PATH or a folder")
    return FolderChunkStore(Path(storage))


@app.command()
def serve(
    data: Annotated[Path, typer.Option(help="Data folder: database, objects, signing key.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    database_url: DatabaseUrl = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Object storage: s3://bucket/prefix (endpoint and credentials from the AWS_*"
            " environment variables), file://PATH or a folder; default DATA/objects."
        ),
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
    log_format: Annotated[
        str,
        typer.Option(help="Server logs on stderr: text (for people) or json (one object a line)."),
    ] = "text",
    access_log: Annotated[
        bool, typer.Option(help="One log line per request (method, route, status, bytes, time).")
    ] = True,
    keep_alive: Annotated[
        int,
        typer.Option(
            help="Seconds an idle client connection stays open. Keep it above the idle timeout"
            " of any proxy in front (nginx upstream keepalive_timeout), or requests race a close."
        ),
    ] = 75,
) -> None:
    """Run the server (SQLite + a local folder unless told otherwise)."""
    import uvicorn
    from satchel.server.app import create_app
    from satchel.server.observability import LOG_FORMATS, configure_logging

    if log_format not in LOG_FORMATS:
        fail(f"--log-format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}", 2)
    configure_logging(log_format, access=access_log)
    # With JSON logs every stderr line must be one JSON object: notices become records too.
    notice: Callable[[str], None] = (
        err.print if log_format == "text" else logging.getLogger("satchel.serve").info
    )
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
        notice(f"published sample bundle '{SAMPLE_BUNDLE}' version {version}")
    notice(f"publisher key fingerprint {repo.key.public.fingerprint}")
    notice(f"serving {data} on http://{host}:{port}")
    # log_config=None: keep the handler configured above; our middleware logs requests.
    uvicorn.run(
        create_app(repo),
        host=host,
        port=port,
        log_level="warning",
        log_config=None,
        access_log=False,
        # uvicorn's 5 s default closes connections that a busy client or a proxy is about to
        # reuse: 119 of 500 load-test syncs failed "disconnected without a response" with it.
        timeout_keep_alive=max(keep_alive, 1),
    )


@token_app.command("create")
def token_create(
    data: Annotated[Path, typer.Option(help="The server's data folder.")],
    role: Annotated[str, typer.Option(help="admin, teacher or curator.")],
    bundle: Annotated[str | None, typer.Option(help="Limit the token to one bundle.")] = None,
    locale: Annotated[str | None, typer.Option(help="Limit the token to one locale.")] = None,
    label: Annotated[str, typer.Option(help="A note on who holds it.")] = "",
    database_url: DatabaseUrl = None,
) -> None:
    """Create a token and print it (only the token, on stdout)."""
    repo = run(lambda: _repository(data, database_url, None, None, signs=False))
    token = run(lambda: repo.create_token(role, bundle=bundle, locale=locale, label=label))
    typer.echo(token)


@token_app.command("list")
def token_list(
    data: Annotated[Path, typer.Option(help="The server's data folder.")],
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array on stdout.")] = False,
) -> None:
    """List tokens (never their secrets): id, role, grant, label, created, revoked."""
    # Administration never signs: a stray key here must not re-sign the replicas' index.
    repo = run(lambda: _repository(data, database_url, None, None, signs=False))
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
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a token: its next request fails."""
    # Administration never signs: a stray key here must not re-sign the replicas' index.
    repo = run(lambda: _repository(data, database_url, None, None, signs=False))
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
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="Fetch only this file, folder or lesson (repeatable). The selection is kept:"
            " later syncs keep it; a new --only list replaces it and fetches only what is new.",
        ),
    ] = None,
    all_files: Annotated[
        bool, typer.Option("--all", help="Fetch every file again (ends a selective sync).")
    ] = False,
    keep: Keep = DEFAULT_KEEP,
    reserve: Reserve = "50m",
) -> None:
    """Bring a bundle up to date: fetch only missing chunks, verify, switch atomically."""
    if only and all_files:
        fail("--only and --all contradict each other; give one", 2)
    selection: Only = "all" if all_files else (list(only) if only else "keep")
    reserve_bytes = run(lambda: _reserve(reserve))
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
        local,
        client,
        trust=trust,
        on_pin=announce_pin,
        retry=policy,
        on_retry=announce_retry,
        reserve=reserve_bytes,
    )
    content_note = " (nothing stored was changed: the current version is intact)"
    lock = run(lambda: _locked(local))
    with lock:
        if dry_run:
            with client:
                plan = run(
                    lambda: updater.plan(bundle, locale, only=selection),
                    content_note=content_note,
                    link_note=link_note,
                )
            _print_plan(plan, as_json, client, time.monotonic() - started)
            return
        with client, transfer_bar("sync", not as_json) as bar:
            result = run(
                lambda: updater.sync(
                    bundle, locale, progress=bar, max_bytes=budget, only=selection
                ),
                content_note=content_note,
                link_note=link_note,
            )
        freed = _collect(local, keep) if result.complete else 0
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
                    "only": _ref_only(local, bundle, locale),
                    "bytes_freed": freed,
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


def _locked(local: LocalStore) -> contextlib.ExitStack[bool | None]:
    """The store's writer lock, entered now so that a busy store fails with one line."""
    stack = contextlib.ExitStack()
    stack.enter_context(writer_lock(local))
    return stack


def _reserve(text: str) -> int | None:
    """``--reserve``: a size, ``0`` (only what the sync needs must fit) or ``off`` (no check)."""
    value = text.strip().lower()
    if value == "off":
        return None
    return 0 if value == "0" else parse_size(value)


def _collect(local: LocalStore, keep: int) -> int:
    """Keep ``keep`` versions per line and delete what nothing kept uses; returns bytes freed."""
    result = run(lambda: collect_garbage(local, keep))
    if result.versions_dropped or result.objects_deleted:
        err.print(
            f"kept the newest {keep} version{'s' if keep != 1 else ''}: dropped"
            f" {', '.join(result.versions_dropped) or 'no versions'}, freed"
            f" {result.bytes_freed:,} bytes ({result.objects_deleted} objects)"
        )
    return result.bytes_freed


def _ref_only(local: LocalStore, bundle: str, locale: str) -> list[str] | None:
    ref = local.ref(bundle, locale)
    return list(ref.only) if ref is not None and ref.only is not None else None


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
        done = checkout_line(local, check_bundle(bundle), check_locale(locale), to, version)
        if done.only is None:
            err.print(f"{bundle}/{locale} version {done.version} written to {to}")
            return
        err.print(
            f"{bundle}/{locale} version {done.version} written to {to}: {done.files} of"
            f" {done.total} files (selective sync: {', '.join(done.only)})"
        )

    run(body)


@app.command()
def fsck(
    store: Annotated[Path | None, typer.Option(help="Local store folder.")] = None,
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
    if (store is None) == (data is None):
        fail("give either --store (a local store) or --data (a server's data folder)", 2)
    if data is not None:
        _fsck_server(data, database_url, storage, repair)
        return
    assert store is not None
    from satchel.sync.fsck import fsck as check_store

    local = run(lambda: LocalStore(store))
    with run(lambda: _locked(local)) if repair else contextlib.nullcontext():
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
        raise typer.Exit(3)


def _fsck_server(data: Path, database_url: str | None, storage: str | None, repair: bool) -> None:
    from satchel.server.fsck import fsck_server

    if repair:
        fail("--repair is for local stores; a server's objects are re-sent by publishing again", 2)
    if not (data / "signing-key.pem").exists() and database_url is None:
        fail(f"{data} is not a server data folder (no signing-key.pem)", 2)
    report = run(lambda: fsck_server(_repository(data, database_url, storage, None)))
    for problem in report.problems:
        err.print(f"problem: {problem}")
    err.print(
        f"{report.objects} objects and {report.versions} versions checked,"
        f" {len(report.problems)} problems, {report.orphans} unlisted objects (harmless)"
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
    keep: Keep = DEFAULT_KEEP,
    reserve: Reserve = "50m",
) -> None:
    """Import versions from a USB folder: verify everything, store what is missing, switch."""
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

    reserve_bytes = run(lambda: _reserve(reserve))
    updater = Updater(local, fetcher, trust=trust, on_pin=announce_pin, reserve=reserve_bytes)
    content_note = " (nothing stored was changed: the current version is intact)"
    with run(lambda: _locked(local)):
        for b, loc in lines:
            result = run(partial(updater.sync, b, loc), content_note=content_note)
            if result.changed:
                err.print(
                    f"{b}/{loc}: version {result.previous_version or 'none'} -> {result.version};"
                    f" imported {result.objects_fetched} objects ({result.pack_bytes:,} bytes)"
                )
            else:
                err.print(f"{b}/{loc}: version {result.version} is current")
        _collect(local, keep)


@app.command()
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
        fail(f"{store} is not a Satchel store (run satchel sync or import first)", 2)
    local = run(lambda: LocalStore(store))
    exact: dict[tuple[str, str], SyncPlan] = {}
    if server is not None:
        client = run(lambda: HttpClient(server))
        updater = Updater(local, client)
        with client, run(lambda: _locked(local)):
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
            state += f"; version {pending} pending{price}"
        typer.echo(
            f"{line.bundle}/{line.locale} version {line.version} (kept: {kept}):"
            f" {line.files} files, {line.size:,} bytes, {state}"
        )
    typer.echo(f"{report.objects} objects, {report.stored_bytes:,} bytes on disk")


@app.command()
def gc(
    store: Annotated[Path, typer.Option(help="Local store folder.")],
    keep: Annotated[
        int, typer.Option(min=1, max=1000, help="Versions to keep per bundle.")
    ] = DEFAULT_KEEP,
) -> None:
    """Keep the newest versions of each bundle and delete chunks nothing kept uses."""
    if not (store / "satchel.json").is_file():
        fail(f"{store} is not a Satchel store", 2)
    local = run(lambda: LocalStore(store))
    with run(lambda: _locked(local)):
        freed = _collect(local, keep)
    if not freed:
        err.print("nothing to collect")


# -- classroom relay -----------------------------------------------------------------------
@app.command()
def share(
    store: Annotated[Path, typer.Option(help="Local store folder to serve (read-only).")],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: the LAN).")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8001,
    name: Annotated[str | None, typer.Option(help="Name announced on the LAN.")] = None,
    announce: Annotated[
        bool, typer.Option("--announce/--no-announce", help="Announce with mDNS (zeroconf).")
    ] = True,
) -> None:
    """Serve this store to other laptops with the server's protocol; they verify everything."""
    import uvicorn

    from .share import announce as mdns
    from .share import create_share_app

    if not (store / "satchel.json").is_file():
        fail(f"{store} is not a Satchel store (run satchel sync or import first)", 2)
    local = run(lambda: LocalStore(store))
    app_ = create_share_app(local)
    with contextlib.ExitStack() as stack:
        if announce:
            try:
                announced = stack.enter_context(mdns(local, host, port, name))
                err.print(f"announced on the LAN as {announced}")
            except OSError as exc:  # no multicast on this network: serving still works
                err.print(f"not announced on the LAN ({exc.strerror or exc}); serving anyway")
        err.print(f"sharing {store} read-only on http://{host}:{port}")
        uvicorn.run(app_, host=host, port=port, log_level="warning")


@app.command()
def peers(
    timeout: Annotated[float, typer.Option(min=0.1, max=60, help="Seconds to listen.")] = 3.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """List relays (satchel share) announced on the LAN."""
    from .share import find_peers

    found = run(lambda: find_peers(timeout))
    if as_json:
        typer.echo(json.dumps({"peers": [dataclasses.asdict(p) for p in found]}))
        return
    for p in found:
        typer.echo(f"{p.url}  {p.name}  publisher {p.publisher or '?'}  {p.bundles}")
    if not found:
        err.print(f"no peers found in {timeout:g} s")


# -- offline viewer --------------------------------------------------------------------------
@app.command()
def view(
    store: Annotated[Path, typer.Option(help="Local store folder to show.")],
    host: Annotated[str, typer.Option(help="Address to listen on (keep it local).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8010,
) -> None:
    """Offline lesson viewer: every synced bundle and locale, served from the chunk store."""
    import uvicorn

    from .view import create_app, open_store

    local = run(lambda: open_store(store))
    err.print(f"viewing {store} on http://{host}:{port}/")
    uvicorn.run(create_app(local), host=host, port=port, log_level="warning")


def main() -> None:
    app(prog_name="satchel")


if __name__ == "__main__":
    main()
