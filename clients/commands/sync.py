"""``satchel sync`` and ``satchel checkout``: bring a line up to date, write a version out."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from satchel.content.errors import (
    EXIT_BUDGET,
    EXIT_USAGE,
    AuthError,
    ContentError,
    ForbiddenError,
    NotFoundError,
    SatchelError,
    UsageError,
)
from satchel.content.names import DEFAULT_LOCALE, check_bundle, check_locale
from satchel.edge.cli import err, fail, run
from satchel.sync.care import DEFAULT_KEEP
from satchel.sync.local import LocalStore, discard_if_unused

from .common import (
    EveryBundle,
    EveryLocale,
    Keep,
    Locale,
    Reserve,
    collect,
    locked,
    parse_reserve,
    pin_notice,
    transfer_bar,
)
from .records import exchange_records, say_records
from .view import refresh_search

if TYPE_CHECKING:  # loaded by the commands that use them (tests/test_cli_startup.py)
    from satchel.sync.resume import RetryPolicy
    from satchel.sync.updater import Only, SyncPlan, SyncResult, Updater

    from ..http import Counters, HttpClient

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
    store: Annotated[Path, typer.Option(help="Local store folder.")],
    bundle: EveryBundle = None,
    locale: EveryLocale = None,
    rate_limit: Annotated[
        str | None,
        typer.Option(help="Cap download speed, bytes/s (e.g. 32k); bursts last a second at most."),
    ] = None,
    trust: Annotated[str | None, typer.Option(help="Publisher key fingerprint to trust.")] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print one JSON object with the result (without --bundle: {"lines": (one'
            " object per line), ...totals}).",
        ),
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
            help="Print the exact number of bytes the update's pack would download, without"
            " downloading it, and on stderr what the whole sync costs (the index and manifest"
            " too: this dry run fetches and keeps them, so the sync does not fetch them"
            " again). The version does not switch.",
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
            help="Fetch only this file, folder or lesson (repeatable; needs --bundle). The"
            " selection is kept: later syncs keep it; a new --only list replaces it and"
            " fetches only what is new.",
        ),
    ] = None,
    all_files: Annotated[
        bool, typer.Option("--all", help="Fetch every file again (ends a selective sync).")
    ] = False,
    keep: Keep = DEFAULT_KEEP,
    reserve: Reserve = "50m",
) -> None:
    """Bring a bundle (or every bundle held) up to date: fetch only missing chunks, verify,
    switch atomically."""
    from satchel.sync.resume import RetryPolicy

    from ..http import parse_rate, parse_size

    if only and all_files:
        fail("--only and --all contradict each other; give one", EXIT_USAGE)
    if only and bundle is None:
        fail("--only selects files of one bundle: give --bundle too", EXIT_USAGE)
    selection: Only = "all" if all_files else (list(only) if only else "keep")
    reserve_bytes = run(lambda: parse_reserve(reserve))
    rate = run(lambda: parse_rate(rate_limit)) if rate_limit else None
    budget = run(lambda: parse_size(max_bytes)) if max_bytes is not None else None
    if dry_run and budget is not None:
        fail("--dry-run downloads nothing, so it takes no --max-bytes", EXIT_USAGE)
    policy = RetryPolicy(retries=retries, base=run(_retry_base))
    fresh = not store.exists()
    args = _SyncArgs(server, store, bundle, locale, rate, trust, as_json, budget, dry_run)
    try:
        # run() around it all: Ctrl-C anywhere says how to resume (exit 130).
        run(lambda: _sync(args, policy, selection, keep, reserve_bytes))
    except BaseException:
        # A first sync that got nothing (a wrong URL, a server that is down) leaves no folder.
        if fresh:  # quietly: the error stays the one line on stderr
            discard_if_unused(store)
        raise


@dataclass(frozen=True, slots=True)
class _SyncArgs:
    server: str
    store: Path
    bundle: str | None
    locale: str | None
    rate: float | None
    trust: str | None
    as_json: bool
    budget: int | None
    dry_run: bool


def _sync(
    args: _SyncArgs, policy: RetryPolicy, selection: Only, keep: int, reserve: int | None
) -> None:
    from satchel.sync.updater import Updater

    from ..http import HttpClient

    started = time.monotonic()
    local = run(lambda: LocalStore(args.store))
    client = run(lambda: HttpClient(args.server, rate_limit=args.rate))

    retried = [0]

    def announce_retry(exc: BaseException, attempt: int, delay: float) -> None:
        retried[0] = attempt
        if err.is_terminal:  # chatter for a person watching; scripts get one line at the end
            err.print(f"link failed ({exc}); retry {attempt} of {policy.retries} in {delay:.1f} s")

    def link_note() -> str:
        n = retried[0]
        return f"gave up after {n} {'retry' if n == 1 else 'retries'}; " if n else ""

    updater = Updater(
        local,
        client,
        trust=args.trust,
        on_pin=pin_notice,
        retry=policy,
        on_retry=announce_retry,
        reserve=reserve,
    )
    content_note = " (nothing stored was changed: the current version is intact)"
    lock = run(lambda: locked(local))
    with lock:
        lines = _lines(local, args)
        if args.bundle is None:
            _sync_many(args, local, client, updater, lines, selection, keep, started)
            return
        bundle, locale = lines[0]
        if args.dry_run:
            with client:
                plan = run(
                    lambda: updater.plan(bundle, locale, only=selection),
                    content_note=content_note,
                    link_note=link_note,
                )
            _print_plan(plan, args.as_json, client, time.monotonic() - started)
            return
        with client, transfer_bar("sync", not args.as_json) as bar:
            result = run(
                lambda: updater.sync(
                    bundle, locale, progress=bar, max_bytes=args.budget, only=selection
                ),
                content_note=content_note,
                link_note=link_note,
            )
            records = exchange_records(local, client)  # at most one more request
        freed = collect(local, keep) if result.complete else 0
        refresh_search(local, when=result.complete)
    seconds = time.monotonic() - started
    if args.as_json:
        line = _result_json(result, local, client.counters, freed, seconds)
        typer.echo(json.dumps({**line, **records.fields()}))
    else:
        say_records(records)
    if not result.complete:
        _budget_notice(result, client.counters.bytes_downloaded)
        raise typer.Exit(EXIT_BUDGET)
    if not args.as_json:
        _print_result(result, client.counters.bytes_downloaded, client.counters.requests)


def _lines(local: LocalStore, args: _SyncArgs) -> list[tuple[str, str]]:
    """The lines to sync: the one named, or every one the store holds (of --locale)."""
    if args.bundle is not None:
        locale = args.locale or DEFAULT_LOCALE
        run(lambda: (check_bundle(str(args.bundle)), check_locale(locale)))
        return [(args.bundle, locale)]
    held = [
        (ref.bundle, ref.locale)
        for ref in run(local.refs)
        if args.locale is None or ref.locale == args.locale
    ]
    if not held:
        what = f"no bundle in locale {args.locale}" if args.locale else "no bundle yet"
        fail(f"{args.store} holds {what}: name one with --bundle NAME", EXIT_USAGE)
    return held


def _sync_many(
    args: _SyncArgs,
    local: LocalStore,
    client: HttpClient,
    updater: Updater,
    lines: list[tuple[str, str]],
    selection: Only,
    keep: int,
    started: float,
) -> None:
    """Every line the store holds, one after the other, then one summary. A line that fails
    (no longer published, say) does not stop the others; a failed link stops them all."""
    counters = client.counters
    done: list[dict[str, object]] = []
    results: list[SyncResult] = []
    plans: list[SyncPlan] = []
    failures: list[tuple[str, SatchelError]] = []
    spent = 0
    records = None
    with client, transfer_bar("sync", not args.as_json and not args.dry_run) as bar:
        for bundle, locale in lines:
            before = (counters.bytes_downloaded, counters.bytes_uploaded, counters.requests)
            began = time.monotonic()
            try:
                if args.dry_run:
                    plan = updater.plan(bundle, locale, only=selection)
                    plans.append(plan)
                    done.append(
                        _plan_json(plan, _Counts.since(counters, before), time.monotonic() - began)
                    )
                    continue
                left = None if args.budget is None else max(args.budget - spent, 1)
                result = updater.sync(bundle, locale, progress=bar, max_bytes=left, only=selection)
            except SatchelError as exc:
                failures.append((f"{bundle}/{locale}", exc))
                line = {"bundle": bundle, "locale": locale}
                done.append({**line, "error": str(exc), "exit_code": exc.exit_code})
                if isinstance(exc, (ContentError, NotFoundError, AuthError, ForbiddenError)):
                    continue  # this line's problem: the others may be fine
                break  # the link or the machine: the next line would fail the same way
            results.append(result)
            spent += result.bytes_fetched
            done.append(
                _result_json(
                    result, local, _Counts.since(counters, before), 0, time.monotonic() - began
                )
            )
            if not result.complete:
                break  # the budget is spent: the rest waits for the next sync
        if results:  # the learning records go once for every line, at most one more request
            records = exchange_records(local, client)
    complete = all(r.complete for r in results)
    freed = collect(local, keep) if results and complete and not args.dry_run else 0
    refresh_search(local, when=any(r.changed for r in results))
    seconds = time.monotonic() - started
    if args.as_json:
        totals: dict[str, object] = {
            "lines": done,
            "complete": complete and not failures,
            "bytes_downloaded": counters.bytes_downloaded,
            "bytes_uploaded": counters.bytes_uploaded,
            "requests": counters.requests,
            "seconds": round(seconds, 3),
        }
        if args.dry_run:
            totals["dry_run"] = True
            totals["bytes_to_download"] = sum(p.bytes_to_download for p in plans)
        else:
            totals["bytes_freed"] = freed
        if records is not None:
            totals.update(records.fields())
        typer.echo(json.dumps(totals))
    elif args.dry_run:
        typer.echo(sum(p.bytes_to_download for p in plans))
        for plan in plans:
            _plan_notice(plan)
    else:
        for result in results:
            if result.complete:
                _print_result(result, None, None)
        if records is not None:
            say_records(records)
    for where, failure in failures:
        err.print(f"error: {where}: {' '.join(str(failure).split())}")
    if not args.as_json:
        updated = sum(1 for r in results if r.changed)
        current = sum(1 for r in results if r.complete and not r.changed)
        tally = f"{len(plans)} checked" if args.dry_run else f"{updated} updated, {current} current"
        tried = len(results) + len(plans) + len(failures)
        failed = f", {len(failures)} failed" if failures else ""
        if tried < len(lines):
            failed += f", {len(lines) - tried} not tried (run again when the link is back)"
        plural = "" if len(lines) == 1 else "s"
        err.print(
            f"{len(lines)} line{plural}: {tally}{failed}; {counters.bytes_downloaded:,} bytes"
            f" in {_count(counters.requests, 'request')}"
        )
    if failures:
        raise typer.Exit(failures[0][1].exit_code)
    if not complete:
        stopped = next(r for r in results if not r.complete)
        _budget_notice(stopped, counters.bytes_downloaded)
        raise typer.Exit(EXIT_BUDGET)


@dataclass(frozen=True, slots=True)
class _Counts:
    """What one line of a many-line sync cost (the client's counters are for the whole run)."""

    bytes_downloaded: int
    bytes_uploaded: int
    requests: int

    @staticmethod
    def since(counters: Counters, before: tuple[int, int, int]) -> _Counts:
        return _Counts(
            counters.bytes_downloaded - before[0],
            counters.bytes_uploaded - before[1],
            counters.requests - before[2],
        )


def _result_json(
    result: SyncResult, local: LocalStore, counts: Counters | _Counts, freed: int, seconds: float
) -> dict[str, object]:
    return {
        "bundle": result.bundle,
        "locale": result.locale,
        "version": result.version if result.complete else result.previous_version,
        "target_version": result.version,
        "previous_version": result.previous_version,
        "changed": result.changed,
        "complete": result.complete,
        "chunks_downloaded": result.objects_fetched,
        "pack_bytes": result.bytes_fetched,
        "bytes_downloaded": counts.bytes_downloaded,
        "bytes_uploaded": counts.bytes_uploaded,
        "requests": counts.requests,
        "retries": result.retries,
        "removed": result.removed,
        "withdrawn": result.withdrawn,
        "only": _ref_only(local, result.bundle, result.locale),
        "bytes_freed": freed,
        "seconds": round(seconds, 3),
    }


def _budget_notice(result: SyncResult, bytes_in_all: int) -> None:
    err.print(
        f"{result.bundle}/{result.locale}: budget reached after {result.bytes_fetched:,} bytes"
        f" of chunk data ({bytes_in_all:,} bytes in all); kept {result.objects_fetched} chunks,"
        f" version {result.previous_version or 'none'} stays current; the next sync resumes"
        " where this one stopped"
    )


def _print_result(result: SyncResult, downloaded: int | None, requests: int | None) -> None:
    where = f"{result.bundle}/{result.locale}"
    cost = (
        f"; {downloaded:,} bytes in {_count(requests, 'request')}"
        if downloaded is not None and requests is not None
        else ""
    )
    if result.removed:
        err.print(f"{where} was removed by its publisher: dropped from this laptop")
    elif result.withdrawn:
        err.print(
            f"{where}: version {result.version} was withdrawn by its publisher;"
            " kept until a newer one comes"
        )
    elif result.changed:
        err.print(f"{where}: version {result.previous_version or 'none'} -> {result.version}{cost}")
    else:
        err.print(f"{where}: version {result.version} is current")


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _ref_only(local: LocalStore, bundle: str, locale: str) -> list[str] | None:
    ref = local.ref(bundle, locale)
    return list(ref.only) if ref is not None and ref.only is not None else None


def _plan_json(plan: SyncPlan, counts: Counters | _Counts, seconds: float) -> dict[str, object]:
    return {
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
        "sync_bytes": plan.meta_bytes + plan.bytes_to_download,
        "bytes_downloaded": counts.bytes_downloaded,
        "bytes_uploaded": counts.bytes_uploaded,
        "requests": counts.requests,
        "seconds": round(seconds, 3),
    }


def _print_plan(plan: SyncPlan, as_json: bool, client: HttpClient, seconds: float) -> None:
    if as_json:
        typer.echo(json.dumps(_plan_json(plan, client.counters, seconds)))
        return
    typer.echo(plan.bytes_to_download)
    _plan_notice(plan)


def _plan_notice(plan: SyncPlan) -> None:
    """What a real sync costs: the pack (stdout's number) plus the index and manifest, which
    this dry run already fetched and kept, so the sync itself does not fetch them again."""
    where = f"{plan.bundle}/{plan.locale}"
    meta = plan.meta_bytes
    if plan.route == "none" and not plan.ranges:
        checked = f" (checking cost {meta:,} bytes)" if meta else ""
        err.print(f"{where}: version {plan.version} is current: a sync downloads nothing{checked}")
        return
    how = {"static": "ready-made pack", "dynamic": "pack", "none": "no pack"}[plan.route]
    finish = f" and {plan.ranges} partly received" if plan.ranges else ""
    total = meta + plan.bytes_to_download
    fetched = (
        f"; with the index and manifest, {total:,} bytes in all ({meta:,} of them fetched"
        " already by this dry run and kept: the sync will not fetch them again)"
        if meta
        else ""
    )
    err.print(
        f"{where}: version {plan.previous_version or 'none'} -> {plan.version}: a sync"
        f" downloads {plan.bytes_to_download:,} bytes ({how}: {_count(plan.objects, 'chunk')}"
        f"{finish})"
        f"{fetched}"
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
    from satchel.sync.checkout import checkout_line

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
