"""Hypothesis properties for every parser of outside bytes: parse, or raise a SatchelError.

Each parser gets arbitrary bytes and, more usefully, mutations of a real document (bits
flipped, bytes inserted, deleted, duplicated, the tail cut): the answer must be a value or a
:class:`~satchel.content.errors.SatchelError` subclass, never another exception (a crash, a
KeyError, a zstd or struct error leaking out), and never slow: Hypothesis' deadline fails a
parse that takes over a second on one small input, which is how a hang shows here.

Real documents come from one publish of a small course through a real Repository: a signed
manifest, the signed release index, a pack, stored objects (raw, zstd, zstd with a
dictionary), both kinds of delta object, and a USB stick exported from a synced store.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from satchel.content import canonical
from satchel.content.chunking import ChunkerParams, chunk_id
from satchel.content.delta import (
    RangeRef,
    decode_delta,
    encode_object_delta,
    encode_range_delta,
    object_ref,
    range_ref,
)
from satchel.content.errors import SatchelError
from satchel.content.index import parse_index
from satchel.content.manifest import ManifestDraft, parse_manifest
from satchel.content.objects import (
    declared_length,
    decode_object,
    encode_object,
    identify_object,
    object_dictionary,
    train_dictionary,
    verify_object,
)
from satchel.content.signing import open_envelope
from satchel.sync.local import LocalStore
from satchel.sync.pack import PackReader
from satchel.sync.plan import decode_want
from satchel.sync.serving import parse_pack_request
from satchel.sync.updater import Updater
from satchel.sync.usb import export_stick, index_pack_file, list_stick, read_have

from harness.repo import (
    RepoFetcher,
    index_entry,
    make_repository,
    publish,
    sample_files,
    write_tree,
)

FUZZ = settings(
    max_examples=100,
    deadline=timedelta(seconds=1),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same inputs on every run and in CI: a failure reproduces
    database=None,
)


@dataclass(frozen=True)
class Samples:
    manifest: bytes
    draft: bytes
    index: bytes
    pack: bytes
    objects: tuple[tuple[str, int, bytes], ...]  # (id, length, stored object)
    dictionary: tuple[str, bytes]
    deltas: tuple[tuple[bytes, bytes, int], ...]  # (delta object, reference, length)
    stick: Path


def _build(root: Path) -> Samples:
    repo = make_repository(root / "srv")
    files = sample_files(9)
    publish(repo, write_tree(root / "src", files))
    entry = index_entry(repo, "course", "en")
    manifest = decode_object(repo.source.manifest_object(entry.manifest), entry.size)
    parsed = parse_manifest(manifest)[1]
    distinct = parsed.distinct_chunks()
    body = b"".join(
        repo.source.pack(parse_pack_request({"chunks": [cid for cid, _ in distinct[:6]]})).pieces
    )
    objects = tuple((cid, n, repo.store.get(cid)) for cid, n in distinct[:8])
    samples = [
        f"lesson {i}: the mean of {i} numbers is a number. ".encode() * 20 for i in range(60)
    ]
    zdict = train_dictionary(samples, size=4096)
    assert zdict is not None
    dict_id = chunk_id(zdict)
    with_dict = encode_object(samples[3], level=3, dictionary=(dict_id, zdict))
    objects += ((chunk_id(samples[3]), len(samples[3]), with_dict),)
    old, new = files["chapters/01-intro.html"], files["chapters/01-intro.html"][::-1]
    deltas = (
        (encode_range_delta(new[:4000], RangeRef(0, 0, 4000), old[:4000], 3), old[:4000], 4000),
        (encode_object_delta(new[:3000], chunk_id(old), old, 3), old, 3000),
    )
    store = LocalStore(root / "store", durable=False)
    Updater(store, RepoFetcher(repo)).sync("course", "en")
    stick = root / "stick"
    export_stick(store, "course", "en", stick, durable=False, max_pack_bytes=20_000)
    draft = canonical.encode(
        ManifestDraft(parsed.title, parsed.chunker, parsed.files).to_json()  # type: ignore[arg-type]
    )
    index = repo.source.index("course", "en")[0]
    return Samples(manifest, draft, index, body, objects, (dict_id, zdict), deltas, stick)


@pytest.fixture(scope="module")
def samples() -> Iterator[Samples]:
    root = Path(tempfile.mkdtemp(prefix="satchel-fuzz-"))
    try:
        yield _build(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- mutations --------------------------------------------------------------------------------
@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few random edits, or (sometimes) arbitrary bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=2048))
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, ord('"'), ord("{")]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete" and data:
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[at:]
        elif op == "dup" and data:
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


def only_satchel_errors(parse: Callable[[], object]) -> None:
    with contextlib.suppress(SatchelError):
        parse()


# -- documents ----------------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_manifest_parser(samples: Samples, data: st.DataObject) -> None:
    raw = data.draw(mutated(samples.manifest))
    only_satchel_errors(lambda: parse_manifest(raw))


@FUZZ
@given(data=st.data())
def test_release_index_parser(samples: Samples, data: st.DataObject) -> None:
    raw = data.draw(mutated(samples.index))
    only_satchel_errors(lambda: parse_index(raw))


@FUZZ
@given(data=st.data())
def test_signed_envelope_parser(samples: Samples, data: st.DataObject) -> None:
    raw = data.draw(mutated(samples.index))
    only_satchel_errors(lambda: open_envelope(raw, what="index", max_bytes=1 << 20))


@FUZZ
@given(data=st.data())
def test_manifest_draft_parser(samples: Samples, data: st.DataObject) -> None:
    raw = data.draw(mutated(samples.draft))
    only_satchel_errors(
        lambda: ManifestDraft.from_json(canonical.decode(raw, what="draft", max_bytes=1 << 20))
    )


@FUZZ
@given(raw=st.binary(max_size=512) | st.text(max_size=200).map(str.encode))
def test_canonical_json_parser(raw: bytes) -> None:
    only_satchel_errors(lambda: canonical.decode(raw, what="document", max_bytes=4096))


@FUZZ
@given(data=st.data())
def test_canonical_json_parser_on_mutated_documents(samples: Samples, data: st.DataObject) -> None:
    raw = data.draw(mutated(samples.draft))
    only_satchel_errors(lambda: canonical.decode(raw, what="document", max_bytes=1 << 20))


@FUZZ
@given(
    raw=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=20,
    )
)
def test_chunker_params_from_any_json(raw: object) -> None:  # fmt: skip
    only_satchel_errors(lambda: ChunkerParams.from_json(raw))


# -- packs -------------------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_pack_reader(samples: Samples, data: st.DataObject) -> None:
    raw = data.draw(mutated(samples.pack))
    split = data.draw(st.lists(st.integers(0, len(raw)), max_size=5))

    def parse() -> None:
        reader = PackReader()
        bounds = [0, *sorted(split), len(raw)]
        for a, b in itertools.pairwise(bounds):
            reader.feed(raw[a:b])
        reader.close()

    only_satchel_errors(parse)


@FUZZ
@given(bitmap=st.binary(max_size=8), n=st.integers(0, 40))
def test_want_bitmap(bitmap: bytes, n: int) -> None:
    distinct = [(hashlib.sha256(bytes([i])).hexdigest(), i) for i in range(n)]
    only_satchel_errors(lambda: decode_want(distinct, bitmap))


# -- stored objects and deltas ---------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_stored_object_decoders(samples: Samples, data: st.DataObject) -> None:
    cid, length, obj = data.draw(st.sampled_from(samples.objects))
    raw = data.draw(mutated(obj))
    dict_id, zdict = samples.dictionary

    def lookup(wanted: str) -> bytes:
        if wanted != dict_id:
            from satchel.content.errors import NotFoundError

            raise NotFoundError("no such dictionary")
        return zdict

    only_satchel_errors(lambda: declared_length(raw))
    only_satchel_errors(lambda: object_dictionary(raw))
    only_satchel_errors(lambda: verify_object(raw, cid, length, lookup))
    only_satchel_errors(lambda: identify_object(raw, 1 << 20, lookup))
    if raw != obj:
        try:
            out = verify_object(raw, cid, length, lookup)
        except SatchelError:
            return
        assert chunk_id(out) == cid  # a mutation that still verifies yields the same bytes


@FUZZ
@given(data=st.data())
def test_delta_decoders(samples: Samples, data: st.DataObject) -> None:
    obj, reference, length = data.draw(st.sampled_from(samples.deltas))
    raw = data.draw(mutated(obj))
    only_satchel_errors(lambda: range_ref(raw))
    only_satchel_errors(lambda: object_ref(raw))
    only_satchel_errors(lambda: decode_delta(raw, reference, length))


# -- USB sticks ------------------------------------------------------------------------------
@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_usb_stick_listing_and_pack_files(samples: Samples, data: st.DataObject) -> None:
    names = ["satchel-usb.json", "have.json", "index/course/en.json"]
    packs = sorted(p.name for p in (samples.stick / "packs").iterdir())
    target = data.draw(st.sampled_from([*names, f"packs/{packs[0]}"]))
    with tempfile.TemporaryDirectory() as tmp:
        stick = Path(tmp) / "stick"
        shutil.copytree(samples.stick, stick)
        path = stick / target
        path.write_bytes(data.draw(mutated(path.read_bytes())))
        only_satchel_errors(lambda: list_stick(stick))
        only_satchel_errors(lambda: read_have(stick))
        only_satchel_errors(lambda: index_pack_file(stick / "packs" / packs[0]))
