"""Check a local store: every object against its id, every version for completeness.

``repair`` deletes objects that fail (the next sync fetches them again); it never touches
refs, so the current version stays selected even while some of its chunks are refetched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from satchel.content.chunking import chunk_id
from satchel.content.errors import ContentError, NotFoundError, SatchelError
from satchel.content.objects import (
    MAX_DICTIONARY,
    declared_length,
    decode_object,
    object_dictionary,
)

from .local import LocalStore
from .select import needed_objects, selected_files


@dataclass
class FsckReport:
    objects: int = 0
    corrupt: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unverifiable: list[str] = field(default_factory=list)  # their dictionary is bad or absent
    incomplete: list[str] = field(default_factory=list)  # "bundle/locale vN: K missing or corrupt"

    @property
    def clean(self) -> bool:
        return not self.corrupt and not self.unverifiable and not self.incomplete


def fsck(store: LocalStore, *, repair: bool = False) -> FsckReport:
    report = FsckReport()
    objects = store.objects

    def lookup(dict_id: str) -> bytes:
        obj = objects.get(dict_id)
        length = declared_length(obj)
        if length > MAX_DICTIONARY:
            raise ContentError(f"dictionary {dict_id[:16]}... is too large")
        data = decode_object(obj, length)
        if chunk_id(data) != dict_id:
            raise ContentError(f"dictionary {dict_id[:16]}... is corrupt")
        return data

    for cid in list(objects):
        report.objects += 1
        try:
            obj = objects.get(cid)
            dict_id = object_dictionary(obj)
            if dict_id is not None:
                try:
                    lookup(dict_id)
                except (ContentError, NotFoundError):
                    # The dictionary is reported (and repaired) on its own; this chunk may be
                    # fine, and deleting it would only cost a refetch.
                    report.unverifiable.append(cid)
                    continue
            if chunk_id(decode_object(obj, declared_length(obj), lookup)) != cid:
                raise ContentError("hash mismatch")
        except (ContentError, NotFoundError):
            report.corrupt.append(cid)
            if repair:
                objects.delete(cid)
                report.removed.append(cid)
    bad = set(report.corrupt)
    for ref in store.refs():
        for version, manifest_id in sorted(ref.versions.items()):
            where = f"{ref.bundle}/{ref.locale} v{version}"
            try:
                manifest = store.load_manifest(manifest_id)
            except SatchelError as exc:
                report.incomplete.append(f"{where}: manifest unusable ({exc})")
                continue
            wanted = needed_objects(manifest, selected_files(manifest, ref.only))
            lacking = [cid for cid, _ in wanted if cid in bad or not objects.has(cid)]
            if lacking:
                report.incomplete.append(f"{where}: {len(lacking)} objects missing or corrupt")
    return report
