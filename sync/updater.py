"""The client's sync workflow: index, manifest, one pack; verify all; switch atomically.

Three request/response exchanges, whatever the number of changed files (index, manifest, one
pack); one when nothing changed (a conditional GET of the index). More only when finishing a
cut object with Range, after a 404 for a ready-made pack, or on a retry. Every object is
verified and stored as it arrives, so a cut sync resumes by asking only for what is missing.

For poor links (see :mod:`satchel.sync.resume`): a sync may stop at a data budget and keep
everything complete; a transient link failure is retried with backoff; a large object cut in
the middle is kept and finished later with one Range request (:mod:`satchel.sync.partials`);
and :meth:`Updater.plan` says exactly how many bytes an update will cost before any of them is
spent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal, TypeVar

from satchel.content.delta import DELTA_OF, LONG_WINDOW, decode_delta, object_ref
from satchel.content.errors import (
    FormatError,
    IntegrityError,
    NotFoundError,
    SatchelError,
    TransportError,
)
from satchel.content.index import IndexEntry, ReleaseIndex
from satchel.content.manifest import MAX_MANIFEST_BYTES, Manifest
from satchel.content.names import check_bundle, check_locale
from satchel.content.objects import decode_object
from satchel.content.signing import PublicKey

from .care import check_free_space
from .delta import FileReader, first_places, path_index
from .fetcher import Fetcher, PackResponse
from .local import LocalStore, Ref
from .pack import PackFrame, PackReader
from .partials import BytesProgress, PartialFinisher, SyncRun, budget_cap
from .plan import encode_want, missing
from .receive import receive_frames
from .resume import (
    Budget,
    Partial,
    PartialStore,
    ProgressDeadline,
    RetryPolicy,
    is_transient,
)
from .select import needed_objects, normalize, selected_files
from .serving import pack_length
from .store import Holds, WriteBatch, held_now, store_lookup
from .trust import check_entry_version, verify_index, verify_manifest

RetryNotice = Callable[[BaseException, int, float], None]
"""Called before each retry with (the error, retry number from 1, seconds it will wait)."""

T = TypeVar("T")

Only = Sequence[str] | Literal["keep", "all"]
"""A sync's file selection: selectors (files, folders, lessons), "keep" the one the store's
ref records (the default), or "all" files (widens a selective copy to the whole version)."""


@dataclass(frozen=True, slots=True)
class SyncResult:
    bundle: str
    locale: str
    version: int  # the version synced to (when not complete: the one still being fetched)
    previous_version: int | None
    objects_fetched: int  # objects stored by this sync, from packs and ranges
    pack_bytes: int  # pack bytes received (over all attempts)
    manifest_fetched: bool
    complete: bool = True  # False: a data budget stopped it; nothing switched, progress kept
    range_bytes: int = 0  # bytes received to finish partly received objects
    ranges: int = 0  # objects finished with a Range request
    retries: int = 0
    removed: bool = False  # the publisher removed the line: this laptop dropped it
    withdrawn: bool = False  # the held version was withdrawn: kept until a newer one comes

    @property
    def changed(self) -> bool:
        return self.complete and self.version != self.previous_version

    @property
    def bytes_fetched(self) -> int:
        """Object data received: pack bytes plus range bytes (what a budget counts)."""
        return self.pack_bytes + self.range_bytes


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """What a sync would download, found without downloading it (``satchel sync --dry-run``)."""

    bundle: str
    locale: str
    version: int
    previous_version: int | None
    route: str  # "none", "static" (ready-made pack, GET) or "dynamic" (POST /v1/pack)
    objects: int  # objects the pack would carry
    pack_bytes: int  # exact length of that pack
    ranges: int  # partly received objects that Range requests would finish first
    range_bytes: int  # bytes those Range requests would bring
    meta_bytes: int  # index and manifest bytes this dry run itself exchanged
    manifest_fetched: bool

    @property
    def bytes_to_download(self) -> int:
        return self.pack_bytes + self.range_bytes


class Updater:
    """Brings one store up to date with one source, trusting only the publisher's key."""

    def __init__(
        self,
        store: LocalStore,
        fetcher: Fetcher,
        *,
        trust: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_pin: Callable[[str, bool], None] | None = None,
        retry: RetryPolicy | None = None,
        on_retry: RetryNotice | None = None,
        reserve: int | None = None,
        deadline: Callable[[], ProgressDeadline] = ProgressDeadline,
    ) -> None:
        self.store = store
        self.deadline = deadline  # a fresh watch for each transfer: a stalling source ends
        self.reserve = reserve  # bytes to leave free on the store's disk (None: no check)
        self.fetcher = fetcher
        self.trust = trust
        self.clock = clock
        self.on_pin = on_pin
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self.partials = PartialStore(store.root / "partial", durable=store.durable)
        self.newly_pinned_fingerprint: str | None = None
        self.meta_bytes = 0  # index and manifest bytes received by the last sync or plan
        self._pending_pin: tuple[PublicKey, str, str, bytes, str | None, int] | None = None

    def _held(self) -> Holds:
        return held_now(self.store.objects)

    @property
    def _finisher(self) -> PartialFinisher:
        # Built from the current attributes each time: tests swap the fetcher and the deadline.
        return PartialFinisher(self.partials, self.store.objects, self.fetcher, self.deadline)

    def refresh_index(self, bundle: str, locale: str) -> ReleaseIndex:
        """Fetch and verify a line's release index (one exchange); pins the key on first use."""
        etag, serial = self.store.index_meta(bundle, locale)
        resp = self.fetcher.fetch_index(bundle, locale, etag)
        raw = resp.body
        if raw is None:
            raw = self.store.last_index(bundle, locale)
            if raw is None:  # a source that answers 304 to an etag we never had
                resp = self.fetcher.fetch_index(bundle, locale, None)
                raw = resp.body
            if raw is None:
                raise IntegrityError("source answered 'not modified' but sent no index")
        if resp.body is not None:
            self.meta_bytes += len(resp.body)
        trusted = verify_index(
            raw,
            bundle=bundle,
            locale=locale,
            pinned=self.store.pinned_key(),
            expected_fingerprint=self.trust,
            now=self.clock(),
            last_serial=serial,
            last_raw=self.store.last_index(bundle, locale),
        )
        self._pending_pin = None
        serial_now = trusted.index.serial
        if trusted.newly_pinned is not None and self.store.pinned_key() is not None:
            # --trust named a new key for a store that trusts another one: switch only once
            # a manifest signed by the new key has verified (see _commit_pin).
            self._pending_pin = (trusted.newly_pinned, bundle, locale, raw, resp.etag, serial_now)
            return trusted.index
        if trusted.newly_pinned is not None:
            self._pin(trusted.newly_pinned)
        if resp.body is not None:
            self.store.save_index(bundle, locale, raw, resp.etag, serial_now)
        return trusted.index

    def _pin(self, key: PublicKey) -> None:
        rotated = self.store.pinned_key() is not None
        self.store.pin(key, replace=True)
        self.newly_pinned_fingerprint = key.fingerprint
        if self.on_pin is not None:
            self.on_pin(key.fingerprint, rotated)

    def _key(self) -> PublicKey:
        if self._pending_pin is not None:
            return self._pending_pin[0]
        key = self.store.pinned_key()
        assert key is not None  # refresh_index pinned it
        return key

    def _commit_pin(self) -> None:
        if self._pending_pin is not None:
            key, bundle, locale, raw, etag, serial = self._pending_pin
            self._pin(key)
            self.store.save_index(bundle, locale, raw, etag, serial)
            self._pending_pin = None

    def _manifest(self, entry: IndexEntry, base: str | None) -> tuple[Manifest, bool]:
        key = self._key()
        cached = self.store.manifest_bytes(entry.manifest)
        if cached is not None:
            return verify_manifest(cached, entry, key), False
        if entry.size > MAX_MANIFEST_BYTES:
            raise IntegrityError(f"manifest of {entry.size:,} bytes is over the limit")
        obj = self.fetcher.fetch_manifest(entry.manifest, base)
        self.meta_bytes += len(obj)
        if obj[:1] == bytes([DELTA_OF]):
            reference = (
                self.store.manifest_bytes(base) if base and object_ref(obj) == base else None
            )
            if reference is None:
                raise FormatError("manifest came as a delta against a version not held here")
            data = decode_delta(obj, reference, entry.size, max_window=LONG_WINDOW)
        else:
            data = decode_object(obj, entry.size)
        manifest = verify_manifest(data, entry, key)
        self.store.save_manifest(entry.manifest, data, parsed=(manifest, key))
        return manifest, True

    def _held_manifest_id(self, current: Ref | None) -> str | None:
        """The held version's manifest, if its bytes are here (a manifest delta needs them)."""
        if current is None or self.store.manifest_bytes(current.manifest) is None:
            return None
        return current.manifest

    def _base(
        self,
        current: Ref | None,
        manifest: Manifest,
        need: Sequence[tuple[str, int]],
        held: Holds,
    ) -> Manifest | None:
        """The held version to send chunk deltas against, if this store can read them back.

        A delta for a chunk is made against the file at the same path in the base, where the
        chunk first appears in the new version (see :mod:`satchel.sync.delta`); so the base is
        usable when each such file, and the base's dictionaries, are whole here. That is
        always so for a whole copy; a selective copy holds only some files.
        """
        if current is None:
            return None
        try:
            base = self.store.load_manifest(current.manifest)
        except SatchelError:
            return None
        objects = self.store.objects
        if any(not objects.has(cid) for cid, _ in base.dictionaries):
            return None
        if not missing(base.distinct_chunks(), held):
            return base
        places = first_places(manifest)
        base_paths = path_index(base)
        for cid, _ in need:
            place = places.get(cid)
            index = base_paths.get(place[0]) if place is not None else None
            if index is not None and missing(base.files[index].chunks, objects):
                return None
        return base

    def _selection(self, current: Ref | None, only: Only) -> tuple[tuple[str, ...] | None, bool]:
        """(selectors or None for every file, whether they were given just now)."""
        if only == "all":
            return None, False
        if only == "keep":
            return (current.only if current is not None else None), False
        return normalize(only), True

    def _wanted(
        self, manifest: Manifest, selection: tuple[str, ...] | None, strict: bool
    ) -> list[tuple[str, int]]:
        return needed_objects(manifest, selected_files(manifest, selection, strict=strict))

    # -- the workflow ------------------------------------------------------------------------
    def _with_retries(self, run: SyncRun, attempt: Callable[[], T]) -> T:
        """``attempt()``, again after each transient link failure, as the retry policy allows."""
        while True:
            try:
                return attempt()
            except TransportError as exc:
                if not is_transient(exc) or run.retries >= self.retry.retries:
                    raise
                delay = self.retry.delay(run.retries)
                run.retries += 1
                if self.on_retry is not None:
                    self.on_retry(exc, run.retries, delay)
                self.retry.sleep(delay)

    def _target(self, bundle: str, locale: str) -> tuple[IndexEntry, Ref | None]:
        entry = self.refresh_index(bundle, locale).line
        current = self.store.ref(bundle, locale)
        if entry.removed and current is None:
            raise NotFoundError(f"{bundle}/{locale} was removed by its publisher")
        check_entry_version(
            entry, current.version if current else None, current.manifest if current else None
        )
        return entry, current

    def _held_and_whole(
        self,
        entry: IndexEntry,
        current: Ref | None,
        selection: tuple[str, ...] | None,
        strict: bool,
        *,
        commit: bool,
    ) -> bool:
        """True when the store holds the index's version, every object the selection needs,
        and records that same selection."""
        if current is None or current.manifest != entry.manifest or current.only != selection:
            return False
        if commit:
            # An index signed by a newly trusted key names the held manifest by hash, which
            # vouches for it; the old key is kept as retired so it stays readable offline.
            self._commit_pin()
        held = self.store.load_manifest(entry.manifest)
        # Objects of the current version may have gone missing (e.g. fsck --repair): if so,
        # the sync goes on and fetches them.
        return not missing(self._wanted(held, selection, strict), self._held())

    def sync(
        self,
        bundle: str,
        locale: str,
        *,
        progress: BytesProgress | None = None,
        max_bytes: int | None = None,
        only: Only = "keep",
    ) -> SyncResult:
        """Update one line. With ``max_bytes``, stop once about that many bytes of object data
        (packs and ranges) have arrived: everything complete is kept, the version does not
        switch, and the result says ``complete=False``; the next sync resumes. ``only``
        limits the files fetched (see :data:`Only`)."""
        check_bundle(bundle)
        check_locale(locale)
        self.meta_bytes = 0
        run = SyncRun(Budget(max_bytes))
        return self._with_retries(run, lambda: self._sync_once(bundle, locale, run, progress, only))

    def _sync_once(
        self, bundle: str, locale: str, run: SyncRun, progress: BytesProgress | None, only: Only
    ) -> SyncResult:
        entry, current = self._target(bundle, locale)
        previous = current.version if current else None
        selection, strict = self._selection(current, only)

        def result(complete: bool = True) -> SyncResult:
            return SyncResult(
                bundle,
                locale,
                entry.version,
                previous,
                run.objects,
                run.pack_bytes,
                run.manifest_fetched,
                complete,
                run.range_bytes,
                run.ranges,
                run.retries,
            )

        if entry.removed:
            # Signed by the publisher: the line is gone; its objects go at the next collection.
            self._commit_pin()
            self.store.forget_line(bundle, locale)
            return replace(result(), version=previous or entry.version, removed=True)
        if current is not None and entry.version < current.version:
            # The held version was withdrawn (check_entry_version allowed nothing else): keep
            # it until a newer one comes, rather than step back.
            return replace(result(), version=current.version, withdrawn=True)
        if self._held_and_whole(entry, current, selection, strict, commit=True):
            self.store.mark_index_held(bundle, locale)
            return result()
        manifest, fetched = self._manifest(entry, self._held_manifest_id(current))
        run.manifest_fetched = run.manifest_fetched or fetched
        wanted = self._wanted(manifest, selection, strict)
        self._finisher.finish(manifest, wanted, run, progress)
        held = self._held()  # one listing for the plan and the base
        need = missing(wanted, held)
        if need and run.budget.spent:
            run.stopped = True
        elif need:
            if self.reserve is not None:
                what = f"{bundle}/{locale} version {entry.version}"
                check_free_space(self.store, sum(n for _, n in need), self.reserve, what)
            base = self._base(current, manifest, need, held)
            base_id = current.manifest if base is not None and current is not None else None
            self._fetch_pack(manifest, entry, need, base, base_id, run, progress)
        still = missing(wanted, self._held())
        self._finisher.tidy({cid for cid, _ in still})
        if still:
            if run.stopped:
                return result(complete=False)
            raise IntegrityError(f"source did not send {len(still)} of the chunks asked for")
        self._commit_pin()
        self.store.switch(bundle, locale, entry.version, entry.manifest, only=selection)
        self.store.mark_index_held(bundle, locale)
        return result()

    def plan(self, bundle: str, locale: str, *, only: Only = "keep") -> SyncPlan:
        """What :meth:`sync` would download, exactly, without downloading any object.

        The index and (if not cached) the manifest are fetched, verified and kept, as a sync
        would; the version does not switch and the key is pinned only on first use.
        """
        check_bundle(bundle)
        check_locale(locale)
        self.meta_bytes = 0
        run = SyncRun(Budget(None))
        return self._with_retries(run, lambda: self._plan_once(bundle, locale, run, only))

    def _plan_once(self, bundle: str, locale: str, run: SyncRun, only: Only) -> SyncPlan:
        entry, current = self._target(bundle, locale)
        previous = current.version if current else None
        selection, strict = self._selection(current, only)

        def plan(
            route: str, objects: int = 0, size: int = 0, ranges: Sequence[Partial] = ()
        ) -> SyncPlan:
            return SyncPlan(
                bundle,
                locale,
                entry.version,
                previous,
                route,
                objects,
                size,
                len(ranges),
                sum(p.length - p.have for p in ranges),
                self.meta_bytes,
                run.manifest_fetched,
            )

        # A dry run changes no trust.
        if entry.removed or (current is not None and entry.version < current.version):
            return plan("none")  # removed, or the held version withdrawn: nothing to fetch
        if self._held_and_whole(entry, current, selection, strict, commit=False):
            return plan("none")
        manifest, fetched = self._manifest(entry, self._held_manifest_id(current))
        run.manifest_fetched = run.manifest_fetched or fetched
        distinct = manifest.distinct_chunks()
        wanted = self._wanted(manifest, selection, strict)
        finishing = self._finisher.finishable(wanted)
        finished = {p.chunk_id for p in finishing}
        held = self._held()
        need = [(cid, n) for cid, n in missing(wanted, held) if cid not in finished]
        if not need:
            return plan("none", ranges=finishing)
        base = self._base(current, manifest, need, held)
        base_id = current.manifest if base is not None and current is not None else None
        if self._static_route(entry, distinct, need, base, base_id):
            assert base_id is not None
            try:
                size = self.fetcher.delta_size(base_id, entry.manifest)
                return plan("static", len(need), size, finishing)
            except NotFoundError:
                pass
        want = encode_want(distinct, {cid for cid, _ in need})
        size = self.fetcher.pack_size(entry.manifest, want, base_id)
        return plan("dynamic", len(need), size, finishing)

    # -- the pack ----------------------------------------------------------------------------
    @staticmethod
    def _static_route(
        entry: IndexEntry,
        distinct: list[tuple[str, int]],
        need: list[tuple[str, int]],
        base: Manifest | None,
        base_id: str | None,
    ) -> bool:
        """Whether the need is exactly the ready-made update from the held version."""
        if base is None or base_id is None or base.version not in entry.delta_from:
            return False
        held = {cid for cid, _ in base.distinct_chunks()}
        return {cid for cid, _ in need} == {cid for cid, _ in distinct if cid not in held}

    def _fetch_pack(
        self,
        manifest: Manifest,
        entry: IndexEntry,
        need: list[tuple[str, int]],
        base: Manifest | None,
        base_id: str | None,
        run: SyncRun,
        progress: BytesProgress | None,
    ) -> None:
        expected = dict(need)
        distinct = manifest.distinct_chunks()  # want bitmaps are over all of the manifest's
        response: PackResponse | None = None
        if self._static_route(entry, distinct, need, base, base_id):
            assert base_id is not None
            # Exactly the update from the held version: the ready-made pack, which a school
            # proxy or CDN may already have cached for the whole classroom.
            try:
                response = self.fetcher.fetch_delta(base_id, entry.manifest)
            except NotFoundError:
                response = None
        if response is None:
            want = encode_want(distinct, set(expected))
            response = self.fetcher.fetch_pack(entry.manifest, want, base_id)
        # Verified objects are kept a batch at a time (sync/store.py WriteBatch): a cut loses at
        # most one batch, and the store's ids, which the next sync plans from, stay durable.
        objects = WriteBatch(self.store.objects)
        reader_base = (
            FileReader(base, objects, store_lookup(objects, dict(base.dictionaries)))
            if base is not None
            else None
        )
        dictionaries = dict(manifest.dictionaries)
        reader = PackReader()
        # A pack carries each object asked for once, none larger than its raw bytes and a
        # format byte (a delta is sent only when smaller than that): more is a flooding source.
        most = pack_length(1 + n for _, n in need)
        if response.length is not None and response.length > most:
            response.close()
            raise IntegrityError(
                f"the source announces a pack of {response.length:,} bytes for objects that"
                f" need at most {most:,}; refusing it"
            )
        most = min(most, response.length if response.length is not None else most)
        cap = run.budget.left  # pack bytes this sync may still take (None: no budget)
        total = response.length if cap is None else min(response.length or cap, cap)
        received = count = 0
        stopped = False
        seen: set[str] = set()
        watch = self.deadline()

        def once(frames: list[PackFrame]) -> list[PackFrame]:
            for fr in frames:
                if fr.chunk_id in seen:
                    raise IntegrityError(f"the pack sent chunk {fr.chunk_id[:16]}... twice")
                seen.add(fr.chunk_id)
            return frames

        try:
            for piece in response.pieces:
                # Bytes that arrived are paid for: all of them are used, even past the budget.
                received += len(piece)
                if received > most:
                    raise IntegrityError(
                        f"the source sent more than the {most:,} bytes this pack can need;"
                        " what arrived before is kept"
                    )
                watch.arrived(len(piece))
                got = receive_frames(
                    once(reader.feed(piece)),
                    expected,
                    objects,
                    dictionaries=dictionaries,
                    base=reader_base,
                )
                count += got
                run.objects += got
                run.kept = run.kept or got > 0
                if progress is not None:
                    progress(received, total)
                if cap is not None and not reader.done:
                    cap = budget_cap(reader, received, cap, run.kept)
                    if received >= cap:
                        stopped = True
                        break
            if stopped:
                response.close()
                objects.flush()
                self._finisher.keep_pending(reader, run)
                run.stopped = True
                return
            reader.close()
        except TransportError:
            objects.flush()
            self._finisher.keep_pending(reader, run)
            raise
        finally:
            objects.flush()
            run.pack_bytes += received
            run.budget.used += received
        if count != len(need):
            raise IntegrityError(f"pack held {count} chunks, {len(need)} were asked for")
