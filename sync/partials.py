"""Objects a cut left part-way through: kept, finished with one Range request, or dropped.

A pack cut inside a large object (a video chunk on a link that drops every few minutes) would
otherwise cost that whole object again. :class:`PartialFinisher` keeps the start of such an
object (:func:`~satchel.sync.resume.keepable` decides whether it is worth it), asks for the
rest with one Range request at the next sync, verifies the whole and stores it; a source that
answers with other bytes (another server, another encoding) only costs the kept start.
:func:`budget_cap` decides, frame by frame, where a sync with a data budget stops reading.

The updater (:mod:`satchel.sync.updater`) drives both; :class:`SyncRun` is what one sync has
done so far, which they update together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from satchel.content.errors import ContentError, NotFoundError, TransportError
from satchel.content.manifest import Manifest
from satchel.content.objects import object_dictionary, verify_object

from .fetcher import Fetcher
from .pack import HEAD_SIZE, PackReader
from .resume import Budget, Partial, PartialStore, ProgressDeadline, keepable
from .store import ChunkStore, store_lookup

BytesProgress = Callable[[int, int | None], None]
"""Called with (pack bytes received so far, total pack bytes if known)."""


class SyncRun:
    """What one sync has done so far, over all its attempts."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.objects = 0
        self.pack_bytes = 0
        self.range_bytes = 0
        self.ranges = 0
        self.retries = 0
        self.manifest_fetched = False
        self.kept = False  # anything stored or kept (a partial grew) by this sync
        self.stopped = False  # the budget ran out


class PartialFinisher:
    """Finishes, keeps and tidies a store's partly received objects for one source."""

    def __init__(
        self,
        partials: PartialStore,
        objects: ChunkStore,
        fetcher: Fetcher,
        deadline: Callable[[], ProgressDeadline],
    ) -> None:
        self.partials = partials
        self.objects = objects
        self.fetcher = fetcher
        self.deadline = deadline

    def finishable(self, wanted: Sequence[tuple[str, int]]) -> list[Partial]:
        """Partials worth a Range request now; drops those the target version does not need."""
        lengths = dict(wanted)
        out = []
        for partial in self.partials.load():
            if partial.chunk_id not in lengths or self.objects.has(partial.chunk_id):
                self.partials.delete(partial.chunk_id)
                continue
            dict_id = object_dictionary(partial.data)
            if dict_id is not None and not self.objects.has(dict_id):
                continue  # its dictionary comes in the pack; the pack brings it whole too
            out.append(partial)
        return out

    def finish(
        self,
        manifest: Manifest,
        wanted: Sequence[tuple[str, int]],
        run: SyncRun,
        progress: BytesProgress | None,
    ) -> None:
        """Complete each kept partial object with one Range request, verify it, store it."""
        lengths = dict(wanted)
        lookup = store_lookup(self.objects, dict(manifest.dictionaries))
        for partial in self.finishable(wanted):
            left = run.budget.left
            if left == 0:
                run.stopped = True
                return
            self._finish_one(partial, lengths[partial.chunk_id], lookup, left, run, progress)

    def _finish_one(
        self,
        partial: Partial,
        length: int,
        lookup: Callable[[str], bytes],
        left: int | None,
        run: SyncRun,
        progress: BytesProgress | None,
    ) -> None:
        cid = partial.chunk_id
        end = None if left is None else min(partial.have + left, partial.length) - 1
        try:
            response = self.fetcher.fetch_range(cid, partial.have, end)
        except NotFoundError:  # not there, or shorter than we have: this source differs
            self.partials.delete(cid)
            return
        if response.start not in (0, partial.have) or (
            response.total is not None and response.total != partial.length
        ):
            # Another encoding of the object (another server or relay): start over whole.
            response.close()
            self.partials.delete(cid)
            return
        data = bytearray(partial.data if response.start else b"")
        received = 0
        watch = self.deadline()
        try:
            for piece in response.pieces:
                received += len(piece)
                watch.arrived(len(piece))
                data += piece
                if progress is not None:
                    progress(len(data), partial.length)
                if len(data) > partial.length or (left is not None and received >= left):
                    break
        except TransportError:
            if len(data) > partial.have:
                self._save(Partial(cid, partial.length, bytes(data)), run)
            raise
        finally:
            response.close()
            run.range_bytes += received
            run.budget.used += received
        run.stopped = run.budget.spent
        if len(data) == partial.length:
            self.partials.delete(cid)
            try:
                verify_object(bytes(data), cid, length, lookup)
            except ContentError:
                return  # a bad partial or a mismatched source: the pack brings it whole
            self.objects.put(cid, bytes(data))
            run.objects += 1
            run.ranges += 1
            run.kept = True
        elif len(data) > partial.length:
            self.partials.delete(cid)  # the source holds something else under this id
        elif len(data) > partial.have:  # the budget ran out on the way: keep what grew
            self._save(Partial(cid, partial.length, bytes(data)), run)

    def _save(self, partial: Partial, run: SyncRun) -> None:
        self.partials.save(partial)
        run.kept = True

    def keep_pending(self, reader: PackReader, run: SyncRun) -> None:
        """Keep the start of the object a pack stopped inside, if it is worth a Range later."""
        head = reader.pending_head
        if head is not None and keepable(head.format, head.have, head.length):
            pending = reader.pending
            assert pending is not None
            self._save(Partial(pending.chunk_id, pending.length, pending.data), run)

    def tidy(self, still_missing: set[str]) -> None:
        """Drop kept partials of objects no longer missing (or no longer wanted)."""
        for cid in self.partials.ids():
            if cid not in still_missing:
                self.partials.delete(cid)


def budget_cap(reader: PackReader, received: int, cap: int, kept: bool) -> int:
    """Where a budgeted sync stops reading a pack, decided frame by frame as heads arrive.

    A frame that fits in the budget is read. One that does not is read up to the budget when
    its start is worth keeping as a partial object; otherwise the sync stops before reading
    more of it, unless nothing at all was kept yet: then it reads that one frame to its end,
    over the budget, so that every sync makes progress however small the budget.
    """
    head = reader.pending_head
    if head is None:  # between frames or inside a frame head
        return cap if kept or received < cap else received + HEAD_SIZE
    end = received + head.length - head.have
    if end <= cap:
        return cap
    if head.format is None:  # the object's format byte has not arrived yet
        return cap if kept or received < cap else end
    if keepable(head.format, head.have + max(cap - received, 0), head.length):
        return cap
    return received if kept else end
