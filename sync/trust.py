"""The trust core: decides whether an index or manifest may be believed. Bytes in, values out.

Modelled on python-tuf's ``TrustedMetadataSet``: no I/O, raises on anything wrong. Rules:

- the publisher key is pinned on first use (or given up front as a fingerprint); an index
  signed by any other key is refused, whoever serves it (server, relay, USB stick);
- each line (bundle/locale) has its own index: it must be about that line, unexpired
  (freeze), and its serial may not go backwards from the last one seen for the line
  (rollback);
- a line's version may not go below the version the client already has (unless the signed
  index says that version was withdrawn), and the same version number may not come back with
  different content (equivocation);
- a manifest must hash to the id the index names, be signed by the pinned key, and say the
  same bundle, locale and version as the index entry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from satchel.content.errors import TrustError
from satchel.content.index import IndexEntry, ReleaseIndex, parse_line_index
from satchel.content.manifest import Manifest, parse_manifest
from satchel.content.signing import PublicKey, normalize_fingerprint, verify_envelope


@dataclass(frozen=True, slots=True)
class TrustedIndex:
    index: ReleaseIndex
    raw: bytes
    newly_pinned: PublicKey | None


def verify_index(
    data: bytes,
    *,
    bundle: str,
    locale: str,
    pinned: PublicKey | None,
    expected_fingerprint: str | None,
    now: datetime,
    last_serial: int | None,
    last_raw: bytes | None = None,
) -> TrustedIndex:
    """Check the release index of one line; returns it and, on first use, the key to pin."""
    env, index = parse_line_index(data, bundle, locale)
    key = index.publisher
    newly: PublicKey | None = None
    if expected_fingerprint is not None:
        want = normalize_fingerprint(expected_fingerprint)
        if key.keyid != want:
            raise TrustError(
                f"server key {key.fingerprint} is not the trusted key {want[:16]}...; refusing"
            )
    if pinned is None or (key.keyid != pinned.keyid and expected_fingerprint is not None):
        # First use, or the person explicitly trusts this new key (it matched --trust above).
        newly = key
        last_serial = None if pinned is not None else last_serial
        last_raw = None if pinned is not None else last_raw
    elif key.keyid != pinned.keyid:
        raise TrustError(
            f"server key changed: pinned {pinned.fingerprint}, server offers {key.fingerprint};"
            " refusing. If the publisher really changed keys, sync again with"
            " --trust NEW_FINGERPRINT"
        )
    verify_envelope(env, key, what="release index")
    if index.expires <= now:
        raise TrustError(
            f"release index expired at {index.expires:%Y-%m-%d %H:%M} UTC (a stale or frozen"
            " mirror); the versions already on this laptop stay usable"
        )
    if last_serial is not None and index.serial < last_serial:
        raise TrustError(
            f"release index serial {index.serial} is older than {last_serial} seen before"
            " (rollback); refusing"
        )
    if last_serial is not None and index.serial == last_serial and last_raw not in (None, data):
        raise TrustError(
            f"two different release indexes carry serial {index.serial} (equivocation); refusing"
        )
    return TrustedIndex(index=index, raw=data, newly_pinned=newly)


def check_entry_version(
    entry: IndexEntry, current_version: int | None, current_manifest: str | None
) -> None:
    """Refuse a version lower than the one held, or the same number with other content.

    A lower version is no rollback when the signed index says the held one was withdrawn:
    the laptop keeps it until a newer one comes (the updater does not switch back).
    """
    if current_version is None:
        return
    if entry.version < current_version and current_version in entry.withdrawn:
        return
    if entry.version < current_version:
        raise TrustError(
            f"server offers {entry.bundle}/{entry.locale} version {entry.version}, older than"
            f" version {current_version} already here (rollback); keeping {current_version}"
        )
    if entry.version == current_version and entry.manifest != current_manifest:
        raise TrustError(
            f"server offers different content as {entry.bundle}/{entry.locale} version"
            f" {entry.version}; refusing"
        )


def verify_manifest(data: bytes, entry: IndexEntry, key: PublicKey) -> Manifest:
    """Check a manifest's bytes against its index entry and the pinned key."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry.manifest:
        raise TrustError(
            f"manifest for {entry.bundle}/{entry.locale} v{entry.version} has hash"
            f" {actual[:16]}..., the index says {entry.manifest[:16]}..."
        )
    env, manifest = parse_manifest(data)
    verify_envelope(env, key, what="manifest")
    if (manifest.bundle, manifest.locale, manifest.version) != (
        entry.bundle,
        entry.locale,
        entry.version,
    ):
        raise TrustError(
            f"manifest describes {manifest.bundle}/{manifest.locale} v{manifest.version}, the"
            f" index says {entry.bundle}/{entry.locale} v{entry.version}"
        )
    return manifest
