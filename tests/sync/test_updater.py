"""The client's sync workflow against an in-process repository, honest and hostile."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from satchel.content.chunking import chunk_id
from satchel.content.errors import (
    FormatError,
    IntegrityError,
    NotFoundError,
    StoreError,
    TransportError,
    TruncatedError,
    TrustError,
    UnsafePathError,
    UsageError,
)
from satchel.content.manifest import FileEntry
from satchel.content.objects import RAW, decode_object
from satchel.content.signing import SigningKey
from satchel.server.repository import Repository
from satchel.sync.checkout import checkout
from satchel.sync.local import LocalStore
from satchel.sync.pack import pack_bytes
from satchel.sync.plan import missing
from satchel.sync.release import sign_index
from satchel.sync.store import FolderChunkStore, MemoryChunkStore, Staged
from satchel.sync.updater import Updater

from harness.repo import (
    RepoFetcher,
    assert_same_tree,
    flip_last_byte,
    forge_version,
    index_entry,
    make_repository,
    publish,
    rewrite_frame,
    sample_files,
    served_manifest,
    split_pack,
    text_bytes,
    want_count,
    with_files,
    write_tree,
)

MODES = {"tools/run.sh": 0o755}


def v2_files(v1: dict[str, bytes]) -> dict[str, bytes]:
    """v1 with one file edited, one removed and one large new binary file."""
    rng = random.Random(2)
    files = dict(v1)
    files["chapters/01-intro.html"] = (
        files["chapters/01-intro.html"][:5000]
        + b"<p>New!</p>"
        + files["chapters/01-intro.html"][5000:]
    )
    del files["chapters/02-data.html"]
    files["media/video.bin"] = rng.randbytes(60_000)
    return files


class Client:
    """A client store, its fetcher and updater, and helpers to inspect them."""

    def __init__(self, root: Path, repo: Repository, **kwargs: object) -> None:
        self.root = root
        self.store = LocalStore(root / "store", durable=False)
        self.fetcher = RepoFetcher(repo)
        self.updater = Updater(self.store, self.fetcher, **kwargs)  # type: ignore[arg-type]

    def sync(self):  # type: ignore[no-untyped-def]
        return self.updater.sync("course", "en")

    @property
    def version(self) -> int | None:
        ref = self.store.ref("course", "en")
        return ref.version if ref else None

    def checkout_to(self, dest: Path) -> Path:
        ref = self.store.ref("course", "en")
        assert ref is not None
        checkout(self.store.load_manifest(ref.manifest), self.store.objects, dest)
        return dest


@pytest.fixture
def v1(repo: Repository, tmp_path: Path) -> dict[str, bytes]:
    files = sample_files(1)
    publish(repo, write_tree(tmp_path / "v1", files, MODES))
    return files


@pytest.fixture
def client(tmp_path: Path, repo: Repository) -> Client:
    return Client(tmp_path / "client", repo)


def publish_v2(repo: Repository, tmp_path: Path, v1: dict[str, bytes]) -> dict[str, bytes]:
    files = v2_files(v1)
    publish(repo, write_tree(tmp_path / "v2", files, MODES))
    return files


# -- honest syncs --------------------------------------------------------------------------
def test_first_sync_takes_three_exchanges_and_checks_out(
    client: Client, repo: Repository, v1: dict[str, bytes], tmp_path: Path
) -> None:
    result = client.sync()
    m = served_manifest(repo)
    assert (result.version, result.previous_version, result.changed) == (1, None, True)
    assert result.manifest_fetched
    assert result.objects_fetched == len(m.distinct_chunks())
    assert result.pack_bytes == len(client.fetcher.pack_calls[0].body)
    assert (
        len(client.fetcher.index_calls),
        len(client.fetcher.manifest_calls),
        len(client.fetcher.pack_calls),
    ) == (1, 1, 1)
    assert client.fetcher.index_calls[0] == (None, True)
    assert client.version == 1
    assert client.store.pinned_key() == repo.key.public
    assert client.updater.newly_pinned_fingerprint == repo.key.public.fingerprint
    assert_same_tree(v1, client.checkout_to(tmp_path / "out"))


def test_update_fetches_only_new_chunks(
    client: Client, repo: Repository, v1: dict[str, bytes], tmp_path: Path
) -> None:
    client.fetcher.deltas = False  # a source without deltas: plain objects, want bitmap
    client.sync()
    old_ids = {c for c, _ in served_manifest(repo).distinct_chunks()}
    v2 = publish_v2(repo, tmp_path, v1)
    m2 = served_manifest(repo)
    new = [(c, n) for c, n in m2.distinct_chunks() if c not in old_ids]
    client.fetcher.reset()
    result = client.sync()
    assert (result.version, result.previous_version) == (2, 1)
    assert result.objects_fetched == len(new)
    call = client.fetcher.pack_calls[0]
    assert [c for c, _ in call.plan] == [c for c, _ in new]
    assert want_count(m2.distinct_chunks(), call.want) == len(new)
    assert client.fetcher.requests == 3
    ref = client.store.ref("course", "en")
    assert ref is not None and sorted(ref.versions) == [1, 2]
    assert_same_tree(v2, client.checkout_to(tmp_path / "out"))


def index_entry_manifest(repo: Repository, version: int) -> str:
    return next(v.manifest for v in repo.reads.catalog()[0].versions if v.version == version)


def test_update_from_the_held_version_uses_the_ready_made_delta(
    client: Client, repo: Repository, v1: dict[str, bytes], tmp_path: Path
) -> None:
    client.sync()
    m1 = served_manifest(repo)
    v2 = publish_v2(repo, tmp_path, v1)
    m2 = served_manifest(repo)
    entry = index_entry(repo, "course", "en")
    assert entry.delta_from == (1,)
    client.fetcher.reset()
    result = client.sync()
    assert (result.version, result.previous_version) == (2, 1)
    assert client.fetcher.delta_calls == [(index_entry_manifest(repo, 1), entry.manifest)]
    assert client.fetcher.pack_calls == []
    assert client.fetcher.requests == 3
    assert result.objects_fetched == len(
        {c for c, _ in m2.distinct_chunks()} - {c for c, _ in m1.distinct_chunks()}
    )
    assert_same_tree(v2, client.checkout_to(tmp_path / "out"))


def test_no_op_sync_is_one_not_modified_index_request(client: Client, v1: dict[str, bytes]) -> None:
    client.sync()
    etag = client.fetcher.index_calls[0]
    client.fetcher.reset()
    result = client.sync()
    assert client.fetcher.requests == 1
    sent_etag, modified = client.fetcher.index_calls[0]
    assert sent_etag is not None and not modified
    assert etag[0] is None
    assert not result.changed
    assert (result.objects_fetched, result.pack_bytes, result.manifest_fetched) == (0, 0, False)


def test_another_lines_publish_costs_this_line_one_not_modified_exchange(
    client: Client, repo: Repository, v1: dict[str, bytes], tmp_path: Path
) -> None:
    """Each line has its own index: a publish elsewhere changes nothing this laptop fetches."""
    client.sync()
    publish(repo, write_tree(tmp_path / "other", {"x.txt": b"x"}), bundle="other")
    client.fetcher.reset()
    result = client.sync()
    assert client.fetcher.requests == 1 and not client.fetcher.index_calls[0][1]  # a 304
    assert not result.changed


def test_progress_reports_growing_byte_counts(client: Client, v1: dict[str, bytes]) -> None:
    seen: list[tuple[int, int | None]] = []
    result = client.updater.sync(
        "course", "en", progress=lambda done, total: seen.append((done, total))
    )
    assert len(seen) > 1
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (result.pack_bytes, result.pack_bytes)


def test_dictionary_compressed_versions_sync(repo: Repository, tmp_path: Path) -> None:
    rng = random.Random(4)
    files = {f"text/{i:02d}.html": text_bytes(rng, 30_000) for i in range(20)}
    publish(repo, write_tree(tmp_path / "src", files))
    m = served_manifest(repo)
    assert m.dictionaries, "enough text to train a dictionary"
    c = Client(tmp_path / "client", repo)
    c.sync()
    assert c.fetcher.pack_calls[0].plan[0][0] == m.dictionaries[0][0]  # dictionary first
    assert_same_tree(files, c.checkout_to(tmp_path / "out"))


def test_a_sync_pays_durability_per_batch_not_per_object(
    client: Client, repo: Repository, v1: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    real = FolderChunkStore.commit

    def commit(self: FolderChunkStore, staged: list[Staged]) -> None:
        batches.append(len(staged))
        real(self, staged)

    monkeypatch.setattr(FolderChunkStore, "commit", commit)
    result = client.sync()
    assert result.objects_fetched > 1
    assert batches == [result.objects_fetched]  # one small pack: one batch
    assert all(client.store.objects.has(cid) for cid, _ in served_manifest(repo).distinct_chunks())


def test_a_manifest_is_parsed_once_but_checked_against_disk_and_key_every_time(
    client: Client, v1: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    import satchel.sync.local as local

    client.sync()
    ref = client.store.ref("course", "en")
    assert ref is not None
    parses = []
    real = local.parse_manifest
    monkeypatch.setattr(local, "parse_manifest", lambda data: parses.append(1) or real(data))
    first = client.store.load_manifest(ref.manifest)
    assert client.store.load_manifest(ref.manifest) is first and len(parses) <= 1
    # Other bytes on disk under the id are parsed again, and refused.
    path = client.store.root / "manifests" / ref.manifest
    good = path.read_bytes()
    path.write_bytes(good.replace(b'"course"', b'"coarse"', 1))
    with pytest.raises((StoreError, FormatError, TrustError)):
        client.store.load_manifest(ref.manifest)
    path.write_bytes(good)
    assert client.store.load_manifest(ref.manifest).version == first.version
    # A key the store no longer trusts (a new pin, the old one not retired) vouches for nothing.
    (client.store.root / "trust.json").unlink()
    client.store.pin(SigningKey.generate().public)
    with pytest.raises(TrustError):
        client.store.load_manifest(ref.manifest)


def test_unknown_bundle_and_bad_names(client: Client, v1: dict[str, bytes]) -> None:
    with pytest.raises(NotFoundError, match="course/en"):
        client.updater.sync("nothing", "en")
    with pytest.raises(NotFoundError):
        client.updater.sync("course", "uk")
    with pytest.raises(UsageError):
        client.updater.sync("../course", "en")


# -- interrupted and damaged packs ---------------------------------------------------------
def stored_of(client: Client, distinct: list[tuple[str, int]]) -> set[str]:
    return {c for c, _ in distinct if client.store.objects.has(c)}


def test_cut_pack_resumes_with_only_the_missing_chunks(
    client: Client, repo: Repository, v1: dict[str, bytes], tmp_path: Path
) -> None:
    client.sync()
    v2 = publish_v2(repo, tmp_path, v1)
    distinct = served_manifest(repo).distinct_chunks()
    need = missing(distinct, client.store.objects)
    client.fetcher.reset()
    client.fetcher.cut_after = 25_000
    with pytest.raises(TransportError):
        client.sync()
    assert client.version == 1
    kept = stored_of(client, [(c, n) for c, n in need])
    assert 0 < len(kept) < len(need)

    client.fetcher.cut_after = None
    client.fetcher.reset()
    result = client.sync()
    assert result.version == 2
    assert not result.manifest_fetched and client.fetcher.manifest_calls == []
    call = client.fetcher.pack_calls[0]
    assert call.objects == len(need) - len(kept) == result.objects_fetched
    assert want_count(distinct, call.want) == len(need) - len(kept)
    assert not {c for c, _ in call.plan} & kept
    assert_same_tree(v2, client.checkout_to(tmp_path / "out"))


def test_cut_first_sync_leaves_no_version(client: Client, v1: dict[str, bytes]) -> None:
    client.fetcher.cut_after = 9_000
    with pytest.raises(TransportError):
        client.sync()
    assert client.version is None
    client.fetcher.cut_after = None
    assert client.sync().version == 1


@pytest.mark.parametrize("bad", [0, 2, -1])
def test_corrupt_chunk_is_refused_and_not_stored(
    client: Client, repo: Repository, v1: dict[str, bytes], tmp_path: Path, bad: int
) -> None:
    client.sync()
    publish_v2(repo, tmp_path, v1)
    frames: list[tuple[str, bytes]] = []

    def corrupt(body: bytes) -> bytes:
        frames.extend(split_pack(body))
        return rewrite_frame(bad, flip_last_byte)(body)

    client.fetcher.pack_rewrite = corrupt
    with pytest.raises((IntegrityError, FormatError)):
        client.sync()
    assert client.version == 1
    bad_id = frames[bad][0]
    assert not client.store.objects.has(bad_id)
    position = bad % len(frames)
    assert all(client.store.objects.has(c) for c, _ in frames[:position])

    client.fetcher.pack_rewrite = None
    assert client.sync().version == 2


def test_corrupt_raw_chunk_is_an_integrity_error(
    client: Client, repo: Repository, v1: dict[str, bytes], tmp_path: Path
) -> None:
    client.sync()
    publish_v2(repo, tmp_path, v1)
    state: dict[str, str] = {}

    def corrupt_first_raw(body: bytes) -> bytes:
        frames = split_pack(body)
        i = next(i for i, (_, obj) in enumerate(frames) if obj[0] == RAW)
        state["id"] = frames[i][0]
        frames[i] = (frames[i][0], flip_last_byte(frames[i][1]))
        return pack_bytes(frames)

    client.fetcher.pack_rewrite = corrupt_first_raw
    with pytest.raises(IntegrityError):
        client.sync()
    assert client.version == 1 and not client.store.objects.has(state["id"])


@pytest.mark.parametrize("cut", [1, 36, 37, 100])
def test_truncated_pack_is_refused(
    client: Client, repo: Repository, v1: dict[str, bytes], tmp_path: Path, cut: int
) -> None:
    client.sync()
    publish_v2(repo, tmp_path, v1)
    client.fetcher.pack_rewrite = lambda body: body[:-cut]
    with pytest.raises(TruncatedError):
        client.sync()
    assert client.version == 1
    client.fetcher.pack_rewrite = None
    assert client.sync().version == 2  # complete frames were kept; the rest is fetched


def test_pack_missing_a_chunk_is_refused(
    client: Client, repo: Repository, v1: dict[str, bytes], tmp_path: Path
) -> None:
    client.sync()
    publish_v2(repo, tmp_path, v1)
    client.fetcher.pack_rewrite = lambda body: pack_bytes(split_pack(body)[:-1])
    with pytest.raises(IntegrityError):
        client.sync()
    assert client.version == 1


def test_pack_repeating_a_chunk_instead_of_another_is_refused(
    client: Client, repo: Repository, v1: dict[str, bytes], tmp_path: Path
) -> None:
    client.sync()
    publish_v2(repo, tmp_path, v1)

    def repeat(body: bytes) -> bytes:
        frames = split_pack(body)
        return pack_bytes([*frames[:-1], frames[0]])

    client.fetcher.pack_rewrite = repeat
    with pytest.raises(IntegrityError):
        client.sync()
    assert client.version == 1


def test_pack_with_an_unrequested_chunk_is_refused(
    client: Client, repo: Repository, v1: dict[str, bytes], tmp_path: Path
) -> None:
    publish_v2(repo, tmp_path, v1)
    client.fetcher.pack_rewrite = lambda body: pack_bytes(
        [(chunk_id(b"x"), b"\x00x"), *split_pack(body)]
    )
    with pytest.raises(IntegrityError, match="not asked"):
        client.sync()
    assert client.version is None


# -- trust ---------------------------------------------------------------------------------
def test_other_server_key_is_refused(
    client: Client, repo: Repository, v1: dict[str, bytes], tmp_path: Path
) -> None:
    client.sync()
    impostor = make_repository(tmp_path / "impostor")
    publish(impostor, write_tree(tmp_path / "v1-again", v1, MODES))
    client.fetcher.repo = impostor
    with pytest.raises(TrustError, match="key changed"):
        client.sync()
    assert client.version == 1
    assert client.store.pinned_key() == repo.key.public


def test_trust_fingerprint_mismatch_is_refused(
    repo: Repository, v1: dict[str, bytes], tmp_path: Path
) -> None:
    stranger = SigningKey.generate().public.fingerprint
    c = Client(tmp_path / "client", repo, trust=stranger)
    with pytest.raises(TrustError):
        c.sync()
    assert c.store.pinned_key() is None and c.version is None
    assert c.fetcher.manifest_calls == [] and c.fetcher.pack_calls == []

    ok = Client(tmp_path / "client2", repo, trust=repo.key.public.fingerprint)
    assert ok.sync().version == 1


def test_older_index_is_refused_after_a_newer_one(
    client: Client, repo: Repository, v1: dict[str, bytes], tmp_path: Path
) -> None:
    old_index = repo.source.index("course", "en")[0]
    client.sync()
    publish_v2(repo, tmp_path, v1)
    client.sync()
    assert client.version == 2
    client.fetcher.index_override = old_index
    with pytest.raises(TrustError, match="rollback"):
        client.sync()
    assert client.version == 2


def test_newer_index_offering_an_older_version_is_refused(
    client: Client, repo: Repository, v1: dict[str, bytes], tmp_path: Path
) -> None:
    entry_v1 = index_entry(repo, "course", "en")
    publish_v2(repo, tmp_path, v1)
    client.sync()
    serial = client.store.index_meta("course", "en")[1]
    assert serial is not None
    client.fetcher.index_override = sign_index(
        [entry_v1], serial=serial + 10, key=repo.key, now=datetime.now(UTC).replace(microsecond=0)
    )
    with pytest.raises(TrustError, match="older"):
        client.sync()
    assert client.version == 2


def test_same_version_with_other_content_is_refused(
    client: Client, repo: Repository, v1: dict[str, bytes]
) -> None:
    client.sync()
    forged = forge_version(repo, replace(served_manifest(repo), title="Changed behind your back"))
    client.fetcher.index_override = forged.index
    client.fetcher.manifest_overrides[forged.manifest_id] = forged.manifest_object
    with pytest.raises(TrustError, match="different content"):
        client.sync()
    assert client.version == 1


def test_expired_index_is_refused(repo: Repository, v1: dict[str, bytes], tmp_path: Path) -> None:
    later = datetime.now(UTC) + timedelta(days=61)
    c = Client(tmp_path / "client", repo, clock=lambda: later)
    with pytest.raises(TrustError, match="expired"):
        c.sync()
    assert c.version is None


def test_manifest_not_matching_the_index_is_refused(
    client: Client, repo: Repository, v1: dict[str, bytes]
) -> None:
    entry = index_entry(repo, "course", "en")
    envelope = decode_object(repo.source.manifest_object(entry.manifest), entry.size)
    tampered = envelope.replace(b'"title":"Course"', b'"title":"Coursf"')
    assert tampered != envelope and len(tampered) == len(envelope)
    client.fetcher.manifest_overrides[entry.manifest] = bytes([RAW]) + tampered
    with pytest.raises(TrustError, match="hash"):
        client.sync()
    assert client.version is None and client.store.manifest_bytes(entry.manifest) is None


def hostile_entry(kind: str, template: FileEntry) -> FileEntry:
    if kind == "dotdot":
        return replace(template, path="../escape.txt")
    if kind == "dotdot-inside":
        return replace(template, path="media/../../escape.txt")
    if kind == "absolute":
        return replace(template, path="/tmp/satchel-escape.txt")
    if kind == "symlink":
        return replace(template, path="zz-link", mode=0o120777)
    if kind == "directory":
        return replace(template, path="zz-dir", mode=0o40755)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["dotdot", "dotdot-inside", "absolute", "symlink", "directory"])
def test_signed_manifest_with_unsafe_entries_is_refused(
    client: Client, repo: Repository, v1: dict[str, bytes], kind: str, tmp_path: Path
) -> None:
    client.sync()
    base = served_manifest(repo)
    files = sorted([*base.files, hostile_entry(kind, base.files[0])], key=lambda f: f.path)
    forged = forge_version(repo, with_files(base, files, version=2, parent_version=1))
    client.fetcher.index_override = forged.index
    client.fetcher.manifest_overrides[forged.manifest_id] = forged.manifest_object
    client.fetcher.reset()
    with pytest.raises(FormatError) as info:
        client.sync()
    if kind in ("dotdot", "dotdot-inside", "absolute"):
        assert isinstance(info.value, UnsafePathError)
    assert client.version == 1
    assert client.fetcher.pack_calls == []
    assert client.store.manifest_bytes(forged.manifest_id) is None
    assert not (tmp_path / "escape.txt").exists()
    assert_same_tree(v1, client.checkout_to(tmp_path / "out"))


# -- key rotation --------------------------------------------------------------------------
def rotated(tmp_path: Path, repo_dir: Path, store: MemoryChunkStore) -> Repository:
    """The same repository (database and objects) restarted with a new signing key."""
    return Repository(repo_dir, store=store, signing_key=tmp_path / "new-key.pem")


def test_trust_option_moves_the_pin_to_a_new_key(tmp_path: Path) -> None:
    objects = MemoryChunkStore()
    old = Repository(tmp_path / "srv", store=objects)
    files = sample_files(1)
    publish(old, write_tree(tmp_path / "v1", files, MODES))
    c = Client(tmp_path / "client", old)
    c.sync()
    new = rotated(tmp_path, tmp_path / "srv", objects)
    v2 = v2_files(files)
    publish(new, write_tree(tmp_path / "v2", v2, MODES))
    c.fetcher.repo = new
    with pytest.raises(TrustError, match="--trust"):
        c.sync()
    c2 = Client(tmp_path / "client", new, trust=new.key.public.fingerprint)
    assert c2.sync().version == 2
    assert c2.store.pinned_key() == new.key.public
    assert_same_tree(v2, c2.checkout_to(tmp_path / "out"))


def test_version_a_sync_reports_current_can_be_checked_out_after_a_key_change(
    tmp_path: Path,
) -> None:
    objects = MemoryChunkStore()
    old = Repository(tmp_path / "srv", store=objects)
    files = sample_files(1)
    publish(old, write_tree(tmp_path / "v1", files, MODES))
    Client(tmp_path / "client", old).sync()
    new = rotated(tmp_path, tmp_path / "srv", objects)
    publish(new, write_tree(tmp_path / "other", {"x.txt": b"x"}), bundle="other")  # re-signs
    c = Client(tmp_path / "client", new, trust=new.key.public.fingerprint)
    result = c.sync()  # succeeds: "course/en version 1, nothing changed"
    assert result.version == 1
    assert_same_tree(files, c.checkout_to(tmp_path / "out"))


def test_on_pin_is_called_once_on_first_use(
    repo: Repository, v1: dict[str, bytes], tmp_path: Path
) -> None:
    pins: list[tuple[str, bool]] = []
    c = Client(tmp_path / "client", repo, on_pin=lambda fp, rotated: pins.append((fp, rotated)))
    c.sync()
    c.sync()
    assert pins == [(repo.key.public.fingerprint, False)]
