"""Check a server's data: the store and the database must agree on every published version.

After a crash (power cut, SIGKILL mid-publish) the promise is that nothing half-done is
visible. This says whether it holds:

- every object the database lists as stored (``Chunk`` rows) is in the store and decodes to
  its id and length;
- every version's manifest is stored, hashes to its id and parses, and every object it lists
  is a stored, sound object;
- each line's latest version exists, and each line's signed index names the version it
  should (the newest one not withdrawn) and says whether the line was removed;
- every ready-made delta's object is stored.

Objects in the store that no row lists are *orphans*: an upload or a commit killed between
writing an object and recording it leaves them. They are counted, not errors: nothing points
at them, and the next publish that needs them records them without sending them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from satchel.content.chunking import chunk_id
from satchel.content.errors import NotFoundError, SatchelError
from satchel.content.index import parse_index
from satchel.content.manifest import parse_manifest
from satchel.content.objects import MAX_DICTIONARY, decode_object, verify_object
from sqlmodel import Session, select

from .db import Chunk, Line, LineIndex, StaticDelta, Version
from .indexing import served_entry
from .repository import Repository


@dataclass
class ServerFsckReport:
    objects: int = 0  # Chunk rows checked
    versions: int = 0
    orphans: int = 0  # stored objects no row lists (harmless leftovers of killed uploads)
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


def fsck_server(repo: Repository) -> ServerFsckReport:
    report = ServerFsckReport()
    store = repo.store
    with Session(repo.engine) as s:
        chunks = {row.id: row for row in s.exec(select(Chunk)).all()}
        versions = s.exec(select(Version)).all()
        lines = s.exec(select(Line)).all()
        deltas = s.exec(select(StaticDelta)).all()
        indexes = {(i.bundle, i.locale): i for i in s.exec(select(LineIndex)).all()}

    def lookup(dict_id: str) -> bytes:
        row = chunks.get(dict_id)
        if row is None or row.length > MAX_DICTIONARY:
            raise NotFoundError(f"dictionary {dict_id[:16]}... is not a stored dictionary")
        return verify_object(store.get(dict_id), dict_id, row.length)

    bad: set[str] = set()
    for cid, row in sorted(chunks.items()):
        report.objects += 1
        try:
            verify_object(store.get(cid), cid, row.length, lookup)
        except SatchelError as exc:
            bad.add(cid)
            report.problems.append(f"object {cid}: {exc}")
    ready_made = {d.object_id for d in deltas}
    report.orphans = sum(1 for cid in store if cid not in chunks and cid not in ready_made)

    for v in versions:
        report.versions += 1
        where = f"{v.bundle}/{v.locale} v{v.version}"
        if v.manifest_id not in chunks or v.manifest_id in bad:
            report.problems.append(f"{where}: manifest {v.manifest_id[:16]}... not soundly stored")
            continue
        try:
            envelope = decode_object(store.get(v.manifest_id), v.manifest_size)
            if chunk_id(envelope) != v.manifest_id:
                raise SatchelError("manifest bytes do not match their id")
            manifest = parse_manifest(envelope)[1]
        except SatchelError as exc:
            report.problems.append(f"{where}: manifest unusable ({exc})")
            continue
        if (manifest.bundle, manifest.locale, manifest.version) != (
            v.bundle,
            v.locale,
            v.version,
        ):
            report.problems.append(f"{where}: manifest is for another line or version")
        lacking = [cid for cid, _ in manifest.distinct_chunks() if cid not in chunks or cid in bad]
        if lacking:
            report.problems.append(f"{where}: {len(lacking)} objects missing or corrupt")

    have = {(v.bundle, v.locale, v.version): v.manifest_id for v in versions}
    for line in lines:
        if line.latest_version == 0:
            continue
        where = f"{line.bundle}/{line.locale}"
        if (line.bundle, line.locale, line.latest_version) not in have:
            report.problems.append(f"{where}: latest v{line.latest_version} does not exist")
            continue
        state = indexes.get((line.bundle, line.locale))
        if state is None:
            continue  # signed at the first request for it
        with Session(repo.engine) as s:
            should = served_entry(s, line.bundle, line.locale)
        try:
            signed = parse_index(state.body)[1].line
        except SatchelError as exc:
            report.problems.append(f"{where}: its signed index is unusable ({exc})")
            continue
        if should is None or (signed.version, signed.manifest, signed.removed) != (
            should.version,
            should.manifest,
            should.removed,
        ):
            report.problems.append(f"{where}: its signed index does not name the version it should")
    for d in deltas:
        if not store.has(d.object_id):
            report.problems.append(f"ready-made delta {d.object_id[:16]}... is not stored")
    return report
