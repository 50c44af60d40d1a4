"""Poor links: a data budget, dry runs, retry with backoff, and Range resume inside a chunk.

Most tests drive the updater in process over :class:`RepoFetcher`, where every byte and every
exchange is counted exactly. The ``# -- over HTTP`` tests use the real HTTP client against the
app (TestClient) and the ``# -- end to end`` ones a real ``satchel serve`` and the CLI through
:class:`LoopbackProxy`, which counts and cuts what crosses the wire. Nothing here waits on the
clock: retries sleep through an injected function (or 0.01 s through the environment).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from satchel.clients.http import HttpClient, StatusError, parse_size
from satchel.content.chunking import Chunker, chunk_id
from satchel.content.errors import (
    ContentError,
    NotFoundError,
    TransportError,
    TruncatedError,
    TrustError,
    UsageError,
)
from satchel.content.objects import RAW
from satchel.server.app import create_app
from satchel.server.repository import Repository
from satchel.sync.checkout import checkout
from satchel.sync.delta import static_pack
from satchel.sync.fetcher import IndexResponse, PackResponse, RangeResponse
from satchel.sync.local import LocalStore
from satchel.sync.pack import MAGIC, PackReader, pack_bytes, trailer
from satchel.sync.plan import encode_want
from satchel.sync.resume import (
    MAX_PARTIALS,
    MIN_PARTIAL,
    Partial,
    PartialStore,
    RetryPolicy,
    is_transient,
    keepable,
)
from satchel.sync.store import FolderChunkStore
from satchel.sync.updater import SyncResult, Updater
from starlette.exceptions import StarletteDeprecationWarning

from harness.e2e import (
    SatchelServer,
    checkout_ok,
    run_cli,
    sync,
    sync_json,
)
from harness.e2e import assert_same_tree as assert_same_dir
from harness.e2e import publish as cli_publish
from harness.proxy import LoopbackProxy
from harness.repo import (
    SMALL_CHUNKER,
    RepoFetcher,
    assert_same_tree,
    flip_last_byte,
    make_repository,
    publish,
    rewrite_frame,
    sample_files,
    served_manifest,
    text_bytes,
    write_tree,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

BIG = 120 * 1024
BIG_CHUNKER = Chunker()  # the defaults: chunks up to 128 KiB


# -- trees -----------------------------------------------------------------------------------
def one_chunk(size: int = BIG, seed: int = 0) -> bytes:
    """``size`` incompressible bytes that the default chunker keeps as one single chunk.

    Random data is cut about every 32 KiB; this searches seeded random data for a stretch with
    no cut point, which FastCDC (its hash restarts at every cut) then keeps whole on its own.
    """
    for attempt in range(1000):
        data = random.Random(seed * 1000 + attempt).randbytes(2_000_000)
        for cut in BIG_CHUNKER.cut_bytes(data):
            if cut.length >= size:
                chunk = data[cut.offset : cut.offset + size]
                assert len(BIG_CHUNKER.cut_bytes(chunk)) == 1
                return chunk
    raise AssertionError("no long chunk found")


def big_files(count: int = 1) -> dict[str, bytes]:
    """Some text, then ``count`` large single-chunk files (last in pack order)."""
    files = {"a-notes.md": text_bytes(random.Random(5), 6000)}
    for i in range(count):
        files[f"z-big-{i}.bin"] = one_chunk(seed=i)
    return files


def edited(files: dict[str, bytes]) -> dict[str, bytes]:
    """``files`` with one text file edited and one new random file."""
    out = dict(files)
    name = sorted(k for k in files if k.endswith((".md", ".html")))[0]
    text = out[name]
    out[name] = text[: len(text) // 2] + b"\n\nErratum: fixed.\n\n" + text[len(text) // 2 :]
    out["media/new.bin"] = random.Random(9).randbytes(30_000)
    return out


# -- an in-process client ----------------------------------------------------------------------
class Client:
    """A store, a RepoFetcher and an Updater whose retries sleep into a list."""

    def __init__(self, root: Path, repo: Repository, *, retries: int = 0, **fetcher: object):
        self.store = LocalStore(root, durable=False)
        self.fetcher = RepoFetcher(repo, **fetcher)  # type: ignore[arg-type]
        self.sleeps: list[float] = []
        self.notices: list[tuple[str, int, float]] = []
        self.updater = self.make_updater(self.fetcher, retries)

    def make_updater(self, fetcher: object, retries: int = 0) -> Updater:
        policy = RetryPolicy(retries=retries, sleep=self.sleeps.append, jitter=lambda: 1.0)
        return Updater(
            self.store,
            fetcher,  # type: ignore[arg-type]
            retry=policy,
            on_retry=lambda exc, n, delay: self.notices.append((type(exc).__name__, n, delay)),
        )

    def sync(self, max_bytes: int | None = None) -> SyncResult:
        return self.updater.sync("course", "en", max_bytes=max_bytes)

    @property
    def version(self) -> int | None:
        ref = self.store.ref("course", "en")
        return ref.version if ref else None

    def objects(self) -> set[str]:
        return set(self.store.objects)

    def partials(self) -> list[Partial]:
        return PartialStore(self.store.root / "partial").load()

    def checkout_to(self, dest: Path) -> Path:
        ref = self.store.ref("course", "en")
        assert ref is not None
        checkout(self.store.load_manifest(ref.manifest), self.store.objects, dest)
        return dest


def full_pack_length(repo: Repository, tmp_path: Path, name: str = "measure") -> int:
    """Pack bytes of one uninterrupted first sync (a separate store)."""
    measure = Client(tmp_path / name, repo)
    return measure.sync().pack_bytes


def stored_size(repo: Repository, cid: str) -> int:
    return len(repo.source.get_object(cid))


# -- the pack reader exposes the frame it stopped inside ------------------------------------------
def test_pack_reader_exposes_the_partial_frame_and_keeps_its_errors() -> None:
    a, b = b"\x00" + b"x" * 100, b"\x00" + b"y" * 5000
    ida, idb = chunk_id(a[1:]), chunk_id(b[1:])
    body = pack_bytes([(ida, a), (idb, b)])
    reader = PackReader()
    assert reader.pending is None
    first = reader.feed(body[: len(MAGIC) + 36 + len(a) + 20])  # inside b's head
    assert [f.chunk_id for f in first] == [ida]
    assert reader.pending is None and reader.pending_head is None
    cut = len(MAGIC) + 36 + len(a) + 36 + 1234
    assert reader.feed(body[len(MAGIC) + 36 + len(a) + 20 : cut]) == []
    pending = reader.pending
    assert pending is not None
    assert (pending.chunk_id, pending.length, pending.data) == (idb, len(b), b[:1234])
    head = reader.pending_head
    assert head is not None and (head.have, head.format) == (1234, RAW)
    with pytest.raises(TruncatedError, match="after 1 complete frames"):
        reader.close()
    assert reader.feed(body[cut:])[0].chunk_id == idb
    assert reader.pending is None
    reader.close()


def test_only_plain_objects_of_16_kib_or_more_are_kept() -> None:
    assert keepable(0x00, MIN_PARTIAL, MIN_PARTIAL + 1)
    assert keepable(0x01, MIN_PARTIAL, 10 * MIN_PARTIAL)
    assert keepable(0x02, MIN_PARTIAL, 10 * MIN_PARTIAL)
    assert not keepable(0x03, 10 * MIN_PARTIAL, 20 * MIN_PARTIAL)  # a range delta: whole only
    assert not keepable(0x00, MIN_PARTIAL - 1, 10 * MIN_PARTIAL)
    assert not keepable(0x00, MIN_PARTIAL, MIN_PARTIAL)  # complete is not partial
    assert not keepable(None, MIN_PARTIAL, 10 * MIN_PARTIAL)


def test_partial_store_is_bounded_and_atomic(tmp_path: Path) -> None:
    partials = PartialStore(tmp_path / "partial", durable=False)
    ids = [hashlib.sha256(bytes([i])).hexdigest() for i in range(MAX_PARTIALS + 3)]
    for i, cid in enumerate(ids):
        partials.save(Partial(cid, 100_000, bytes(1000 + 10 * i if i else 90_000)))
    kept = {p.chunk_id for p in partials.load()}
    assert len(kept) == MAX_PARTIALS
    assert ids[0] in kept and ids[-1] in kept  # the largest and the newest stay
    assert not {ids[1], ids[2], ids[3]} & kept  # the smallest made room
    assert not [p for p in (tmp_path / "partial").iterdir() if p.name.startswith(".")]
    (tmp_path / "partial" / ids[-1]).write_bytes(b"garbage")  # unreadable: dropped, not fatal
    assert partials.get(ids[-1]) is None and ids[-1] not in partials.ids()


# -- a data budget -------------------------------------------------------------------------------
def test_budget_stops_keeps_every_frame_and_resumes_to_the_same_tree(
    repo: Repository, tmp_path: Path
) -> None:
    files = sample_files(3, scale=3)
    publish(repo, write_tree(tmp_path / "v1", files))
    client = Client(tmp_path / "client", repo)
    budget = 15_000
    results: list[SyncResult] = []
    for _ in range(60):
        before = client.objects()
        calls = len(client.fetcher.pack_calls)
        result = client.sync(budget)
        results.append(result)
        for call in client.fetcher.pack_calls[calls:]:  # only what is still missing
            assert not {cid for cid, _ in call.plan} & before
        if result.complete:
            break
        assert client.version is None  # no switch before the version is whole
        assert result.bytes_fetched <= budget + client.fetcher.piece_size
        assert client.objects() > before  # every budgeted run kept something
    assert not results[0].complete and results[-1].complete and len(results) >= 3
    assert client.version == 1 and results[-1].changed
    assert_same_tree(files, client.checkout_to(tmp_path / "out"))


@pytest.mark.parametrize(
    ("case", "budget"), [("small-chunks", 10_000), ("large-chunks", 50_000), ("update", 6_000)]
)
def test_budgeted_runs_cost_at_most_a_tenth_more_than_one_sync(
    tmp_path: Path, case: str, budget: int
) -> None:
    repo = make_repository(tmp_path / "srv")
    if case == "large-chunks":
        files = big_files(3)
        publish(repo, write_tree(tmp_path / "v1", files), chunker=BIG_CHUNKER)
    else:
        files = sample_files(4, scale=2)
        publish(repo, write_tree(tmp_path / "v1", files))
    whole = Client(tmp_path / "whole", repo, piece_size=1024)
    client = Client(tmp_path / "client", repo, piece_size=1024)
    if case == "update":
        whole.sync()
        client.sync()
        files = edited(files)
        publish(repo, write_tree(tmp_path / "v2", files))
    full = whole.sync()
    assert full.complete and full.bytes_fetched > 3 * budget
    total = runs = 0
    while True:
        result = client.sync(budget)
        runs += 1
        total += result.bytes_fetched
        if result.complete:
            break
        assert runs < 100
    # Per run: one pack's magic and trailer (44 bytes) and at most one piece read past the
    # budget before the connection closes.
    assert total <= 1.1 * full.bytes_fetched + runs * (44 + 1024), (total, full, runs)
    assert runs >= 3
    if case == "large-chunks":  # chunks larger than the budget grew across runs by Range
        assert len(client.fetcher.range_calls) >= 3
    assert_same_tree(files, client.checkout_to(tmp_path / "out"))


def test_a_budget_smaller_than_any_chunk_still_makes_progress(
    repo: Repository, tmp_path: Path
) -> None:
    files = sample_files(5)
    publish(repo, write_tree(tmp_path / "v1", files))
    client = Client(tmp_path / "client", repo, piece_size=64)  # less than a frame per read
    objects = len(served_manifest(repo).distinct_chunks())
    for run in range(objects + 1):
        before = client.objects()
        result = client.sync(100)
        if result.complete:
            break
        assert result.objects_fetched == 1 and len(client.objects() - before) == 1, run
    assert result.complete and run == objects - 1
    assert_same_tree(files, client.checkout_to(tmp_path / "out"))


# -- dry runs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["first-sync", "static", "dynamic-with-base", "partial"])
def test_dry_run_says_exactly_what_the_sync_then_downloads(tmp_path: Path, case: str) -> None:
    repo = make_repository(tmp_path / "srv")
    files = big_files(1) if case == "partial" else sample_files(6, scale=2)
    chunker = BIG_CHUNKER if case == "partial" else SMALL_CHUNKER
    publish(repo, write_tree(tmp_path / "v1", files), chunker=chunker)
    client = Client(tmp_path / "client", repo)
    if case in ("static", "dynamic-with-base"):
        client.sync()
        files = edited(files)
        publish(repo, write_tree(tmp_path / "v2", files), chunker=chunker)
    if case == "dynamic-with-base":
        assert not client.sync(3000).complete  # holds some of v2 now: no ready-made pack fits
    if case == "partial":
        client.fetcher.cut_after = full_pack_length(repo, tmp_path) - 36 - 40_000
        with pytest.raises(TransportError):
            client.sync()
        client.fetcher.cut_after = None
        assert len(client.partials()) == 1
    held = client.version
    client.fetcher.reset()

    plan = client.updater.plan("course", "en")
    route = {"first-sync": "dynamic", "static": "static", "partial": "none"}
    assert plan.route == route.get(case, "dynamic")
    assert plan.ranges == (1 if case == "partial" else 0)
    assert client.version == held  # nothing switched
    assert not client.fetcher.pack_calls and not client.fetcher.delta_calls
    assert not client.fetcher.range_calls
    assert plan.bytes_to_download > 0
    assert (plan.meta_bytes > 0) is (case in ("first-sync", "static"))  # else manifest held
    again = client.updater.plan("course", "en")  # the manifest is kept: only the index again
    assert again == replace(plan, meta_bytes=0, manifest_fetched=False)

    client.fetcher.reset()
    result = client.sync()
    assert result.complete and client.version == plan.version
    assert result.bytes_fetched == plan.bytes_to_download, (plan, result)
    assert result.objects_fetched == plan.objects + plan.ranges
    if case == "static":
        assert client.fetcher.delta_calls and not client.fetcher.pack_calls
    assert_same_tree(files, client.checkout_to(tmp_path / "out"))


def test_dry_run_of_a_current_version_costs_nothing(repo: Repository, tmp_path: Path) -> None:
    publish(repo, write_tree(tmp_path / "v1", sample_files(1)))
    client = Client(tmp_path / "client", repo)
    client.sync()
    client.fetcher.reset()
    plan = client.updater.plan("course", "en")
    assert (plan.route, plan.bytes_to_download, plan.meta_bytes) == ("none", 0, 0)
    assert client.fetcher.requests == 1  # one index request (not modified)


# -- retry with backoff --------------------------------------------------------------------------
class Flaky:
    """A Fetcher that fails as scripted before passing calls on to a RepoFetcher."""

    def __init__(self, inner: RepoFetcher, script: dict[str, list[Exception | int]]) -> None:
        self.inner = inner
        self.script = script  # per method: exceptions to raise, or pack bytes to cut after

    def _next(self, method: str) -> int | None:
        todo = self.script.get(method)
        if not todo:
            return None
        step = todo.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def fetch_index(self, bundle: str, locale: str, etag: str | None) -> IndexResponse:
        self._next("index")
        return self.inner.fetch_index(bundle, locale, etag)

    def fetch_manifest(self, manifest_id: str, base: str | None = None) -> bytes:
        self._next("manifest")
        return self.inner.fetch_manifest(manifest_id, base)

    def fetch_pack(self, manifest_id: str, want: bytes, base: str | None = None) -> PackResponse:
        self.inner.cut_after = self._next("pack")
        return self.inner.fetch_pack(manifest_id, want, base)

    def fetch_delta(self, base: str, manifest_id: str) -> PackResponse:
        self.inner.cut_after = self._next("pack")
        return self.inner.fetch_delta(base, manifest_id)

    def fetch_range(self, cid: str, start: int, end: int | None = None) -> RangeResponse:
        return self.inner.fetch_range(cid, start, end)

    def delta_size(self, base: str, manifest_id: str) -> int:
        return self.inner.delta_size(base, manifest_id)

    def pack_size(self, manifest_id: str, want: bytes, base: str | None = None) -> int:
        return self.inner.pack_size(manifest_id, want, base)


def test_two_transient_failures_are_retried_with_backoff_and_resume(
    repo: Repository, tmp_path: Path
) -> None:
    files = sample_files(7, scale=2)
    publish(repo, write_tree(tmp_path / "v1", files))
    client = Client(tmp_path / "client", repo)
    flaky = Flaky(
        client.fetcher,
        {"index": [StatusError("GET /v1/index: HTTP 503 busy", 503)], "pack": [20_000]},
    )
    updater = client.make_updater(flaky, retries=3)
    result = updater.sync("course", "en")
    assert result.complete and result.retries == 2
    assert client.sleeps == [1.0, 2.0]  # exponential (jitter pinned to its maximum here)
    assert [(kind, n) for kind, n, _ in client.notices] == [
        ("StatusError", 1),
        ("TransportError", 2),
    ]
    first, second = client.fetcher.pack_calls
    assert 0 < second.objects < first.objects  # the retry asked only for what was missing
    assert not {c for c, _ in second.plan} & set(split_ids(first.body[:20_000]))
    assert result.pack_bytes == 20_000 + len(second.body)
    assert_same_tree(files, client.checkout_to(tmp_path / "out"))


def split_ids(prefix: bytes) -> list[str]:
    return [f.chunk_id for f in PackReader().feed(prefix)]


def test_retries_give_up_after_the_limit_with_capped_exponential_waits(
    repo: Repository, tmp_path: Path
) -> None:
    publish(repo, write_tree(tmp_path / "v1", sample_files(1)))
    client = Client(tmp_path / "client", repo)
    down = [TransportError("connection refused") for _ in range(10)]
    updater = client.make_updater(Flaky(client.fetcher, {"index": list(down)}), retries=3)
    with pytest.raises(TransportError, match="refused"):
        updater.sync("course", "en")
    assert client.sleeps == [1.0, 2.0, 4.0]
    policy = RetryPolicy(base=1.0, cap=30.0, jitter=lambda: 1.0)
    assert [policy.delay(i) for i in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    low = RetryPolicy(base=1.0, cap=30.0, jitter=lambda: 0.0)
    assert [low.delay(i) for i in range(3)] == [0.5, 1.0, 2.0]  # jitter: half to all of it


@pytest.mark.parametrize("kind", ["trust", "corrupt-chunk", "not-found", "http-405"])
def test_data_and_usage_errors_are_never_retried(
    repo: Repository, tmp_path: Path, kind: str
) -> None:
    publish(repo, write_tree(tmp_path / "v1", sample_files(1)))
    client = Client(tmp_path / "client", repo)
    script: dict[str, list[Exception | int]] = {}
    expected: type[Exception] = TransportError
    if kind == "trust":
        client.sync()
        other = make_repository(tmp_path / "other")
        publish(other, write_tree(tmp_path / "o1", sample_files(2)))
        client.fetcher.index_override = other.source.index("course", "en")[0]
        expected = TrustError
    elif kind == "corrupt-chunk":
        client.fetcher.pack_rewrite = rewrite_frame(0, flip_last_byte)
        expected = ContentError
    elif kind == "not-found":
        script["manifest"] = [NotFoundError("no manifest")]
        expected = NotFoundError
    else:
        script["manifest"] = [StatusError("GET /v1/manifests/x: HTTP 405", 405)]
    client.fetcher.reset()
    updater = client.make_updater(Flaky(client.fetcher, script), retries=3)
    with pytest.raises(expected) as caught:
        updater.sync("course", "en")
    assert client.sleeps == [] and client.notices == []
    assert not is_transient(caught.value)
    assert len(client.fetcher.index_calls) == 1


# -- Range resume inside a large chunk -----------------------------------------------------------
@pytest.fixture
def big(tmp_path: Path) -> tuple[Repository, dict[str, bytes], str]:
    """A repository with text plus one 120 KiB incompressible chunk, last in the pack."""
    repo = make_repository(tmp_path / "srv")
    files = big_files(1)
    publish(repo, write_tree(tmp_path / "v1", files), chunker=BIG_CHUNKER)
    big_id = chunk_id(files["z-big-0.bin"])
    assert (big_id, BIG) in served_manifest(repo).distinct_chunks()  # one chunk, whole file
    return repo, files, big_id


def cut_inside_big(client: Client, repo: Repository, tmp_path: Path, missing_bytes: int) -> None:
    """A sync cut ``missing_bytes`` before the end of the big object (the last frame)."""
    client.fetcher.cut_after = full_pack_length(repo, tmp_path) - 36 - missing_bytes
    with pytest.raises(TransportError):
        client.sync()
    client.fetcher.cut_after = None
    client.fetcher.reset()


def test_cut_inside_a_large_chunk_resumes_with_one_range_request(
    big: tuple[Repository, dict[str, bytes], str], tmp_path: Path
) -> None:
    repo, files, big_id = big
    size = stored_size(repo, big_id)
    client = Client(tmp_path / "client", repo)
    cut_inside_big(client, repo, tmp_path, 50_000)
    (partial,) = client.partials()
    assert (partial.chunk_id, partial.length, partial.have) == (big_id, size, size - 50_000)
    assert partial.data == repo.source.get_object(big_id)[: size - 50_000]

    result = client.sync()
    assert client.fetcher.range_calls == [(big_id, size - 50_000, None)]
    assert not client.fetcher.pack_calls  # everything else arrived before the cut
    assert (result.ranges, result.range_bytes, result.objects_fetched) == (1, 50_000, 1)
    assert result.bytes_fetched < size  # less than fetching that chunk again whole
    assert client.partials() == [] and not any((client.store.root / "partial").iterdir())
    assert_same_tree(files, client.checkout_to(tmp_path / "out"))


def test_a_source_that_ignores_range_still_completes_the_object(
    big: tuple[Repository, dict[str, bytes], str], tmp_path: Path
) -> None:
    repo, files, big_id = big
    client = Client(tmp_path / "client", repo, ranges=False)
    cut_inside_big(client, repo, tmp_path, 50_000)
    result = client.sync()
    assert result.range_bytes == stored_size(repo, big_id)  # the whole body (HTTP 200)
    assert result.ranges == 1 and client.partials() == []
    assert_same_tree(files, client.checkout_to(tmp_path / "out"))


def test_a_corrupt_partial_is_dropped_and_the_chunk_fetched_whole(
    big: tuple[Repository, dict[str, bytes], str], tmp_path: Path
) -> None:
    repo, files, big_id = big
    client = Client(tmp_path / "client", repo)
    cut_inside_big(client, repo, tmp_path, 50_000)
    path = client.store.root / "partial" / big_id
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0x01  # the disk is not trusted either
    path.write_bytes(bytes(raw))
    result = client.sync()
    assert result.complete and result.ranges == 0
    (call,) = client.fetcher.pack_calls
    assert [c for c, _ in call.plan] == [big_id]
    assert client.partials() == []
    assert_same_tree(files, client.checkout_to(tmp_path / "out"))


def test_small_partials_are_not_kept(
    big: tuple[Repository, dict[str, bytes], str], tmp_path: Path
) -> None:
    repo, _files, big_id = big
    client = Client(tmp_path / "client", repo)
    cut_inside_big(client, repo, tmp_path, stored_size(repo, big_id) - (MIN_PARTIAL - 1))
    assert client.partials() == []
    client.sync()
    assert not client.fetcher.range_calls
    assert [c for c, _ in client.fetcher.pack_calls[0].plan] == [big_id]


def test_partials_of_objects_the_new_version_lacks_are_dropped(
    big: tuple[Repository, dict[str, bytes], str], tmp_path: Path
) -> None:
    repo, files, _big_id = big
    client = Client(tmp_path / "client", repo)
    cut_inside_big(client, repo, tmp_path, 50_000)
    del files["z-big-0.bin"]
    publish(repo, write_tree(tmp_path / "v2", files), chunker=BIG_CHUNKER)
    result = client.sync()
    assert result.version == 2 and not client.fetcher.range_calls
    assert client.partials() == []


def test_a_partial_whose_dictionary_is_not_here_waits_for_the_pack(
    big: tuple[Repository, dict[str, bytes], str], tmp_path: Path
) -> None:
    repo, files, big_id = big
    client = Client(tmp_path / "client", repo)
    absent_dictionary = bytes(range(32))
    PartialStore(client.store.root / "partial").save(
        Partial(big_id, 200_000, b"\x02" + absent_dictionary + bytes(MIN_PARTIAL))
    )
    result = client.sync()
    assert result.complete and result.ranges == 0 and not client.fetcher.range_calls
    assert big_id in {c for c, _ in client.fetcher.pack_calls[0].plan}
    assert client.partials() == []  # the object is stored: its partial is gone
    assert_same_tree(files, client.checkout_to(tmp_path / "out"))


def test_a_cut_range_request_keeps_what_it_brought(
    big: tuple[Repository, dict[str, bytes], str], tmp_path: Path
) -> None:
    repo, files, big_id = big
    size = stored_size(repo, big_id)
    client = Client(tmp_path / "client", repo, piece_size=1000)
    cut_inside_big(client, repo, tmp_path, 50_000)

    def cut_range(cid: str, start: int, end: int | None = None) -> RangeResponse:
        response = RepoFetcher.fetch_range(client.fetcher, cid, start, end)

        def pieces() -> Iterator[bytes]:
            for i, piece in enumerate(response.pieces):
                if i == 20:
                    raise TransportError("connection reset")
                yield piece

        return RangeResponse(response.start, response.total, pieces())

    client.fetcher.fetch_range = cut_range  # type: ignore[method-assign]
    with pytest.raises(TransportError):
        client.sync()
    (partial,) = client.partials()
    assert partial.have == size - 50_000 + 20_000
    del client.fetcher.fetch_range
    client.fetcher.reset()
    result = client.sync()
    assert client.fetcher.range_calls == [(big_id, size - 30_000, None)]
    assert result.range_bytes == 30_000
    assert_same_tree(files, client.checkout_to(tmp_path / "out"))


# -- over HTTP (the app in process) --------------------------------------------------------------
@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Repository, TestClient]]:
    data = tmp_path / "srv"
    repo = Repository(data, store=FolderChunkStore(data / "objects", durable=False))
    with TestClient(create_app(repo), raise_server_exceptions=False) as web:
        yield repo, web


def test_head_of_a_ready_made_delta_gives_its_length_without_the_body(
    served: tuple[Repository, TestClient], tmp_path: Path
) -> None:
    repo, web = served
    files = sample_files(8)
    publish(repo, write_tree(tmp_path / "v1", files))
    old_id = _entry_id(repo)
    publish(repo, write_tree(tmp_path / "v2", edited(files)))
    new_id = _entry_id(repo)
    got = web.get(f"/v1/deltas/{old_id}/{new_id}")
    head = web.head(f"/v1/deltas/{old_id}/{new_id}")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(got.content) > 44
    assert head.headers["etag"] == got.headers["etag"]
    assert web.head(f"/v1/deltas/{new_id}/{old_id}").status_code == 404
    client = HttpClient("http://testserver", transport=web._transport)
    assert client.delta_size(old_id, new_id) == len(got.content)


def _entry_id(repo: Repository) -> str:
    from harness.repo import index_entry

    return index_entry(repo, "course", "en").manifest


@pytest.mark.parametrize("with_base", [False, True])
def test_pack_dry_run_answers_the_exact_pack_length(
    served: tuple[Repository, TestClient], tmp_path: Path, with_base: bool
) -> None:
    repo, web = served
    files = sample_files(9)
    publish(repo, write_tree(tmp_path / "v1", files))
    base_id = _entry_id(repo)
    publish(repo, write_tree(tmp_path / "v2", edited(files)))
    distinct = served_manifest(repo).distinct_chunks()
    want = encode_want(distinct, {cid for cid, _ in distinct[1:]})
    body: dict[str, object] = {
        "manifest": _entry_id(repo),
        "want": base64.b64encode(want).decode(),
    }
    if with_base:
        body["base"] = base_id
    real = web.post("/v1/pack", json=body)
    dry = web.post("/v1/pack", json={**body, "dry_run": True})
    assert real.status_code == dry.status_code == 200
    assert dry.headers["content-type"].startswith("application/json")
    assert dry.json() == {"objects": len(distinct) - 1, "bytes": len(real.content)}
    assert ("content-length" in real.headers) is not with_base  # deltas: length unknown
    client = HttpClient("http://testserver", transport=web._transport)
    assert client.pack_size(str(body["manifest"]), want, base_id if with_base else None) == len(
        real.content
    )
    refused = web.post("/v1/pack", json={**body, "dry_run": "yes"})
    assert refused.status_code == 422 and "dry_run" in refused.json()["error"]


def test_http_client_ranges_statuses_and_old_servers(
    served: tuple[Repository, TestClient], tmp_path: Path
) -> None:
    repo, web = served
    files = big_files(1)
    publish(repo, write_tree(tmp_path / "v1", files), chunker=BIG_CHUNKER)
    big_id = chunk_id(files["z-big-0.bin"])
    obj = repo.source.get_object(big_id)
    client = HttpClient("http://testserver", transport=web._transport)
    response = client.fetch_range(big_id, 1000)
    assert (response.start, response.total) == (1000, len(obj))
    assert b"".join(response.pieces) == obj[1000:]
    bounded = client.fetch_range(big_id, 10, 19)
    assert b"".join(bounded.pieces) == obj[10:20]
    with pytest.raises(NotFoundError, match="range"):
        client.fetch_range(big_id, len(obj))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/pack":  # an old server: ignores dry_run, sends a pack
            return httpx.Response(
                200,
                headers={"content-type": "application/vnd.satchel.pack"},
                content=MAGIC + trailer(0),
            )
        code = {"/v1/index/course/en": 503, "/v1/key": 429}.get(request.url.path, 405)
        return httpx.Response(code, json={"error": "no"})

    old = HttpClient("http://old", transport=httpx.MockTransport(handler))
    with pytest.raises(UsageError, match="dry-run"):
        old.pack_size("0" * 64, b"")
    with pytest.raises(StatusError) as busy:
        old.fetch_index("course", "en", None)
    assert is_transient(busy.value)
    with pytest.raises(StatusError) as refused:
        old.fetch_manifest("0" * 64)
    assert not is_transient(refused.value)
    with pytest.raises(NotFoundError):  # no HEAD there: the dry run asks for the pack's size
        old.delta_size("0" * 64, "1" * 64)


def test_sizes_parse_with_decimal_suffixes() -> None:
    assert [parse_size(t) for t in ("500k", "2m", "1.5k", "64", "1g", "300kb")] == [
        500_000,
        2_000_000,
        1500,
        64,
        10**9,
        300_000,
    ]
    for bad in ("", "k", "0", "-5k", "lots", "0.5"):
        with pytest.raises(UsageError):
            parse_size(bad)


# -- end to end: a real server, the CLI, a loopback proxy ---------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SatchelServer]:
    with SatchelServer(tmp_path_factory.mktemp("poor") / "srv") as srv:
        yield srv


def publish_ok(server: SatchelServer, tree: Path, bundle: str) -> int:
    res = cli_publish(server.url, server.token("teacher"), tree, bundle)
    assert res.code == 0, res.describe()
    return int(res.stdout)


def manifest_chunks(store: Path, bundle: str, path: str) -> list[list[object]]:
    ref = json.loads((store / "refs" / bundle / "en.json").read_text())
    manifest = json.loads((store / "manifests" / ref["manifest"]).read_bytes())
    (entry,) = [f for f in manifest["signed"]["files"] if f["path"] == path]
    return list(entry["chunks"])


@pytest.mark.parametrize("retries", [0, 1])
def test_cut_inside_a_large_chunk_resumes_with_range_over_the_wire(
    server: SatchelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retries: int
) -> None:
    monkeypatch.setenv("SATCHEL_RETRY_BASE_SECONDS", "0.01")
    bundle = f"big-{retries}"
    files = big_files(1)
    tree = write_tree(tmp_path / "tree", files)
    publish_ok(server, tree, bundle)
    big_id = hashlib.sha256(files["z-big-0.bin"]).hexdigest()
    measure, store = tmp_path / "measure", tmp_path / "store"
    with LoopbackProxy("127.0.0.1", server.port) as proxy:
        sync_json(proxy.url, bundle, measure)
        full_wire = proxy.stats().bytes_down
        assert manifest_chunks(measure, bundle, "z-big-0.bin") == [[big_id, BIG]]

        proxy.reset()
        cut_at = full_wire - 36 - 50_000  # 50 kB before the end of the big chunk
        proxy.cut_down_after(cut_at)
        first = sync(proxy.url, bundle, store, "--retries", retries)
        assert proxy.stats().cuts == 1
        chunk_get = f"GET /v1/chunks/{big_id} HTTP/1.1"
        if retries == 0:
            assert first.code == 4, first.describe()
            assert "again" in first.stderr
            assert len(list((store / "partial").iterdir())) == 1
            assert chunk_get not in proxy.stats().request_lines
            proxy.reset()
            again = sync_json(proxy.url, bundle, store)
            resume_bytes = proxy.stats().bytes_down
        else:  # the same command retried at once and resumed
            assert first.code == 0, first.describe()
            again = json.loads(first.stdout)
            resume_bytes = proxy.stats().bytes_down - cut_at
        lines = proxy.stats().request_lines
        assert again["retries"] == retries and again["complete"] is True
        assert chunk_get in lines, lines
        assert lines[-1] == chunk_get, lines  # nothing else was missing: no pack after it
        assert resume_bytes < BIG, resume_bytes  # less than fetching the chunk again whole
    assert not list((store / "partial").iterdir())
    assert_same_dir(tree, checkout_ok(store, bundle, tmp_path / "out"))


def test_budget_exits_5_keeps_progress_and_the_next_sync_finishes(
    server: SatchelServer, tmp_path: Path
) -> None:
    bundle = "budget"
    files = {**sample_files(11, scale=4), **big_files(2)}
    tree = write_tree(tmp_path / "tree", files)
    publish_ok(server, tree, bundle)
    store = tmp_path / "store"
    res = sync(server.url, bundle, store, "--max-bytes", "150k")
    assert res.code == 5, res.describe()
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and "first use" in lines[0], res.describe()  # pin notice + one line
    assert "budget" in lines[1] and "resumes" in lines[1], lines
    out = json.loads(res.stdout)
    assert out["complete"] is False and out["changed"] is False and out["version"] is None
    assert 100_000 <= out["pack_bytes"] <= 150_000 + 64 * 1024, out
    assert not (store / "refs").exists()  # nothing switched

    res = run_cli("sync", "--server", server.url, "--bundle", bundle, "--store", store)
    assert res.code == 0, res.describe()
    assert_same_dir(tree, checkout_ok(store, bundle, tmp_path / "out"))
    bad = run_cli(
        "sync", "--server", server.url, "--bundle", bundle, "--store", store, "--max-bytes", "0"
    )
    assert bad.code == 2 and bad.stderr.startswith("error: "), bad.describe()


def test_dry_run_over_the_wire_matches_the_real_sync(server: SatchelServer, tmp_path: Path) -> None:
    bundle = "dry"
    files = sample_files(12, scale=3)
    publish_ok(server, write_tree(tmp_path / "v1", files), bundle)
    store = tmp_path / "store"
    with LoopbackProxy("127.0.0.1", server.port) as proxy:
        # First sync: a dynamic pack (POST with dry_run).
        dry = sync_json(proxy.url, bundle, store, "--dry-run")
        assert dry["route"] == "dynamic" and dry["dry_run"] is True
        assert dry["index_manifest_bytes"] > 0 and dry["version"] is None
        assert not (store / "refs").exists()
        real = sync_json(proxy.url, bundle, store)
        assert real["pack_bytes"] == dry["bytes_to_download"], (dry, real)

        # An update from the held version: the ready-made pack (HEAD, Content-Length).
        v2 = edited(files)
        publish_ok(server, write_tree(tmp_path / "v2", v2), bundle)
        proxy.reset()
        res = run_cli(
            "sync", "--server", proxy.url, "--bundle", bundle, "--store", store, "--dry-run"
        )
        assert res.code == 0, res.describe()
        assert res.stdout.strip().isdigit() and res.stdout.count("\n") == 1, res.describe()
        assert "bytes in all" in res.stderr and "fetched already by this dry run" in res.stderr
        lines = proxy.stats().request_lines
        assert [line.split()[0] for line in lines] == ["GET", "GET", "HEAD"], lines
        real = sync_json(proxy.url, bundle, store)
        assert real["version"] == 2
        assert real["pack_bytes"] == int(res.stdout), (res.stdout, real)
    assert_same_dir(write_tree(tmp_path / "want", v2), checkout_ok(store, bundle, tmp_path / "o"))


def test_static_pack_helper_matches_the_http_head(
    served: tuple[Repository, TestClient], tmp_path: Path
) -> None:
    """The HEAD length is the ready-made pack's, byte for byte (a check on static_delta_size)."""
    repo, web = served
    files = sample_files(13)
    publish(repo, write_tree(tmp_path / "v1", files))
    old_id, old = _entry_id(repo), served_manifest(repo)
    publish(repo, write_tree(tmp_path / "v2", edited(files)))
    new_id, new = _entry_id(repo), served_manifest(repo)
    body, _count = static_pack(new, old, repo.store, repo.source.lookup_for(new, old))
    assert repo.source.static_delta_size(old_id, new_id) == len(body)
    assert int(web.head(f"/v1/deltas/{old_id}/{new_id}").headers["content-length"]) == len(body)
