"""S3ChunkStore specifics, against moto's S3 server in its own process (see conftest.py)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest
from satchel.content.errors import FormatError, NotFoundError, StoreError, UsageError
from satchel.server.s3store import S3ChunkStore, parse_s3_url
from satchel.sync.store import FolderChunkStore

from harness.e2e import SatchelServer, free_port, run_cli
from harness.services import S3Server


def cid(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


OBJ = b"\x00object"


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


def keys(client: Any, bucket: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(item["Key"] for item in listed)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://b", ("b", "")),
        ("s3://b/", ("b", "")),
        ("s3://b/p", ("b", "p/")),
        ("s3://b/p/q/", ("b", "p/q/")),
        ("s3://b//p", ("b", "p/")),
    ],
)
def test_s3_urls(url: str, expected: tuple[str, str]) -> None:
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize(
    "url", ["s3://", "s3:///p", "file:///x", "http://b/p", "s3://b/../p", "s3://b?x/p", "s3://a b"]
)
def test_bad_s3_urls_are_usage_errors(url: str) -> None:
    with pytest.raises(UsageError):
        parse_s3_url(url)


def test_objects_use_the_folder_layout_under_the_prefix(s3_server: S3Server, bucket: str) -> None:
    client = s3_server.client()
    store = S3ChunkStore.from_url(f"s3://{bucket}/deep/prefix/", client=client)
    store.put(cid(1), OBJ)
    c = cid(1)
    assert keys(client, bucket) == [f"deep/prefix/{c[:2]}/{c}"]
    assert client.get_object(Bucket=bucket, Key=f"deep/prefix/{c[:2]}/{c}")["Body"].read() == OBJ


def test_prefixes_are_separate_stores(s3_server: S3Server, bucket: str) -> None:
    client = s3_server.client()
    a = S3ChunkStore.from_url(f"s3://{bucket}/a", client=client)
    b = S3ChunkStore.from_url(f"s3://{bucket}/ab", client=client)  # a prefix of the other's name
    a.put(cid(1), OBJ)
    assert not b.has(cid(1))
    assert list(b) == []
    assert list(a) == [cid(1)]


def test_listing_ignores_keys_that_are_not_objects(s3_server: S3Server, bucket: str) -> None:
    client = s3_server.client()
    store = S3ChunkStore.from_url(f"s3://{bucket}/o", client=client)
    store.put(cid(1), OBJ)
    c = cid(2)
    for key in (f"o/{c}", f"o/zz/{c}", f"o/{c[:2]}/README", "o/store.json", f"other/{c[:2]}/{c}"):
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    assert list(store) == [cid(1)]


def test_racing_writers_of_one_id_store_it_once(s3_server: S3Server, bucket: str) -> None:
    """Two replicas uploading the same chunk: exactly one write wins, nothing is replaced."""
    stores = [S3ChunkStore(bucket, "r/", client=s3_server.client()) for _ in range(2)]
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def put(i: int) -> None:
        barrier.wait()
        results.append(stores[i % 2].put(cid(7), OBJ + bytes([i])))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    assert stores[0].get(cid(7)) in {OBJ + bytes([i]) for i in range(8)}
    assert stores[0].get(cid(7)) == stores[1].get(cid(7))


def test_a_missing_bucket_is_a_store_error(s3_server: S3Server) -> None:
    with pytest.raises(StoreError, match="no-such-bucket"):
        S3ChunkStore.from_url("s3://no-such-bucket/p", client=s3_server.client())


def test_an_unreachable_endpoint_is_a_store_error_not_a_hang(s3_server: S3Server) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    store = S3ChunkStore("b", "p/", client=client)
    for action in (
        lambda: store.put(cid(1), OBJ),
        lambda: store.get(cid(1)),
        lambda: store.has(cid(1)),
        lambda: list(store),
        lambda: store.delete(cid(1)),
    ):
        with pytest.raises(StoreError, match="object store s3://b/p/"):
            action()


@pytest.mark.parametrize("bad", ["", "../" + "a" * 61, "A" * 64, "a" * 63])
def test_bad_ids_never_reach_the_bucket(s3_server: S3Server, bucket: str, bad: str) -> None:
    client = s3_server.client()
    store = S3ChunkStore(bucket, "p/", client=client)
    with pytest.raises(FormatError):
        store.put(bad, OBJ)
    with pytest.raises(FormatError):
        store.get(bad)
    assert keys(client, bucket) == []


def test_a_folder_store_copied_into_a_bucket_is_the_same_store(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    """Same layout: `aws s3 sync objects/ s3://bucket/prefix/` moves a server to S3."""
    folder = FolderChunkStore(tmp_path / "objects", durable=False)
    for n in range(5):
        folder.put(cid(n), OBJ + bytes([n]))
    client = s3_server.client()
    for path in (tmp_path / "objects").rglob("*"):
        if path.is_file():
            key = "moved/" + path.relative_to(tmp_path / "objects").as_posix()
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    store = S3ChunkStore.from_url(f"s3://{bucket}/moved", client=client)
    assert sorted(store) == sorted(folder)
    assert all(store.get(c) == folder.get(c) for c in folder)
    with pytest.raises(NotFoundError):
        store.get(cid(99))


# -- the command line ------------------------------------------------------------------------
def test_serve_on_s3_storage_publishes_and_syncs(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    from harness.e2e import publish, sync_json
    from harness.repo import sample_files, write_tree

    src = write_tree(tmp_path / "src", sample_files(1))
    with SatchelServer(
        tmp_path / "srv", extra=("--storage", f"s3://{bucket}/satchel"), env=s3_server.env()
    ) as srv:
        res = publish(srv.url, srv.token("admin"), src, "course")
        assert res.code == 0, res.describe()
        assert sync_json(srv.url, "course", tmp_path / "store")["version"] == 1
    # The objects went to the bucket, not to the data folder.
    assert not (tmp_path / "srv" / "objects").exists()
    assert any(k.startswith("satchel/") for k in keys(s3_server.client(), bucket))


def test_serve_refuses_unknown_storage_and_missing_buckets(
    s3_server: S3Server, tmp_path: Path
) -> None:
    res = run_cli("serve", "--data", tmp_path / "a", "--storage", "ftp://host/x")
    assert res.code == 2, res.describe()
    assert len(res.error_lines()) == 1
    res = run_cli(
        "serve", "--data", tmp_path / "b", "--storage", "s3://missing-bucket/x", env=s3_server.env()
    )
    assert res.code == 7, res.describe()  # storage that cannot be used: StoreError
    assert "missing-bucket" in res.error_lines()[-1]
    assert len(res.error_lines()) == 1
