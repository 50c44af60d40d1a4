"""``satchel sync`` and ``satchel checkout``: bring a line up to date, write a version out."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from satchel.content.errors import UsageError
from satchel.content.names import DEFAULT_LOCALE, check_bundle, check_locale
from satchel.edge.cli import err, fail, run
from satchel.sync.care import DEFAULT_KEEP
from satchel.sync.checkout import checkout_line
from satchel.sync.local import LocalStore
from satchel.sync.resume import RetryPolicy
from satchel.sync.updater import Only, SyncPlan, Updater

from ..http import HttpClient, parse_rate, parse_size
from .common import (
    EXIT_BUDGET,
    Keep,
    Locale,
    Reserve,
    collect,
    locked,
    parse_reserve,
    pin_notice,
    transfer_bar,
)
from .view import refresh_search

commands = typer.Typer()
RETRY_BASE_ENV = "SATCHEL_RETRY_BASE_SECONDS"


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


@commands.command()
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
    reserve_bytes = run(lambda: parse_reserve(reserve))
    rate = run(lambda: parse_rate(rate_limit)) if rate_limit else None
    budget = run(lambda: parse_size(max_bytes)) if max_bytes is not None else None
    if dry_run and budget is not None:
        fail("--dry-run downloads nothing, so it takes no --max-bytes", 2)
    policy = RetryPolicy(retries=retries, base=run(_retry_base))
    started = time.monotonic()
    local = run(lambda: LocalStore(store))
    client = run(lambda: HttpClient(server, rate_limit=rate))

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
        on_pin=pin_notice,
        retry=policy,
        on_retry=announce_retry,
        reserve=reserve_bytes,
    )
    content_note = " (nothing stored was changed: the current version is intact)"
    lock = run(lambda: locked(local))
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
        freed = collect(local, keep) if result.complete else 0
        refresh_search(local, when=result.complete)
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


@commands.command()
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
