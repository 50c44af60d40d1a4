"""Sealed batches: round trips, the records key, and hostile input for every part of the frame."""

from __future__ import annotations

import contextlib
import hashlib
import struct
from datetime import timedelta
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from satchel.content.batch import (
    HEADER_SIZE,
    MAGIC,
    MAX_BATCH_RECORDS,
    MAX_PAYLOAD_BYTES,
    MAX_SEALED_BYTES,
    SealedReader,
    batch_id,
    open_batch,
    read_header,
    seal_batch,
)
from satchel.content.errors import FormatError, IntegrityError, SatchelError, TrustError
from satchel.content.index import IndexEntry, ReleaseIndex, parse_index
from satchel.content.joincode import generate_join_code
from satchel.content.recordskey import (
    RecordsPrivateKey,
    RecordsPublicKey,
    derive_records_key,
)
from satchel.content.signing import SigningKey, verify_envelope

from harness.records import (
    CODE,
    T0,
    body,
    learner,
    record,
    records,
    seal_body,
    seal_raw,
)
from harness.zstd_forge import forge_content_size

SERVER = SigningKey.generate()
RECORDS = derive_records_key(SERVER)
DEVICE = SigningKey.generate()
ANA, BOB = learner("Ana"), learner("Bob")
RECS = [*records(1, 4, ANA), *records(5, 8, BOB)]


def sealed_small() -> bytes:
    return seal_batch([ANA, BOB], RECS, DEVICE, RECORDS.public)


SEALED = sealed_small()


# -- the records key --------------------------------------------------------------------------
def test_the_records_key_is_derived_from_the_signing_key_alone() -> None:
    again = derive_records_key(SigningKey(SERVER._private))  # a replica loading the same key
    assert again.public == RECORDS.public
    assert derive_records_key(SigningKey.generate()).public != RECORDS.public
    assert RECORDS.public.keyid == hashlib.sha256(RECORDS.public.raw).hexdigest()
    assert RecordsPublicKey.from_json(RECORDS.public.to_json()) == RECORDS.public


@pytest.mark.parametrize(
    "doc",
    [
        None,
        {},
        {**RECORDS.public.to_json(), "scheme": "ed25519"},
        {**RECORDS.public.to_json(), "keyid": "0" * 64},
        {**RECORDS.public.to_json(), "public_key": "AAAA"},
        {**RECORDS.public.to_json(), "public_key": "not base64"},
        {**RECORDS.public.to_json(), "public_key": 3},
    ],
)
def test_malformed_records_keys_are_refused(doc: Any) -> None:
    with pytest.raises(FormatError):
        RecordsPublicKey.from_json(doc)


def _index(records_key: RecordsPublicKey | None) -> ReleaseIndex:
    line = (IndexEntry("course", "en", 1, "ab" * 32, 10, "Course"),)
    return ReleaseIndex(5, T0, T0 + timedelta(days=60), SERVER.public, line, records_key)


def test_the_signed_index_carries_the_records_key_and_older_indexes_omit_it() -> None:
    raw = SERVER.sign(_index(RECORDS.public).to_signed())
    env, index = parse_index(raw)
    verify_envelope(env, SERVER.public, what="index")
    assert index.records_key == RECORDS.public
    old = _index(None).to_signed()
    assert "records_key" not in old
    assert parse_index(SERVER.sign(old))[1].records_key is None
    with pytest.raises(FormatError):
        parse_index(SERVER.sign({**old, "records_key": {"scheme": "x25519"}}))


# -- round trips ------------------------------------------------------------------------------
def test_a_sealed_batch_opens_to_the_same_records_signed_by_its_device() -> None:
    batch = open_batch(SEALED, RECORDS)
    assert batch.records == tuple(RECS)
    assert batch.learners == tuple(sorted([ANA, BOB], key=lambda lr: lr.learner))
    assert batch.device == DEVICE.public.keyid == hashlib.sha256(DEVICE.public.raw).hexdigest()
    assert batch.batch_id == batch_id(SEALED) == hashlib.sha256(SEALED).hexdigest()


def test_nothing_but_the_recipient_and_the_size_is_in_clear() -> None:
    head = read_header(SEALED)
    assert SEALED[:8] == MAGIC and head.recipient == RECORDS.public.keyid
    assert head.total == len(SEALED)
    # Only strings long enough that random ciphertext cannot hold them by chance (a 2-byte id
    # would be in ~1 of 20 random batches of this size); short names are checked sealed away
    # in the end-to-end privacy test, which searches for them in plain records first.
    for secret in (ANA.learner.encode(), BOB.learner.encode(), CODE.encode(), b"intro-stats"):
        assert len(secret) >= 8 and secret not in SEALED
    assert DEVICE.public.raw not in SEALED
    assert seal_batch([ANA, BOB], RECS, DEVICE, RECORDS.public) != SEALED  # fresh each time


def test_the_writer_refuses_what_the_reader_would() -> None:
    with pytest.raises(FormatError):
        seal_batch([ANA], [], DEVICE, RECORDS.public)
    with pytest.raises(FormatError, match="ascending"):
        seal_batch([ANA], [record(2, ANA), record(1, ANA)], DEVICE, RECORDS.public)
    with pytest.raises(FormatError, match="does not list"):
        seal_batch([ANA], [record(1, BOB)], DEVICE, RECORDS.public)
    with pytest.raises(FormatError, match="none of its records"):
        seal_batch([ANA, BOB], [record(1, ANA)], DEVICE, RECORDS.public)
    many = [record(s, ANA, "opened") for s in range(1, MAX_BATCH_RECORDS + 2)]
    with pytest.raises(FormatError):
        seal_batch([ANA], many, DEVICE, RECORDS.public)


# -- hostile frames ---------------------------------------------------------------------------
def test_every_truncation_is_refused() -> None:
    for cut in range(len(SEALED)):
        with pytest.raises((FormatError, IntegrityError)):
            open_batch(SEALED[:cut], RECORDS)
    with pytest.raises(IntegrityError, match="cut short or padded"):
        open_batch(SEALED + b"\x00", RECORDS)


def test_a_flipped_byte_anywhere_is_refused() -> None:
    for at in range(len(SEALED)):
        for bit in (0, 7):
            bad = bytearray(SEALED)
            bad[at] ^= 1 << bit
            with pytest.raises((FormatError, IntegrityError, TrustError)):
                open_batch(bytes(bad), RECORDS)
    assert open_batch(SEALED, RECORDS).records == tuple(RECS)  # the original still opens


@pytest.mark.parametrize("enc", [bytes(32), b"\x01" + bytes(31), b"\xff" * 32])
def test_an_encapsulated_key_of_low_order_or_no_point_is_refused(enc: bytes) -> None:
    bad = SEALED[:HEADER_SIZE] + enc + SEALED[HEADER_SIZE + 32 :]
    with pytest.raises(IntegrityError, match="does not decrypt"):
        open_batch(bad, RECORDS)


def test_a_batch_for_another_server_is_refused_by_name() -> None:
    other = RecordsPrivateKey.generate()
    with pytest.raises(TrustError, match="sealed to records key"):
        open_batch(SEALED, other)
    # The header relabelled with this server's key id does not help: it does not decrypt.
    forged = seal_raw(
        DEVICE.sign(body(DEVICE, [ANA], records(1, 2, ANA))),
        other.public,
        header_keyid=RECORDS.public.keyid,
    )
    with pytest.raises(IntegrityError, match="does not decrypt"):
        open_batch(forged, RECORDS)


def test_a_batch_signed_by_another_key_than_the_device_it_names_is_refused() -> None:
    thief = SigningKey.generate()
    doc = body(DEVICE, [ANA], records(1, 2, ANA))  # names DEVICE's public key...
    with pytest.raises(TrustError, match="not signed by its device key"):
        open_batch(seal_body(doc, thief, RECORDS.public), RECORDS)  # ...signed by another
    env = DEVICE.sign(doc)
    tampered = env.replace(b'"answer":"2"', b'"answer":"3"')
    assert tampered != env
    with pytest.raises(TrustError, match="bad signature"):
        open_batch(seal_raw(tampered, RECORDS.public), RECORDS)


def test_oversized_batches_are_refused_from_their_header_alone() -> None:
    head = struct.pack(">8s32sI", MAGIC, bytes.fromhex(RECORDS.public.keyid), MAX_SEALED_BYTES)
    with pytest.raises(FormatError, match="over the"):
        read_header(head)  # 44 bytes are enough to say no
    with pytest.raises(FormatError, match="over the"):
        SealedReader().feed(head)


def test_unknown_versions_and_other_files_are_refused() -> None:
    with pytest.raises(FormatError, match="update satchel"):
        open_batch(b"SATSEAL\x02" + SEALED[8:], RECORDS)
    with pytest.raises(FormatError, match="not a sealed batch"):
        open_batch(b"SATPACK\x01" + SEALED[8:], RECORDS)
    with pytest.raises(FormatError, match="too few"):
        read_header(struct.pack(">8s32sI", MAGIC, bytes(32), 10))


def test_a_zstd_bomb_inside_is_refused_before_decompressing() -> None:
    frame = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(
        DEVICE.sign(body(DEVICE, [ANA], records(1, 2, ANA)))
    )
    bomb = forge_content_size(frame, 1 << 40)
    with pytest.raises(FormatError, match="over the"):
        open_batch(seal_raw(bomb, RECORDS.public, compress=False), RECORDS)
    huge = zstandard.ZstdCompressor(level=1, write_content_size=True).compress(
        b" " * (MAX_PAYLOAD_BYTES + 1)
    )
    with pytest.raises(FormatError, match="over the"):
        open_batch(seal_raw(huge, RECORDS.public, compress=False), RECORDS)
    sizeless = zstandard.ZstdCompressor(write_content_size=False).compress(b"{}")
    with pytest.raises(FormatError, match="declare its size"):
        open_batch(seal_raw(sizeless, RECORDS.public, compress=False), RECORDS)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: {**d, "_type": "index"},
        lambda d: {**d, "format": 2},
        lambda d: {**d, "extra": 1},
        lambda d: {k: v for k, v in d.items() if k != "learners"},
        lambda d: {**d, "records": []},
        lambda d: {**d, "records": {"a": 1}},
        lambda d: {**d, "records": d["records"][::-1]},
        lambda d: {**d, "records": d["records"] + d["records"][:1]},
        lambda d: {**d, "learners": d["learners"] * 2},
        lambda d: {**d, "learners": []},
        lambda d: {**d, "records": [{**d["records"][0], "lesson": "../../x"}]},
        lambda d: {**d, "learners": [{**d["learners"][0], "class": "0000-0000"}]},
    ],
)
def test_malformed_documents_inside_a_good_seal_are_refused(change: Any) -> None:
    doc = change(body(DEVICE, [ANA], records(1, 3, ANA)))
    with pytest.raises(FormatError):
        open_batch(seal_body(doc, DEVICE, RECORDS.public), RECORDS)


def test_a_record_whose_class_differs_from_its_learners_is_refused() -> None:
    doc = body(DEVICE, [ANA], records(1, 2, ANA))
    doc["records"][1]["class"] = _another_code()
    with pytest.raises(FormatError, match="class code other than"):
        open_batch(seal_body(doc, DEVICE, RECORDS.public), RECORDS)


def _another_code() -> str:
    code = CODE
    while code == CODE:
        code = generate_join_code()
    return code


# -- several batches in one stream ------------------------------------------------------------
def test_batches_sent_back_to_back_split_at_any_read_size() -> None:
    batches = [sealed_small() for _ in range(3)]
    stream = b"".join(batches)
    for step in (1, 7, 44, 45, 1000, len(stream)):
        reader = SealedReader()
        got: list[bytes] = []
        for at in range(0, len(stream), step):
            got += reader.feed(stream[at : at + step])
        reader.finish()
        assert got == batches
    reader = SealedReader()
    reader.feed(stream[:-1])
    with pytest.raises(FormatError, match="cut short after 2"):
        reader.finish()
    with pytest.raises(FormatError, match="more than"):
        SealedReader(max_batches=2).feed(stream)


# -- fuzz -------------------------------------------------------------------------------------
@settings(max_examples=150, derandomize=True, database=None)
@given(data=st.data())
def test_mutated_batches_open_or_raise_a_satchel_error(data: st.DataObject) -> None:
    raw = bytearray(SEALED)
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = data.draw(st.integers(0, len(raw) - 1)) if raw else 0
        if op == "flip" and raw:
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and raw:
            del raw[at : at + data.draw(st.integers(1, 8))]
        else:
            del raw[at:]
    with contextlib.suppress(SatchelError):
        assert open_batch(bytes(raw), RECORDS).records == tuple(RECS)
