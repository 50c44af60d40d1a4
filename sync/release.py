"""The publisher's half of a version: assemble its manifest from a draft, sign it, sign the index.

Pure functions over values: the server calls them inside its publish transaction, and tests
and benches call them to forge or rebuild signed documents. The teacher's half is
:mod:`satchel.sync.publish`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from satchel.content.index import IndexEntry, ReleaseIndex
from satchel.content.manifest import BaseRef, Manifest, ManifestDraft
from satchel.content.names import check_bundle, check_locale
from satchel.content.recordskey import RecordsPublicKey
from satchel.content.signing import SigningKey

INDEX_VALIDITY = timedelta(days=60)


def assemble_manifest(
    draft: ManifestDraft,
    *,
    bundle: str,
    locale: str,
    version: int,
    parent_version: int | None,
    created: datetime,
    dictionaries: tuple[tuple[str, int], ...],
    base: BaseRef | None = None,
) -> Manifest:
    meta = draft.meta
    if meta is not None and meta.locale != locale:
        # The signed metadata names the line it was published to, whatever the folder said.
        meta = replace(meta, locale=locale)
    return Manifest(
        bundle=check_bundle(bundle),
        locale=check_locale(locale),
        version=version,
        parent_version=parent_version,
        created=created,
        title=draft.title,
        chunker=draft.chunker,
        files=draft.files,
        dictionaries=dictionaries,
        meta=meta,
        lessons=draft.lessons,
        base=base,
    )


def sign_manifest(manifest: Manifest, key: SigningKey) -> bytes:
    return key.sign(manifest.to_signed())


def sign_index(
    entries: Iterable[IndexEntry],
    *,
    serial: int,
    key: SigningKey,
    now: datetime,
    records_key: RecordsPublicKey | None = None,
) -> bytes:
    """A line's release index (``entries`` holds that one line), signed."""
    index = ReleaseIndex(
        serial=serial,
        issued=now,
        expires=now + INDEX_VALIDITY,
        publisher=key.public,
        entries=tuple(entries),
        records_key=records_key,
    )
    return key.sign(index.to_signed())
