"""The release index of one line: the small, signed, changing document of a bundle in a locale.

Every line (a bundle in one locale) has its own, so what a laptop downloads to learn about its
bundles depends on the lines it follows, never on every line a server holds. Its ``signed``
part::

    {"_type": "index", "format": 2, "serial": 17,
     "issued": "2026-11-23T10:00:00Z", "expires": "2027-01-22T10:00:00Z",
     "publisher": {"keyid": HEX, "public_key": BASE64, "scheme": "ed25519"},
     "entries": [{"bundle": "intro-stats", "locale": "en", "version": 3,
                  "manifest": "<sha256 of the manifest envelope>", "size": 98765,
                  "title": "Introductory Statistics", "delta_from": [2, 1],
                  "withdrawn": [4]}]}

``entries`` holds exactly the one line. ``delta_from`` (optional) lists the older versions
from which a ready-made, cacheable delta pack to this version exists (``GET
/v1/deltas/{from manifest}/{to manifest}``). ``withdrawn`` (optional) lists versions the
publisher took back: ``version`` is then the newest one not withdrawn, and a laptop that holds
a withdrawn version keeps it until a newer one comes. ``removed`` (optional, true) says the
line itself was taken away; ``version`` and ``manifest`` then name its last version.

``records_key`` (optional; older indexes omit it and older readers ignore it) is the server's
X25519 key that laptops seal learning records to (:mod:`satchel.content.recordskey`), so it
is as trustworthy as the index: signed by the pinned publisher key.

``serial`` grows with every new index of the line, ``expires`` bounds how long a stale copy (a
freeze attack, or a mirror that stopped updating) can be passed off as current. The publisher key
travels inside so that a client can pin it on first use without another round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import FormatError
from .manifest import MAX_TITLE, check_chunk_id, format_time, parse_time
from .names import parse_bundle_locale
from .recordskey import RecordsPublicKey
from .signing import Envelope, PublicKey, open_envelope

INDEX_FORMAT = 2  # 1: one index of every line (until issue 12); 2: one index per line
MAX_INDEX_BYTES = 64 * 1024  # one line: a title, a key, up to 16 deltas and 256 withdrawals
MAX_DELTAS = 16
MAX_WITHDRAWN = 256


@dataclass(frozen=True, slots=True)
class IndexEntry:
    bundle: str
    locale: str
    version: int
    manifest: str
    size: int
    title: str
    delta_from: tuple[int, ...] = ()
    withdrawn: tuple[int, ...] = ()  # versions taken back, newest first
    removed: bool = False  # the line itself was taken away

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "bundle": self.bundle,
            "locale": self.locale,
            "version": self.version,
            "manifest": self.manifest,
            "size": self.size,
            "title": self.title,
        }
        if self.delta_from:
            doc["delta_from"] = list(self.delta_from)
        if self.withdrawn:
            doc["withdrawn"] = list(self.withdrawn)
        if self.removed:
            doc["removed"] = True
        return doc

    @classmethod
    def from_json(cls, raw: object) -> IndexEntry:
        if not isinstance(raw, dict):
            raise FormatError("index entry must be an object")
        bundle, locale = parse_bundle_locale(raw, "index entry")
        version, size, title = raw.get("version"), raw.get("size"), raw.get("title", "")
        if type(version) is not int or version < 1:
            raise FormatError("index entry version must be a positive integer")
        if type(size) is not int or not 0 < size <= 64 * 1024 * 1024:
            raise FormatError("index entry manifest size is invalid")
        if not isinstance(title, str) or len(title) > MAX_TITLE:
            raise FormatError("index entry title is invalid")
        deltas = raw.get("delta_from", [])
        if (
            not isinstance(deltas, list)
            or len(deltas) > MAX_DELTAS
            or not all(type(v) is int and 1 <= v < version for v in deltas)
            or deltas != sorted(set(deltas), reverse=True)
        ):
            raise FormatError(
                "index entry delta_from must list up to 16 earlier versions, newest first"
            )
        withdrawn = raw.get("withdrawn", [])
        if (
            not isinstance(withdrawn, list)
            or len(withdrawn) > MAX_WITHDRAWN
            or not all(type(v) is int and v >= 1 and v != version for v in withdrawn)
            or withdrawn != sorted(set(withdrawn), reverse=True)
        ):
            raise FormatError(
                f"index entry withdrawn must list up to {MAX_WITHDRAWN} other versions, newest"
                " first"
            )
        removed = raw.get("removed", False)
        if removed is not True and removed is not False:
            raise FormatError("index entry removed must be true or false")
        return cls(
            bundle,
            locale,
            version,
            check_chunk_id(raw.get("manifest")),
            size,
            title,
            tuple(deltas),
            tuple(withdrawn),
            removed,
        )


@dataclass(frozen=True, slots=True)
class ReleaseIndex:
    serial: int
    issued: datetime
    expires: datetime
    publisher: PublicKey
    entries: tuple[IndexEntry, ...]
    records_key: RecordsPublicKey | None = None

    def to_signed(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "_type": "index",
            "format": INDEX_FORMAT,
            "serial": self.serial,
            "issued": format_time(self.issued),
            "expires": format_time(self.expires),
            "publisher": self.publisher.to_json(),
            "entries": [
                e.to_json() for e in sorted(self.entries, key=lambda e: (e.bundle, e.locale))
            ],
        }
        if self.records_key is not None:
            doc["records_key"] = self.records_key.to_json()
        return doc

    @classmethod
    def from_signed(cls, raw: dict[str, Any]) -> ReleaseIndex:
        if raw.get("_type") != "index":
            raise FormatError("document is not a release index (its _type is not 'index')")
        if raw.get("format") != INDEX_FORMAT:
            raise FormatError(
                f"release index format {raw.get('format')!r} is not {INDEX_FORMAT}; update satchel"
            )
        serial = raw.get("serial")
        if type(serial) is not int or serial < 0:
            raise FormatError("release index serial must be a non-negative integer")
        entries_raw = raw.get("entries")
        if not isinstance(entries_raw, list):
            raise FormatError("release index entries must be a list")
        if len(entries_raw) != 1:
            raise FormatError("a release index names exactly one bundle/locale line")
        entries = tuple(IndexEntry.from_json(e) for e in entries_raw)
        return cls(
            serial=serial,
            issued=parse_time(raw.get("issued"), "index issued"),
            expires=parse_time(raw.get("expires"), "index expires"),
            publisher=PublicKey.from_json(raw.get("publisher")),
            entries=entries,
            records_key=(
                RecordsPublicKey.from_json(raw["records_key"]) if "records_key" in raw else None
            ),
        )

    @property
    def line(self) -> IndexEntry:
        """The one line this index is about."""
        return self.entries[0]

    def entry(self, bundle: str, locale: str) -> IndexEntry | None:
        for e in self.entries:
            if e.bundle == bundle and e.locale == locale:
                return e
        return None


def parse_index(data: bytes) -> tuple[Envelope, ReleaseIndex]:
    """Parse index envelope bytes (structure only; signatures are checked by the caller)."""
    env = open_envelope(data, what="release index", max_bytes=MAX_INDEX_BYTES)
    return env, ReleaseIndex.from_signed(env.signed)


def parse_line_index(data: bytes, bundle: str, locale: str) -> tuple[Envelope, ReleaseIndex]:
    """Parse the index of one line, refusing one that is about another line."""
    env, index = parse_index(data)
    if (index.line.bundle, index.line.locale) != (bundle, locale):
        raise FormatError(
            f"the index sent for {bundle}/{locale} is about {index.line.bundle}/{index.line.locale}"
        )
    return env, index
