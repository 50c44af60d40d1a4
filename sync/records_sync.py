"""A store's learning records on the move: one exchange per sync, and the stick steps.

Sans-IO over a small :class:`RecordsTransport` (HTTP in :mod:`satchel.clients.http`, a server
in process in tests). A store may be a laptop (``progress.sqlite``: its own outbox), a relay
(``inbox/``: batches other laptops handed it), or both. :func:`send_records` makes **at most
one** request: every pending record of the outbox sealed (the same bytes as last time, until a
receipt covers them) and the inbox's batches, bounded to one request's limit (the rest go on
the next sync). It then applies what comes back, each piece verified under the pinned
publisher key: this laptop's receipt moves its acknowledgement forward; a relay keeps every
receipt for the laptops it serves, and drops the batches the server's signed answer says it
is finished with. A cut exchange changes nothing: the same bytes go again, and the server
stores each record once.

Nothing is created here for a store that records nothing (no device key, no inbox):
:func:`records_present` says whether a store has either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from satchel.content.errors import SatchelError
from satchel.content.receipts import verify_answer

from .carry import collect_batches, export_records, hand_receipts, records_key_of, take_receipt
from .inbox import BatchFolder, RelayInbox
from .local import LocalStore
from .outbox import PROGRESS_FILE, Outbox
from .records_exchange import (
    INBOX_DIR,
    MAX_RECORDS_REQUEST,
    MAX_REQUEST_BATCHES,
    RecordsReply,
)


class RecordsTransport(Protocol):
    def send_records(self, batches: Sequence[bytes], device: str | None) -> RecordsReply:
        """POST the batches (back to back) naming ``device``; the reply, unverified."""
        ...


def records_present(root: Path) -> bool:
    """Whether the store keeps learning records (an outbox) or carries them (an inbox)."""
    return (root / PROGRESS_FILE).is_file() or (root / INBOX_DIR).is_dir()


def open_outbox(store: LocalStore) -> Outbox | None:
    """The store's outbox if it has one (opening never makes a device key for a store that
    has recorded nothing)."""
    if not (store.root / PROGRESS_FILE).is_file():
        return None
    return Outbox(store.root, durable=store.durable)


def open_inbox(store: LocalStore) -> RelayInbox:
    return RelayInbox(store.root / INBOX_DIR, durable=store.durable)


@dataclass(frozen=True, slots=True)
class RecordsSent:
    """What one records exchange did (``sync --json``: ``progress_sent`` is ``batches``)."""

    batches: int  # sealed batches sent: this laptop's and the inbox's
    forwarded: int  # of them, from the inbox (a relay's)
    acked: int  # this laptop's records newly covered by a receipt
    pending: int  # this laptop's records still without a receipt
    receipts_kept: int  # receipts kept for other laptops (a relay)
    finished: int  # inbox batches the server is done with, dropped
    refused: tuple[tuple[str, str], ...]  # (batch id, reason) from the server's answer
    waiting: str  # why this laptop's records were not sent ("" when they were, or none)


def send_records(
    store: LocalStore,
    transport: RecordsTransport,
    *,
    max_bytes: int = MAX_RECORDS_REQUEST,
) -> RecordsSent | None:
    """One records exchange for ``store``; None when there is nothing to send or ask."""
    publisher = store.pinned_key()
    if publisher is None or not records_present(store.root):
        return None
    outbox = open_outbox(store)
    try:
        waiting = ""
        own: list[bytes] = []
        if outbox is not None and outbox.summary().pending:
            recipient = records_key_of(store)
            if recipient is None:
                waiting = "the server's index names no records key (an older server?)"
            else:
                own = [b.data for b in outbox.sealed_batches(recipient)]
        inbox = open_inbox(store) if (store.root / INBOX_DIR).is_dir() else None
        batches, forwarded = _request(own, inbox, max_bytes)
        if not batches:
            if not waiting:
                return None
            assert outbox is not None  # only an outbox waits
            return RecordsSent(0, 0, 0, outbox.summary().pending, 0, 0, (), waiting)
        device = outbox.device_id if outbox is not None else None
        reply = transport.send_records(batches, device)
        acked = kept = finished = 0
        for data in reply.receipts:
            try:
                if outbox is not None:
                    acked += outbox.apply_receipt(data, publisher)
                if inbox is not None and inbox.put_receipt(data, publisher) is not None:
                    kept += 1
            except SatchelError:
                continue  # not signed by the pinned key, or malformed: not a receipt
        refused: tuple[tuple[str, str], ...] = ()
        if reply.answer is not None:
            answer = verify_answer(reply.answer, publisher)
            refused = answer.refused
            if inbox is not None:
                before = len(inbox.batch_ids())
                inbox.apply_answer(reply.answer, publisher)
                finished = before - len(inbox.batch_ids())
        pending = outbox.summary().pending if outbox is not None else 0
        return RecordsSent(
            len(batches), forwarded, acked, pending, kept, finished, refused, waiting
        )
    finally:
        if outbox is not None:
            outbox.close()


def _request(own: list[bytes], inbox: RelayInbox | None, max_bytes: int) -> tuple[list[bytes], int]:
    """This laptop's batches first, then the inbox's, within one request's bounds."""
    out: list[bytes] = []
    size = 0
    seen: set[bytes] = set()

    def take(data: bytes) -> bool:
        nonlocal size
        if data in seen:
            return True
        if len(out) >= MAX_REQUEST_BATCHES or size + len(data) > max_bytes:
            return False
        seen.add(data)
        out.append(data)
        size += len(data)
        return True

    for data in own:
        if not take(data):
            return out, 0
    forwarded = 0
    if inbox is not None:
        for bid in inbox.to_forward():
            try:
                data = inbox.read_batch(bid)
            except SatchelError:
                continue  # damaged on the relay's disk: skipped, the laptop still holds it
            if not take(data):
                break
            forwarded += 1
    return out, forwarded


# -- sticks --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StickRecordsOut:
    written: int  # this laptop's batches newly written to the stick
    pending: int  # this laptop's records on the stick, still without a receipt
    removed: int  # this laptop's delivered batches taken off the stick
    receipts: int  # receipts a relay wrote for laptops
    waiting: str  # why this laptop's records were not written ("" when they were, or none)


def records_to_stick(store: LocalStore, stick: Path) -> StickRecordsOut | None:
    """``export``: this laptop's pending records (sealed) and the receipts a relay holds.
    None when the store keeps and carries no records."""
    if not records_present(store.root):
        return None
    folder = BatchFolder(stick, durable=store.durable)
    written = pending = removed = receipts = 0
    waiting = ""
    outbox = open_outbox(store)
    if outbox is not None:
        try:
            if outbox.summary().pending:
                recipient = records_key_of(store)
                if recipient is None:
                    waiting = "no records key yet: sync with the server once first"
                else:
                    done = export_records(outbox, folder, recipient)
                    written, pending, removed = done.written, done.records, done.removed
            else:
                removed = folder.remove_batches(outbox.obsolete_batches())
        finally:
            outbox.close()
    publisher = store.pinned_key()
    if publisher is not None and (store.root / INBOX_DIR).is_dir():
        receipts = hand_receipts(open_inbox(store), folder, publisher)
    return StickRecordsOut(written, pending, removed, receipts, waiting)


@dataclass(frozen=True, slots=True)
class StickRecordsIn:
    acked: int  # this laptop's records newly covered by a receipt on the stick
    collected: int  # other laptops' batches added to this store's inbox
    already: int  # batches held before, or already finished by the server
    damaged: tuple[tuple[str, str], ...]  # (batch id, reason): refused, nothing else lost
    receipts: int  # receipts this relay wrote to the stick for the laptops


def records_from_stick(store: LocalStore, stick: Path) -> StickRecordsIn | None:
    """``import``: take this laptop's receipt from the stick, collect other laptops' batches
    into the inbox (to forward on the next sync), and leave the receipts this store holds on
    the stick for the laptops. None when the stick carries no records or receipts."""
    folder = BatchFolder(stick, durable=store.durable)
    on_stick = folder.batch_ids()
    has_receipts = (stick / "receipts").is_dir()
    if not on_stick and not has_receipts:
        return None
    publisher = store.pinned_key()
    acked = 0
    own: set[str] = set()
    outbox = open_outbox(store)
    if outbox is not None:
        try:
            own = outbox.own_batches()
            if publisher is not None:
                acked = take_receipt(outbox, folder, publisher)
        finally:
            outbox.close()
    inbox = open_inbox(store)
    collected = collect_batches(folder, inbox, skip=own) if on_stick else None
    receipts = 0
    if publisher is not None and (store.root / INBOX_DIR).is_dir():
        receipts = hand_receipts(inbox, folder, publisher)
    return StickRecordsIn(
        acked,
        collected.added if collected else 0,
        collected.already if collected else 0,
        collected.damaged if collected else (),
        receipts,
    )


def receipts_to_stick(store: LocalStore, stick: Path) -> int:
    """The receipts a relay holds, written to the stick for the laptops (newer ones only)."""
    publisher = store.pinned_key()
    if publisher is None or not (store.root / INBOX_DIR).is_dir():
        return 0
    return hand_receipts(open_inbox(store), BatchFolder(stick, durable=store.durable), publisher)


def stick_has_records(stick: Path) -> bool:
    """Whether a stick carries sealed batches or receipts (folders only: read nothing yet)."""
    return (stick / "records").is_dir() or (stick / "receipts").is_dir()
