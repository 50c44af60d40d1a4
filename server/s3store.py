"""A :class:`~satchel.sync.store.ChunkStore` in an S3-compatible object store (boto3).

Objects live under ``PREFIX/ab/abcdef...`` (the same fan-out as the folder store), so a bucket
listing per prefix stays short and a folder store can be copied into a bucket as it is. The
endpoint and credentials come from the usual AWS environment variables (``AWS_ENDPOINT_URL`` or
``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``), which boto3 reads by itself.

Write-once: a put first asks whether the id exists (cheap, and saves re-uploading a chunk that
another replica stored), then writes with ``If-None-Match: *`` so that two replicas racing on
one id cannot replace an object; the loser learns it was already there. Every failure of the
object store is a :class:`StoreError` naming the bucket and what was attempted; a missing
object is a :class:`NotFoundError`. boto3 stays in ``server/``: clients never need it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from satchel.content.errors import FormatError, NotFoundError, StoreError, UsageError
from satchel.content.manifest import check_chunk_id

# A few quick retries for throttling and dropped connections; beyond that the caller sees a
# StoreError (a publish is resumable, a GET is retried by the client).
_CONFIG = Config(
    retries={"max_attempts": 4, "mode": "standard"},
    connect_timeout=5,
    read_timeout=60,
)
_MISSING = {"404", "NoSuchKey", "NotFound"}
_EXISTS = {"412", "PreconditionFailed", "ConditionalRequestConflict"}


def _code(exc: ClientError) -> str:
    error: dict[str, Any] = exc.response.get("Error", {})
    return str(error.get("Code", ""))


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, ``some/prefix/``); the prefix may be empty."""
    if not url.startswith("s3://"):
        raise UsageError(f"storage {url!r} is not an s3://bucket/prefix URL")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket or any(c in bucket for c in "?#\\ ") or ".." in prefix.split("/"):
        raise UsageError(f"storage {url!r}: expected s3://bucket or s3://bucket/prefix")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class S3ChunkStore:
    """Stored objects as S3 objects ``PREFIX/ab/<id>``; see the module docstring."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._client: Any = client or boto3.client("s3", config=_CONFIG)

    @classmethod
    def from_url(cls, url: str, *, client: Any = None) -> S3ChunkStore:
        """The store for ``s3://bucket/prefix``, after checking that the bucket answers."""
        bucket, prefix = parse_s3_url(url)
        store = cls(bucket, prefix, client=client)
        try:
            store._call("open the bucket", lambda: store._client.head_bucket(Bucket=bucket))
        except ClientError as exc:  # 404: the bucket itself is missing
            raise store._error(f"open bucket {bucket!r} (does it exist?)", exc) from None
        return store

    def __repr__(self) -> str:
        return f"S3ChunkStore('s3://{self.bucket}/{self.prefix}')"

    def _key(self, cid: str) -> str:
        check_chunk_id(cid)
        return f"{self.prefix}{cid[:2]}/{cid}"

    def _error(self, what: str, exc: Exception) -> StoreError:
        if isinstance(exc, ClientError):
            message = exc.response.get("Error", {}).get("Message", "")
            detail = f"{_code(exc) or 'error'} {message}".strip()
        else:  # no connection, timeouts, missing credentials
            detail = str(exc)
        return StoreError(f"object store s3://{self.bucket}/{self.prefix}: cannot {what}: {detail}")

    def _call(self, what: str, action: Any) -> Any:
        """``action()``, with a missing object left as ClientError and anything else a
        StoreError."""
        try:
            return action()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise
            raise self._error(what, exc) from None
        except BotoCoreError as exc:
            raise self._error(what, exc) from None

    def _head(self, cid: str) -> dict[str, Any] | None:
        key = self._key(cid)
        try:
            head: dict[str, Any] = self._call(
                f"look up {cid[:16]}...",
                lambda: self._client.head_object(Bucket=self.bucket, Key=key),
            )
        except ClientError:  # only "missing" gets through _call
            return None
        return head

    def has(self, cid: str) -> bool:
        return self._head(cid) is not None

    def get(self, cid: str) -> bytes:
        key = self._key(cid)
        try:
            resp = self._call(
                f"read {cid[:16]}...", lambda: self._client.get_object(Bucket=self.bucket, Key=key)
            )
            body: bytes = self._call(f"read {cid[:16]}...", resp["Body"].read)
        except ClientError:
            raise NotFoundError(f"chunk {cid[:16]}... is not in the store") from None
        return body

    def put(self, cid: str, obj: bytes) -> bool:
        key = self._key(cid)
        if self._head(cid) is not None:
            return False
        data = bytes(obj)  # the caller may reuse its buffer
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if _code(exc) in _EXISTS:  # another writer stored it between our HEAD and PUT
                return False
            raise self._error(f"write {cid[:16]}...", exc) from None
        except BotoCoreError as exc:
            raise self._error(f"write {cid[:16]}...", exc) from None
        return True

    def delete(self, cid: str) -> None:
        key = self._key(cid)
        self._call(
            f"delete {cid[:16]}...",
            lambda: self._client.delete_object(Bucket=self.bucket, Key=key),
        )

    def stored_size(self, cid: str) -> int:
        head = self._head(cid)
        if head is None:
            raise NotFoundError(f"chunk {cid[:16]}... is not in the store")
        return int(head["ContentLength"])

    def __iter__(self) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = self._call(
            "list objects",
            lambda: iter(paginator.paginate(Bucket=self.bucket, Prefix=self.prefix)),
        )
        while True:
            page = self._call("list objects", lambda: next(pages, None))
            if page is None:
                return
            for item in page.get("Contents", []):
                rest = str(item["Key"])[len(self.prefix) :]
                fan, _, name = rest.partition("/")
                try:
                    if fan == name[:2]:
                        yield check_chunk_id(name)
                except FormatError:  # strays (uploads by hand, other tools) are not objects
                    continue
