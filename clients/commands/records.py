"""``satchel join``, ``progress`` and ``report``: learners on a laptop, what it recorded and
still has to send, and what a teacher sees. Also the records step that ``sync`` runs and the
stick steps that ``export`` and ``import`` run (:mod:`satchel.sync.records_sync`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from satchel.content.errors import SatchelError, UsageError
from satchel.content.names import DEFAULT_LOCALE, check_bundle, check_locale
from satchel.edge.cli import err, fail, run
from satchel.sync.local import LocalStore

if TYPE_CHECKING:  # loaded by the commands that use them (tests/test_cli_startup.py)
    from satchel.sync.outbox import Outbox
    from satchel.sync.records_sync import RecordsSent, StickRecordsIn, StickRecordsOut

    from ..http import HttpClient

commands = typer.Typer()


# -- the steps sync, export and import run ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RecordsOutcome:
    sent: RecordsSent | None
    error: str  # why the exchange failed ("" when it did not): records wait, nothing is lost

    def fields(self) -> dict[str, object]:
        """What ``sync --json`` adds."""
        s = self.sent
        return {
            "progress_sent": s.batches if s else 0,
            "progress_forwarded": s.forwarded if s else 0,
            "progress_acked": s.acked if s else 0,
            # Nothing to send is none pending; after a failed exchange the count is unknown.
            "progress_pending": s.pending if s else (None if self.error else 0),
            "progress_refused": [{"batch": b, "reason": r} for b, r in s.refused] if s else [],
            "progress_error": self.error or None,
        }


def exchange_records(local: LocalStore, client: HttpClient) -> RecordsOutcome:
    """The records exchange of a sync: one request at most. A failure is reported, not
    raised: the content sync stands, and the records go again next time."""
    from satchel.sync.records_sync import send_records

    try:
        return RecordsOutcome(send_records(local, client), "")
    except SatchelError as exc:
        return RecordsOutcome(None, str(exc))


def say_records(outcome: RecordsOutcome) -> None:
    s = outcome.sent
    if outcome.error:
        err.print(f"learning records not sent ({outcome.error}); they go with the next sync")
        return
    if s is None:
        return
    own = s.batches - s.forwarded
    parts = []
    if own:
        parts.append(f"{own} batch{'es' if own != 1 else ''} of this laptop's records")
    if s.forwarded:
        parts.append(f"{s.forwarded} forwarded for other laptops")
    err.print(
        f"learning records: sent {' and '.join(parts) or 'nothing'}; {s.acked} newly"
        f" acknowledged, {s.pending} still pending"
    )
    for bid, reason in s.refused:
        err.print(f"records batch {bid[:16]}... refused: {reason}")
    if s.waiting:
        err.print(f"this laptop's records wait: {s.waiting}")


def say_stick_out(out: StickRecordsOut | None, to: Path) -> None:
    if out is None:
        return
    err.print(
        f"learning records -> {to}: {out.written} new sealed batches ({out.pending} records"
        f" pending), {out.removed} delivered ones removed, {out.receipts} receipts for laptops"
    )
    if out.waiting:
        err.print(f"this laptop's records wait: {out.waiting}")


def say_stick_in(got: StickRecordsIn | None, path: Path) -> None:
    if got is None:
        return
    err.print(
        f"learning records from {path}: {got.acked} of this laptop's records acknowledged,"
        f" {got.collected} batches collected to forward ({got.already} already held),"
        f" {got.receipts} receipts written for laptops"
    )
    for bid, reason in got.damaged:
        err.print(f"records batch {bid[:16]}... on the stick refused: {reason}")


def stick_out(local: LocalStore, to: Path) -> StickRecordsOut | None:
    from satchel.sync.records_sync import records_to_stick

    return run(lambda: records_to_stick(local, to))


def import_records(local: LocalStore, path: Path, server: str | None) -> None:
    """``import``'s records step; with ``server``, the collected batches go on at once and the
    receipts come back to the stick (the stick goes laptop -> server through this laptop)."""
    from satchel.sync.records_sync import receipts_to_stick, records_from_stick

    from ..http import HttpClient

    say_stick_in(run(lambda: records_from_stick(local, path)), path)
    if server is None:
        return
    with run(lambda: HttpClient(server)) as client:
        outcome = exchange_records(local, client)
    say_records(outcome)
    if outcome.error:
        raise typer.Exit(4)
    written = run(lambda: receipts_to_stick(local, path))
    err.print(f"{written} receipts written to {path} for the laptops")


# -- join ----------------------------------------------------------------------------------------
@commands.command()
def join(
    store: Annotated[Path, typer.Option(help="Local store folder of this laptop.")],
    code: Annotated[str, typer.Option(help="The class's join code, e.g. 7KQ2-M9X7.")],
    learner: Annotated[str, typer.Option(help="The learner's name, as the teacher knows it.")],
    server: Annotated[
        str | None,
        typer.Option(help="Check the code with this server and take its class's bundle."),
    ] = None,
    bundle: Annotated[
        str | None, typer.Option(help="The class's bundle (default: the store's only one).")
    ] = None,
    locale: Annotated[str | None, typer.Option("--locale", help="The class's locale.")] = None,
) -> None:
    """Add a learner to this laptop (offline); prints the learner id."""
    from satchel.content.joincode import normalise_join_code
    from satchel.content.records import clean_learner_name
    from satchel.sync.outbox import Outbox

    def body() -> str:
        shown = normalise_join_code(code)  # a typo is caught here, offline
        clean_learner_name(learner)  # refused before anything (a device key) is made
        b, loc = _class_line(store, shown, server, bundle, locale)
        with Outbox(store) as box:
            who = box.join(learner, shown, b, loc, now=datetime.now(UTC))
        err.print(f"{who.name} joined class {shown} ({b}/{loc}) on this laptop")
        return who.learner

    typer.echo(run(body))


def _class_line(
    store: Path, code: str, server: str | None, bundle: str | None, locale: str | None
) -> tuple[str, str]:
    from ..http import HttpClient

    if server is not None:
        with HttpClient(server) as client:
            b, loc = client.class_line(code)
        if (bundle is not None and bundle != b) or (locale is not None and locale != loc):
            raise UsageError(f"class {code} is a class of {b}/{loc}, not of what was given")
        return b, loc
    if bundle is not None:
        return check_bundle(bundle), check_locale(locale or DEFAULT_LOCALE)
    lines: list[tuple[str, str]] = []
    if (store / "satchel.json").is_file():
        lines = [(r.bundle, r.locale) for r in LocalStore(store).refs()]
    if locale is not None:
        lines = [x for x in lines if x[1] == locale]
    if len(lines) != 1:
        raise UsageError(
            "say which bundle the class is for: pass --bundle (or --server to ask the server);"
            f" this store holds {len(lines)} matching bundles"
        )
    return lines[0]


# -- progress ------------------------------------------------------------------------------------
@commands.command()
def progress(
    store: Annotated[Path, typer.Option(help="Local store folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """What this laptop recorded, what is still to send (pending), and what it relays."""
    report = run(lambda: _progress(store))
    if as_json:
        typer.echo(json.dumps(report))
        return
    if report["device"] is None and not report["inbox"]["batches"]:
        typer.echo("nothing recorded on this laptop (satchel join adds a learner)")
        return
    if report["device"] is not None:
        typer.echo(f"device {report['device']}")
        for lr in report["learners"]:
            typer.echo(
                f"  {lr['name']}  class {lr['class']} ({lr['bundle']}/{lr['locale']}):"
                f" {lr['records']} records"
            )
        typer.echo(
            f"recorded {report['recorded']}, acknowledged by the server"
            f" {report['acked_through']}, pending {report['pending']}"
        )
    inbox = report["inbox"]
    if inbox["batches"] or inbox["receipts"]:
        typer.echo(
            f"relay: {inbox['batches']} sealed batches to forward, {inbox['receipts']}"
            " receipts for laptops"
        )


def _progress(root: Path) -> dict[str, Any]:
    from satchel.sync.records_exchange import INBOX_DIR
    from satchel.sync.records_sync import open_inbox, open_outbox

    local = LocalStore(root) if (root / "satchel.json").is_file() else None
    inbox: dict[str, int] = {"batches": 0, "receipts": 0}
    out: dict[str, Any] = {
        "device": None,
        "learners": [],
        "recorded": 0,
        "last_seq": 0,
        "acked_through": 0,
        "pending": 0,
        "inbox": inbox,
    }
    box = open_outbox(local) if local is not None else _bare_outbox(root)
    if box is not None:
        with box:
            summary = box.summary()
            counts: dict[str, int] = {}
            for rec in box.records():
                counts[rec.learner] = counts.get(rec.learner, 0) + 1
            out.update(
                device=summary.device,
                recorded=summary.recorded,
                last_seq=summary.last_seq,
                acked_through=summary.acked_through,
                pending=summary.pending,
                learners=[
                    {
                        "learner": lr.learner,
                        "name": lr.name,
                        "class": lr.class_code,
                        "bundle": lr.bundle,
                        "locale": lr.locale,
                        "records": counts.get(lr.learner, 0),
                    }
                    for lr in box.learners()
                ],
            )
    if local is not None and (root / INBOX_DIR).is_dir():
        relay = open_inbox(local)
        inbox["batches"] = len(relay.batch_ids())
        publisher = local.pinned_key()
        inbox["receipts"] = len(relay.receipts(publisher)) if publisher else 0
    return out


def _bare_outbox(root: Path) -> Outbox | None:
    """A store folder that has joined learners but never synced (no satchel.json yet)."""
    from satchel.sync.outbox import PROGRESS_FILE, Outbox

    return Outbox(root) if (root / PROGRESS_FILE).is_file() else None


# -- report --------------------------------------------------------------------------------------
@commands.command()
def report(
    server: Annotated[str, typer.Option(help="Server URL.")],
    token: Annotated[str, typer.Option(help="A teacher token for the bundle, or an admin's.")],
    bundle: Annotated[str, typer.Option(help="Bundle name.")],
    locale: Annotated[str, typer.Option("--locale", help="Locale code.")] = DEFAULT_LOCALE,
    as_json: Annotated[bool, typer.Option("--json", help="The report as one JSON object.")] = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="One CSV row per learner, lesson and question.")
    ] = False,
    as_xapi: Annotated[
        bool, typer.Option("--xapi", help="xAPI 1.0.3 statements (a JSON array) for an LRS.")
    ] = False,
) -> None:
    """What a bundle's classes did: per learner and lesson, the questions most missed, and
    when each laptop last reported."""
    if as_json + as_csv + as_xapi > 1:
        fail("give one of --json, --csv and --xapi", 2)
    fmt = "csv" if as_csv else "xapi" if as_xapi else "json"

    from ..http import HttpClient

    def fetch() -> bytes:
        check_bundle(bundle)
        check_locale(locale)
        with HttpClient(server, token=token) as client:
            return client.report(bundle, locale, fmt)

    body = run(fetch)
    if as_json or as_csv or as_xapi:
        typer.echo(body.decode("utf-8"), nl=not body.endswith(b"\n"))
        return
    try:
        data = json.loads(body)
    except ValueError:
        fail("server sent a report that is not JSON", 3)
    _print_report(data)


def _print_report(data: dict[str, Any]) -> None:
    classes = len(data.get("classes") or [])
    learners = len(data.get("learners") or [])
    typer.echo(
        f"{data.get('bundle')}/{data.get('locale')}: {classes} class{'' if classes == 1 else 'es'},"
        f" {learners} learner{'' if learners == 1 else 's'}"
    )
    for lr in data.get("learners") or []:
        lessons = lr.get("lessons") or []
        done = sum(1 for x in lessons if x.get("completed"))
        answers = [a for x in lessons for a in x.get("answers") or []]
        right = sum(1 for a in answers if a.get("correct"))
        revoked = "  (revoked)" if lr.get("revoked") else ""
        typer.echo(
            f"  {lr.get('learner')}  [{lr.get('class_code')}]  lessons opened {len(lessons)},"
            f" completed {done}; questions right {right} of {len(answers)}{revoked}"
        )
    missed = data.get("missed") or []
    if missed:
        typer.echo("most missed:")
        for m in missed[:10]:
            typer.echo(
                f"  {m.get('lesson')} {m.get('question')}: missed {m.get('missed')} of"
                f" {m.get('attempts')} attempts by {m.get('learners')} learners"
            )
    for d in data.get("devices") or []:
        state = f"  revoked: {d.get('revoked_reason')}" if d.get("revoked") else ""
        typer.echo(
            f"device {str(d.get('device'))[:16]}... last reported {d.get('last_seen')}{state}"
        )
    for q in data.get("quarantined") or []:
        typer.echo(
            f"kept aside: {q.get('records')} records of {q.get('class_code')} ({q.get('reason')})"
        )
