"""store_lookup: a manifest's dictionary is read and decoded once for all the objects that use
it, checked against its id first, and only when the manifest lists it."""

from __future__ import annotations

import random

import pytest
from satchel.content.chunking import chunk_id
from satchel.content.errors import FormatError, IntegrityError
from satchel.content.objects import encode_object
from satchel.sync.store import MemoryChunkStore, store_lookup


class CountingStore(MemoryChunkStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    def get(self, cid: str) -> bytes:
        self.gets += 1
        return super().get(cid)


def fresh_dictionary(seed: int) -> bytes:
    return random.Random(seed).randbytes(4_000) * 3  # unique per test: no earlier cache entry


def test_a_dictionary_is_read_once_for_many_objects() -> None:
    data = fresh_dictionary(1)
    did = chunk_id(data)
    store = CountingStore()
    store.put(did, encode_object(data, level=3))
    for _ in range(50):
        assert store_lookup(store, {did: len(data)})(did) == data
    assert store.gets == 1


def test_a_stored_dictionary_that_is_not_its_id_is_refused() -> None:
    data = fresh_dictionary(2)
    did = chunk_id(data)
    store = MemoryChunkStore()
    store.put(did, encode_object(data[:-1] + b"!", level=3))  # same length, other bytes
    with pytest.raises(IntegrityError, match="does not match its id"):
        store_lookup(store, {did: len(data)})(did)


def test_only_dictionaries_the_manifest_lists_are_served() -> None:
    data = fresh_dictionary(3)
    did = chunk_id(data)
    store = MemoryChunkStore()
    store.put(did, encode_object(data, level=3))
    assert store_lookup(store, {did: len(data)})(did) == data  # now cached
    with pytest.raises(FormatError, match="manifest lacks"):
        store_lookup(store, {})(did)
