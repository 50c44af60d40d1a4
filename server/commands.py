"""The server's commands: ``serve``, ``token create|list|revoke``, ``keygen`` and the server half
of ``fsck``, with the storage URLs they take.

Heavy modules (the database layer, the web app) are imported inside the commands that need
them: every ``satchel`` invocation loads this module, and a laptop's ``satchel sync`` should
not pay for a server's start-up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from satchel.content.errors import EXIT_USAGE, EXIT_VERIFICATION, UsageError
from satchel.content.names import DEFAULT_LOCALE
from satchel.content.signing import SigningKey
from satchel.edge.cli import err, fail, run
from satchel.sync.store import ChunkStore, FolderChunkStore, MemoryChunkStore

if TYPE_CHECKING:
    from .repository import Repository

commands = typer.Typer()
token_commands = typer.Typer(help="Manage publishing tokens.", no_args_is_help=True)

SAMPLE_BUNDLE = "sample"
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        help="SQLAlchemy URL, e.g. postgresql+psycopg://USER@HOST/DB; default SQLite in --data.",
        envvar="SATCHEL_DATABASE_URL",
    ),
]


DATABASE_FILE = "satchel.db"
KEY_FILE = "signing-key.pem"


def open_repository(
    data: Path,
    database_url: str | None,
    storage: str | None,
    signing_key: Path | None,
    static_deltas: int = 3,
    *,
    signs: bool = True,
    objects: bool | None = None,
    creates: bool = False,
) -> Repository:
    """The server's repository in ``data``. Only ``serve`` passes ``creates``: every other
    command refuses a folder (or a database) that is not already a server's, so a typo in
    ``--data`` names the mistake instead of quietly making a new, empty server. ``objects``
    (default: ``signs``) opens the object store; administration needs none."""
    from .repository import Repository

    if signing_key is not None and not signing_key.is_file():
        # Replicas must share one key: never make up a new one where a file was named.
        raise UsageError(
            f"signing key {signing_key} does not exist; create it once with"
            f" 'satchel keygen --out {signing_key}' and give the same file to every replica"
        )
    if not creates:
        check_server_data(data, database_url)
    return Repository(
        data,
        database_url=database_url,
        signing_key=signing_key,
        # Administration touches no objects: do not create DATA/objects (or reach S3) for it.
        store=(
            chunk_store(storage) if (signs if objects is None else objects) else MemoryChunkStore()
        ),
        static_deltas=static_deltas,
        signs=signs,
        creates=creates,
    )


def check_server_data(data: Path, database_url: str | None) -> None:
    """Refuse what is not a server's data: a folder without the SQLite database, or (with
    ``--database-url``, where the folder may hold no database at all and is not looked at) a
    database that is someone else's or an SQLite file that does not exist. No folder is
    created either way."""
    made_by = "'satchel serve --data DIR' makes one on its first start"
    if database_url is None:
        if not data.is_dir():
            raise UsageError(
                f"{data} does not exist: it is not a server data folder (no {DATABASE_FILE};"
                f" {made_by}); check the path"
            )
        if not (data / DATABASE_FILE).is_file():
            raise UsageError(
                f"{data} is not a server data folder (no {DATABASE_FILE} in it; {made_by});"
                " check the path, or give the server's --database-url"
            )
        return
    from .db import database_state

    state = database_state(database_url)
    if state == "missing":
        raise UsageError(
            "the SQLite file named by --database-url does not exist; check the URL"
            " (the server's own database is DATA/satchel.db)"
        )
    if state == "other":
        raise UsageError(
            "the database at --database-url holds other tables but not Satchel's; check the URL"
        )
    # "empty": a database made for Satchel that no server has started on yet; the command
    # creates the schema as 'serve' would (replicas' tokens can be made before their start).


def chunk_store(storage: str | None) -> ChunkStore | None:
    """``--storage``: s3://bucket/prefix, file://PATH or a folder path (None: DATA/objects)."""
    if not storage:
        return None
    if storage.startswith("s3://"):
        from .s3store import S3ChunkStore

        return S3ChunkStore.from_url(storage)
    if storage.startswith("file://"):
        return FolderChunkStore(Path(storage.removeprefix("file://")))
    if "://" in storage:
        raise UsageError(f"storage {storage!r}: use s3://bucket/prefix, file://PATH or a folder")
    return FolderChunkStore(Path(storage))


@commands.command()
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
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            help="Address of a reverse proxy in front (repeatable): only requests from it may"
            " name the client's address in X-Forwarded-For. None: the header is ignored.",
        ),
    ] = None,
) -> None:
    """Run the server (SQLite + a local folder unless told otherwise)."""
    from satchel.edge.listen import bind
    from satchel.edge.listen import serve as serve_on

    from .app import create_app
    from .observability import LOG_FORMATS, configure_logging

    if log_format not in LOG_FORMATS:
        fail(
            f"--log-format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}", EXIT_USAGE
        )
    configure_logging(log_format, access=access_log)
    # With JSON logs every stderr line must be one JSON object: notices become records too.
    notice: Callable[[str], None] = (
        err.print if log_format == "text" else logging.getLogger("satchel.serve").info
    )
    repo = run(
        lambda: open_repository(
            data, database_url, storage, signing_key, static_deltas, creates=True
        )
    )
    # The port before the sample and the banner: a busy one fails before anything is announced
    # (after the settings are checked, so a wrong option is reported whatever the port).
    sock = run(lambda: bind(host, port))
    if sample and not any(b.bundle == SAMPLE_BUNDLE for b in repo.reads.catalog(SAMPLE_BUNDLE)):
        source = Path(__file__).resolve().parent / "sample"
        version = run(
            lambda: repo.publishing.publish_folder(
                source,
                bundle=SAMPLE_BUNDLE,
                locale=DEFAULT_LOCALE,
                title="Numbers around us (sample)",
            )
        )
        notice(f"published sample bundle '{SAMPLE_BUNDLE}' version {version}")
    notice(f"publisher key fingerprint {repo.key.public.fingerprint}")
    notice(f"serving {data} on http://{host}:{port} (web page: http://{host}:{port}/web/)")
    # log_config=None: keep the handler configured above; our middleware logs requests.
    serve_on(
        create_app(repo),
        sock,
        log_level="warning",
        log_config=None,
        access_log=False,
        # uvicorn's 5 s default closes connections that a busy client or a proxy is about to
        # reuse: 119 of 500 load-test syncs failed "disconnected without a response" with it.
        timeout_keep_alive=max(keep_alive, 1),
        # The failed-authentication brake counts per client address: take that address from
        # X-Forwarded-For only when the request comes from a proxy named here (never from "*",
        # and never from uvicorn's environment default).
        proxy_headers=bool(trusted_proxy),
        forwarded_allow_ips=",".join(trusted_proxy or []) or None,
    )


@token_commands.command("create")
def token_create(
    data: Annotated[Path, typer.Option(help="The server's data folder.")],
    role: Annotated[
        str,
        typer.Option(
            help="admin (everything, tokens too), teacher (publishes; --bundle/--locale limit"
            " it) or curator (publishes locale variants of one bundle: needs --bundle and"
            " --locale)."
        ),
    ],
    bundle: Annotated[str | None, typer.Option(help="Limit the token to one bundle.")] = None,
    locale: Annotated[str | None, typer.Option(help="Limit the token to one locale.")] = None,
    label: Annotated[
        str,
        typer.Option(help="Who holds it, e.g. 'Ana, grade 5' (shown in history and lists)."),
    ] = "",
    database_url: DatabaseUrl = None,
) -> None:
    """Create a token and print it (only the token, on stdout). Roles: admin, teacher, curator."""
    repo = run(lambda: open_repository(data, database_url, None, None, signs=False))
    token = run(lambda: repo.tokens.create(role, bundle=bundle, locale=locale, label=label))
    typer.echo(token)


@token_commands.command("list")
def token_list(
    data: Annotated[Path, typer.Option(help="The server's data folder.")],
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array on stdout.")] = False,
) -> None:
    """List tokens (never their secrets): id, role, grant, label, created, revoked."""
    # Administration never signs: a stray key here must not re-sign the replicas' index.
    repo = run(lambda: open_repository(data, database_url, None, None, signs=False))
    tokens = run(repo.tokens.list)
    if as_json:
        typer.echo(json.dumps([asdict(t) for t in tokens]))
        return
    for t in tokens:
        grant = f"{t.bundle or '*'}/{t.locale or '*'}"
        state = "revoked" if t.revoked else "active"
        typer.echo(f"{t.id}\t{t.role}\t{grant}\t{state}\t{t.created}\t{t.label}")


@token_commands.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (see 'satchel token list').")],
    data: Annotated[Path, typer.Option(help="The server's data folder.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a token: its next request fails."""
    # Administration never signs: a stray key here must not re-sign the replicas' index.
    repo = run(lambda: open_repository(data, database_url, None, None, signs=False))
    run(lambda: repo.tokens.revoke(token_id))
    err.print(f"token {token_id} revoked")


@commands.command()
def keygen(
    out: Annotated[Path, typer.Option(help="Where to write the new private key (mode 0600).")],
) -> None:
    """Write a new Ed25519 signing key, for servers that share one key."""
    key = SigningKey.generate()
    try:
        key.save(out)
    except FileExistsError:
        fail(f"{out} exists; refusing to overwrite a signing key", EXIT_USAGE)
    err.print(f"fingerprint {key.public.fingerprint}")


def fsck_server(data: Path, database_url: str | None, storage: str | None, repair: bool) -> None:
    """The ``fsck --data`` half: the store and the database must agree on every version."""
    from .fsck import fsck_server as check

    if repair:
        fail(
            "--repair is for local stores; a server's objects are re-sent by publishing again",
            EXIT_USAGE,
        )
    if storage is None and database_url is not None and not (data / "objects").is_dir():
        # The database is elsewhere, but the objects are in DATA/objects unless --storage.
        fail(
            f"{data} holds no objects folder; give the server's --storage, or its --data",
            EXIT_USAGE,
        )
    # signs=False: a check never re-signs the index (no key is made up for a folder without one).
    report = run(
        lambda: check(open_repository(data, database_url, storage, None, signs=False, objects=True))
    )
    for problem in report.problems:
        err.print(f"problem: {problem}")
    err.print(
        f"{report.objects} objects and {report.versions} versions checked,"
        f" {len(report.problems)} problems, {report.orphans} unlisted objects (harmless)"
    )
    if not report.clean:
        raise typer.Exit(EXIT_VERIFICATION)
