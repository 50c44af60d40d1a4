"""Moving learning records along the offline routes: laptop -> stick -> relay, and receipts back.

Each step is a small function over an :class:`~satchel.sync.outbox.Outbox` (a laptop), a
:class:`~satchel.sync.inbox.RelayInbox` (a relay) and a :class:`~satchel.sync.inbox.BatchFolder`
(a stick). Nothing here trusts what it reads: batches are carried sealed and checked only
against their names; receipts are verified under the pinned publisher key before they are
kept or applied. A damaged batch on a stick is skipped (and named) and the rest go on.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from satchel.content.errors import NotFoundError, SatchelError, TrustError
from satchel.content.index import parse_index
from satchel.content.recordskey import RecordsPublicKey
from satchel.content.signing import PublicKey, verify_envelope

from .inbox import BatchFolder, RelayInbox
from .local import LocalStore
from .outbox import Outbox


def records_key_of(store: LocalStore) -> RecordsPublicKey | None:
    """The records key named by the store's accepted line indexes (re-verified: the disk is
    not trusted; every line of one publisher names the same key), or None when the store has
    no index or its server publishes no records key."""
    pinned = store.pinned_key()
    if pinned is None:
        return None
    for bundle, locale in store.indexed_lines():
        raw = store.last_index(bundle, locale)
        if raw is None:
            continue
        env, index = parse_index(raw)
        try:
            verify_envelope(env, pinned, what="stored release index")
        except TrustError:
            for old in store.retired_keys():  # saved before an explicit --trust rotation
                try:
                    verify_envelope(env, old, what="stored release index")
                    break
                except TrustError:
                    continue
            else:
                raise
        if index.records_key is not None:
            return index.records_key
    return None


@dataclass(frozen=True, slots=True)
class StickExport:
    written: int  # batches newly written to the stick
    batches: int  # this laptop's pending batches on the stick now
    records: int  # pending records they carry
    removed: int  # delivered batches of this laptop taken off the stick


def export_records(outbox: Outbox, stick: BatchFolder, recipient: RecordsPublicKey) -> StickExport:
    """Write every pending record (sealed) to the stick; remove this laptop's delivered ones."""
    batches = outbox.sealed_batches(recipient)
    written = sum(1 for b in batches if stick.put_batch(b.data) is not None)
    removed = stick.remove_batches(outbox.obsolete_batches())
    return StickExport(written, len(batches), outbox.summary().pending, removed)


def take_receipt(outbox: Outbox, folder: BatchFolder, publisher: PublicKey) -> int:
    """Apply the receipt a stick or relay holds for this laptop; returns records newly acked."""
    held = folder.receipt(outbox.device_id, publisher)
    if held is None:
        return 0
    return outbox.apply_receipt(held.data, publisher)


@dataclass(frozen=True, slots=True)
class Collected:
    added: int  # batches new to the inbox
    already: int  # held before, or already finished by the server
    damaged: tuple[tuple[str, str], ...]  # (file's batch id, reason): skipped, nothing else lost


def collect_batches(
    stick: BatchFolder, inbox: RelayInbox, skip: Container[str] = frozenset()
) -> Collected:
    """Copy a stick's batches into a relay's inbox to forward on its next sync (except the
    ids in ``skip``: the importing laptop's own batches, which its outbox sends itself)."""
    added = already = 0
    damaged: list[tuple[str, str]] = []
    for bid in stick.batch_ids():
        if bid in skip:
            continue
        try:
            data = stick.read_batch(bid)
        except NotFoundError:
            continue  # removed while we read
        except SatchelError as exc:
            damaged.append((bid, str(exc)))
            continue
        if inbox.put_batch(data) is None:
            already += 1
        else:
            added += 1
    return Collected(added, already, tuple(damaged))


def hand_receipts(source: BatchFolder, dest: BatchFolder, publisher: PublicKey) -> int:
    """Copy the verified receipts of ``source`` (a relay's inbox) to ``dest`` (a stick), or
    back; only newer ones replace those held. Returns how many were written."""
    return sum(1 for held in source.receipts(publisher) if dest.put_receipt(held.data, publisher))
