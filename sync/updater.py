"""The client's sync workflow: index, manifest, one pack; verify all; switch atomically.

Three request/response exchanges at most, whatever the number of changed files; one when
nothing changed (a conditional GET of the index). Every object is verified and stored as it
arrives, so a cut sync resumes by asking only for what is still missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from satchel.content.delta import DELTA_OF, decode_delta, object_ref
from satchel.content.errors import FormatError, IntegrityError, NotFoundError, SatchelError
from satchel.content.index import IndexEntry, ReleaseIndex
from satchel.content.manifest import MAX_MANIFEST_BYTES, Manifest
from satchel.content.names import check_bundle, check_locale
from satchel.content.objects import decode_object
from satchel.content.signing import PublicKey

from .delta import FileReader
from .fetcher import Fetcher
from .local import LocalStore, Ref
from .pack import PackReader
from .plan import encode_want, missing
from .receive import receive_frames, store_lookup
from .trust import check_entry_version, verify_index, verify_manifest

BytesProgress = Callable[[int, int | None], None]
"""Called with (pack bytes received so far, total pack bytes if known)."""


@dataclass(frozen=True, slots=True)
class SyncResult:
    bundle: str
    locale: str
    version: int
    previous_version: int | None
    objects_fetched: int
    pack_bytes: int
    manifest_fetched: bool

    @property
    def changed(self) -> bool:
        return self.version != self.previous_version


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
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.trust = trust
        self.clock = clock
        self.on_pin = on_pin
        self.newly_pinned_fingerprint: str | None = None
        self._pending_pin: tuple[PublicKey, bytes, str | None, int] | None = None

    def refresh_index(self) -> ReleaseIndex:
        """Fetch and verify the release index (one exchange); pins the key on first use."""
        etag, serial = self.store.index_meta()
        resp = self.fetcher.fetch_index(etag)
        raw = resp.body
        if raw is None:
            raw = self.store.last_index()
            if raw is None:  # a source that answers 304 to an etag we never had
                resp = self.fetcher.fetch_index(None)
                raw = resp.body
            if raw is None:
                raise IntegrityError("source answered 'not modified' but sent no index")
        trusted = verify_index(
            raw,
            pinned=self.store.pinned_key(),
            expected_fingerprint=self.trust,
            now=self.clock(),
            last_serial=serial,
            last_raw=self.store.last_index(),
        )
        self._pending_pin = None
        if trusted.newly_pinned is not None and self.store.pinned_key() is not None:
            # --trust named a new key for a store that trusts another one: switch only once
            # a manifest signed by the new key has verified (see _commit_pin).
            self._pending_pin = (trusted.newly_pinned, raw, resp.etag, trusted.index.serial)
            return trusted.index
        if trusted.newly_pinned is not None:
            self._pin(trusted.newly_pinned)
        if resp.body is not None:
            self.store.save_index(raw, resp.etag, trusted.index.serial)
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
            key, raw, etag, serial = self._pending_pin
            self._pin(key)
            self.store.save_index(raw, etag, serial)
            self._pending_pin = None

    def _manifest(self, entry: IndexEntry, base: str | None) -> tuple[Manifest, bool]:
        key = self._key()
        cached = self.store.manifest_bytes(entry.manifest)
        if cached is not None:
            return verify_manifest(cached, entry, key), False
        if entry.size > MAX_MANIFEST_BYTES:
            raise IntegrityError(f"manifest of {entry.size:,} bytes is over the limit")
        obj = self.fetcher.fetch_manifest(entry.manifest, base)
        if obj[:1] == bytes([DELTA_OF]):
            reference = (
                self.store.manifest_bytes(base) if base and object_ref(obj) == base else None
            )
            if reference is None:
                raise FormatError("manifest came as a delta against a version not held here")
            data = decode_delta(obj, reference, entry.size)
        else:
            data = decode_object(obj, entry.size)
        manifest = verify_manifest(data, entry, key)
        self.store.save_manifest(entry.manifest, data)
        return manifest, True

    def _base(self, current: Ref | None) -> Manifest | None:
        """The held version to send deltas against: only if every object of it is here."""
        if current is None:
            return None
        try:
            base = self.store.load_manifest(current.manifest)
        except SatchelError:
            return None
        return None if missing(base.distinct_chunks(), self.store.objects) else base

    def sync(
        self, bundle: str, locale: str, *, progress: BytesProgress | None = None
    ) -> SyncResult:
        check_bundle(bundle)
        check_locale(locale)
        index = self.refresh_index()
        entry = index.entry(bundle, locale)
        if entry is None:
            offered = ", ".join(f"{e.bundle}/{e.locale}" for e in index.entries) or "nothing"
            raise NotFoundError(f"{bundle}/{locale} is not published here (offered: {offered})")
        current = self.store.ref(bundle, locale)
        check_entry_version(
            entry, current.version if current else None, current.manifest if current else None
        )
        previous = current.version if current else None
        if current is not None and current.manifest == entry.manifest:
            # An index signed by a newly trusted key names the held manifest by hash, which
            # vouches for it; the old key is kept as retired so it stays readable offline.
            self._commit_pin()
            held = self.store.load_manifest(entry.manifest)
            if not missing(held.distinct_chunks(), self.store.objects):
                return SyncResult(bundle, locale, entry.version, previous, 0, 0, False)
            # Objects of the current version went missing (e.g. fsck --repair): fetch them.

        base = self._base(current)
        base_id = current.manifest if base is not None and current is not None else None
        manifest, fetched = self._manifest(entry, base_id)
        distinct = manifest.distinct_chunks()
        need = missing(distinct, self.store.objects)
        objects = pack_bytes = 0
        if need:
            objects, pack_bytes = self._fetch_pack(
                manifest, entry, distinct, need, base, base_id, progress
            )
        still = missing(distinct, self.store.objects)
        if still:
            raise IntegrityError(f"source did not send {len(still)} of the chunks asked for")
        self._commit_pin()
        self.store.switch(bundle, locale, entry.version, entry.manifest)
        return SyncResult(bundle, locale, entry.version, previous, objects, pack_bytes, fetched)

    def _fetch_pack(
        self,
        manifest: Manifest,
        entry: IndexEntry,
        distinct: list[tuple[str, int]],
        need: list[tuple[str, int]],
        base: Manifest | None,
        base_id: str | None,
        progress: BytesProgress | None,
    ) -> tuple[int, int]:
        expected = dict(need)
        response = None
        if base is not None and base_id is not None and base.version in entry.delta_from:
            held = {cid for cid, _ in base.distinct_chunks()}
            if set(expected) == {cid for cid, _ in distinct if cid not in held}:
                # Exactly the update from the held version: the ready-made pack, which a
                # school proxy or CDN may already have cached for the whole classroom.
                try:
                    response = self.fetcher.fetch_delta(base_id, entry.manifest)
                except NotFoundError:
                    response = None
        if response is None:
            want = encode_want(distinct, set(expected))
            response = self.fetcher.fetch_pack(entry.manifest, want, base_id)
        objects = self.store.objects
        reader_base = (
            FileReader(base, objects, store_lookup(objects, dict(base.dictionaries)))
            if base is not None
            else None
        )
        dictionaries = dict(manifest.dictionaries)
        reader = PackReader()
        received = 0
        count = 0
        for piece in response.pieces:
            received += len(piece)
            count += receive_frames(
                reader.feed(piece),
                expected,
                objects,
                dictionaries=dictionaries,
                base=reader_base,
            )
            if progress is not None:
                progress(received, response.length)
        reader.close()
        if count != len(need):
            raise IntegrityError(f"pack held {count} chunks, {len(need)} were asked for")
        return count, received
