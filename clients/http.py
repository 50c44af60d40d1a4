"""HTTP transport for the updater and the publisher (httpx), with byte and request counters.

Every httpx error is mapped here, at the edge, to :class:`TransportError` (retry may help) or
to the server's own verdict (not found, not allowed, bad data), so nothing above this module
inspects HTTP.

Every response is streamed and every body read is bounded before it happens: an error's
message is read to 4 KiB at most, the release index and manifests to their documented limits
(refused unread when ``Content-Length`` already says more), other JSON answers to 16 MiB, and
packs are streamed to the updater a piece at a time. A hostile server's endless or 3 GiB body
costs a few KiB of memory, never gigabytes.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from satchel.content.errors import (
    AuthError,
    ContentError,
    FormatError,
    NotFoundError,
    SatchelError,
    TransportError,
    UnreachableError,
    UsageError,
)
from satchel.content.index import MAX_INDEX_BYTES
from satchel.content.manifest import MAX_MANIFEST_BYTES
from satchel.content.objects import OBJECT_MEDIA_TYPE, document_level, encode_object
from satchel.sync.fetcher import IndexResponse, PackResponse, RangeResponse

if TYPE_CHECKING:  # what publishing and the records route need is loaded when they run
    from satchel.sync.publish import BeginResponse
    from satchel.sync.records_exchange import RecordsReply

USER_AGENT = "satchel/0.1"
ERROR_BODY_LIMIT = 4 * 1024  # enough for an error's one-line message
JSON_LIMIT = 16 * 1024 * 1024  # publish answers, history, tokens, translation reports
OBJECT_LIMIT = 64 * 1024 * 1024 + 1  # one stored object: its format byte and at most 64 MiB
MAX_REPORT_BYTES = 256 * 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@dataclass
class Counters:
    requests: int = 0
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0


def parse_rate(text: str) -> float:
    """'32k' -> 32000.0 bytes per second (k = 1000, m = 1000000)."""
    t = text.strip().lower().removesuffix("b").removesuffix("/s")
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(t[-1:], 1.0)
    try:
        value = float(t[:-1] if t[-1:] in "kmg" else t) * scale
    except ValueError:
        raise UsageError(f"rate {text!r} is not like 32k or 1.5m (bytes per second)") from None
    if value <= 0:
        raise UsageError("rate must be positive")
    return value


def parse_size(text: str) -> int:
    """'500k' -> 500000 bytes, '2m' -> 2000000 (k = 1000, m = 1000000, g = 10**9)."""
    t = text.strip().lower().removesuffix("b")
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if t[-1:] in "kmg" else t) * scale
    except ValueError:
        raise UsageError(f"size {text!r} is not like 500k or 2m (bytes)") from None
    if not value >= 1 or value == float("inf"):
        raise UsageError("a byte budget must be at least 1 byte")
    return int(value)


class StatusError(TransportError):
    """The server answered with an error status the client cannot act on (5xx, 429, ...)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        # Worth retrying: the server or a proxy is overloaded or restarting, or says so.
        self.transient = status >= 500 or status in (408, 425, 429)


class Throttle:
    """Paces reads to an average rate so a sync leaves room on a shared school link.

    A token bucket holding at most one second of the rate: time spent before the transfer
    (start-up, the index, a slow manifest) is no licence for a burst of the whole course."""

    BURST_SECONDS = 1.0

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.last = clock()
        self.allowance = (rate or 0.0) * self.BURST_SECONDS

    def wait(self, n: int) -> None:
        if self.rate is None:
            return
        now = self.clock()
        cap = self.rate * self.BURST_SECONDS
        self.allowance = min(cap, self.allowance + (now - self.last) * self.rate) - n
        self.last = now
        if self.allowance < 0:
            self.sleep(-self.allowance / self.rate)
            self.last = self.clock()
            self.allowance = 0.0


class HttpClient:
    """One keep-alive connection to a Satchel server or peer."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        rate_limit: float | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"server {base_url!r} must start with http:// or https://")
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=15.0),
            transport=transport,
        )
        # httpx's "Accept: */*" and "Connection: keep-alive" say what HTTP/1.1 already means:
        # 37 bytes on every request of a sync over a metered link.
        for default in ("Accept", "Connection"):
            self.http.headers.pop(default, None)
        self.counters = Counters()
        self.throttle = Throttle(rate_limit)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------
    def _send(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; the response is streamed (its body not read). Error statuses
        raise, with the message from at most the first 4 KiB of the body."""
        self.counters.requests += 1
        try:
            response = self.http.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing answered (refused, unknown host, no route): a wrong URL or a server that
            # is not running, more likely than a cut link; "run again to resume" would mislead.
            base = str(self.http.base_url).rstrip("/")
            raise UnreachableError(
                f"cannot reach {base} ({_describe(exc)}): is a Satchel server running at {base}?"
            ) from None
        except httpx.HTTPError as exc:
            raise TransportError(f"{request.method} {request.url.path}: {_describe(exc)}") from None
        if response.status_code >= 400:
            try:
                head = self._read_head(response, ERROR_BODY_LIMIT)
            except httpx.HTTPError:
                head = b""
            raise _status_error(response.status_code, _message(head, response), request)
        return response

    def _read_head(self, response: httpx.Response, limit: int) -> bytes:
        """At most ``limit`` bytes of the body, then the connection is closed unread."""
        head = bytearray()
        try:
            for piece in _raw_pieces(response):
                self.counters.bytes_downloaded += len(piece)
                head += piece[: limit - len(head)]
                if len(head) >= limit:
                    break
        finally:
            response.close()
        return bytes(head)

    def _read_limited(self, response: httpx.Response, limit: int, what: str) -> bytes:
        """The whole body if it is at most ``limit`` bytes; refused unread when its declared
        length is over, and cut off the moment it passes the limit otherwise."""
        where = f"{response.request.method} {response.request.url.path}"
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            response.close()
            raise ContentError(
                f"{where}: the {what} is {int(declared):,} bytes, over its {limit:,}-byte limit;"
                " refused unread (a misbehaving server or proxy)"
            )
        body = bytearray()
        try:
            for piece in _raw_pieces(response):
                body += piece
                self.counters.bytes_downloaded += len(piece)
                self.throttle.wait(len(piece))
                if len(body) > limit:
                    raise ContentError(
                        f"{where}: the {what} is over its {limit:,}-byte limit; stopped reading"
                        " (a misbehaving server or proxy)"
                    )
        except httpx.HTTPError as exc:
            raise TransportError(f"download cut: {_describe(exc)}") from None
        finally:
            response.close()
        return bytes(body)

    def _get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self._send(self.http.build_request("GET", path, headers=headers))

    # -- Fetcher --------------------------------------------------------------------------
    def fetch_index(self, bundle: str, locale: str, etag: str | None) -> IndexResponse:
        headers = {"If-None-Match": etag} if etag else None
        response = self._get(f"/v1/index/{bundle}/{locale}", headers)
        if response.status_code == 304:
            response.close()
            return IndexResponse(None, etag)
        return IndexResponse(
            self._read_limited(response, MAX_INDEX_BYTES, "release index"),
            response.headers.get("etag"),
        )

    def fetch_manifest(self, manifest_id: str, base: str | None = None) -> bytes:
        # long=1: this client decodes manifest deltas whose window spans both manifests (a
        # 100,000-file course's one-file update: 1.9 KB instead of 2.4 MB).
        query = f"?from={base}&long=1" if base else ""
        response = self._get(f"/v1/manifests/{manifest_id}{query}")
        return self._read_limited(response, MAX_MANIFEST_BYTES + 1, "manifest")

    def fetch_object(self, cid: str) -> bytes:
        response = self._get(f"/v1/chunks/{cid}")
        return self._read_limited(response, OBJECT_LIMIT, "object")

    def fetch_pack(self, manifest_id: str, want: bytes, base: str | None = None) -> PackResponse:
        body = {"manifest": manifest_id, "want": base64.b64encode(want).decode("ascii")}
        if base:
            body["base"] = base
        request = self.http.build_request("POST", "/v1/pack", json=body)
        self.counters.bytes_uploaded += len(request.content)
        return self._pack_response(self._send(request))

    def fetch_delta(self, base: str, manifest_id: str) -> PackResponse:
        request = self.http.build_request("GET", f"/v1/deltas/{base}/{manifest_id}")
        return self._pack_response(self._send(request))

    def fetch_range(self, cid: str, start: int, end: int | None = None) -> RangeResponse:
        spec = f"bytes={start}-{'' if end is None else end}"
        response = self._get(f"/v1/chunks/{cid}", {"Range": spec})
        total: int | None = None
        first = 0
        if response.status_code == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
            if match is None:
                response.close()
                raise TransportError(f"GET /v1/chunks/{cid[:16]}...: 206 without a Content-Range")
            first, total = int(match.group(1)), int(match.group(3))
        else:
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
        return RangeResponse(first, total, self._stream(response))

    def delta_size(self, base: str, manifest_id: str) -> int:
        request = self.http.build_request("HEAD", f"/v1/deltas/{base}/{manifest_id}")
        try:
            response = self._send(request)
        except StatusError as exc:
            if exc.status in (405, 501):  # a source without HEAD: ask for the pack's size
                raise NotFoundError("source does not tell ready-made pack sizes") from None
            raise
        response.close()
        length = response.headers.get("content-length")
        if not length or not length.isdigit():
            raise NotFoundError("source sent no Content-Length for the ready-made pack")
        return int(length)

    def pack_size(self, manifest_id: str, want: bytes, base: str | None = None) -> int:
        body: dict[str, object] = {
            "manifest": manifest_id,
            "want": base64.b64encode(want).decode("ascii"),
            "dry_run": True,
        }
        if base:
            body["base"] = base
        request = self.http.build_request("POST", "/v1/pack", json=body)
        self.counters.bytes_uploaded += len(request.content)
        response = self._send(request)
        if not response.headers.get("content-type", "").startswith("application/json"):
            # A server that does not know dry runs would send the whole pack: do not read it.
            response.close()
            raise UsageError("this server cannot tell pack sizes in advance (no dry-run support)")
        size = self._json(response).get("bytes")
        if type(size) is not int or size < 0:
            raise ContentError("server sent a malformed dry-run answer")
        return size

    def _pack_response(self, response: httpx.Response) -> PackResponse:
        length = response.headers.get("content-length")
        return PackResponse(
            int(length) if length and length.isdigit() else None, self._stream(response)
        )

    def _stream(self, response: httpx.Response) -> Iterator[bytes]:
        try:
            for piece in _raw_pieces(response):
                self.counters.bytes_downloaded += len(piece)
                self.throttle.wait(len(piece))
                yield piece
        except httpx.HTTPError as exc:
            raise TransportError(f"pack download cut: {_describe(exc)}") from None
        finally:
            response.close()

    # -- RecordsTransport (sync/records_sync.py) -------------------------------------------
    def send_records(self, batches: Sequence[bytes], device: str | None) -> RecordsReply:
        """POST /v1/records: the sealed batches back to back; the reply, read bounded."""
        from satchel.content.batch import SEALED_MEDIA_TYPE
        from satchel.sync.records_exchange import MAX_REPLY_BYTES, RECORDS_PATH, parse_reply

        body = b"".join(batches)
        self.counters.bytes_uploaded += len(body)
        request = self.http.build_request(
            "POST",
            RECORDS_PATH,
            params={"device": device} if device else None,
            content=body,
            headers={"Content-Type": SEALED_MEDIA_TYPE},
        )
        response = self._send(request)
        return parse_reply(self._read_limited(response, MAX_REPLY_BYTES, "records reply"))

    def class_line(self, code: str) -> tuple[str, str]:
        """The bundle and locale of the class a join code names (NotFoundError if none)."""
        data = self._json(self._get(f"/v1/join/{quote(code, safe='')}"))
        bundle, locale = data.get("bundle"), data.get("locale")
        if not isinstance(bundle, str) or not isinstance(locale, str):
            raise ContentError("server sent a malformed class lookup")
        return bundle, locale

    def report(self, bundle: str, locale: str, fmt: str) -> bytes:
        """A line's report as the server renders it (json, csv or xapi), read bounded."""
        response = self._get(f"/v1/report/{bundle}/{locale}?format={quote(fmt)}")
        return self._read_limited(response, MAX_REPORT_BYTES, "report")

    # -- PublishTarget ---------------------------------------------------------------------
    def begin(
        self,
        bundle: str,
        locale: str,
        draft: bytes,
        from_locale: str | None = None,
        base_version: int | None = None,
    ) -> BeginResponse:
        from satchel.sync.publish import BeginResponse

        # The draft is mostly hex chunk ids and paths: as a zstd object it is a third the size,
        # which is what a teacher's 64 kbit/s uplink notices.
        body = encode_object(draft, level=document_level(len(draft)))
        self.counters.bytes_uploaded += len(body)
        request = self.http.build_request(
            "POST",
            f"/v1/publish/{bundle}/{locale}",
            params={
                k: v
                for k, v in (("from_locale", from_locale), ("base_version", base_version))
                if v is not None
            },
            content=body,
            headers={"Content-Type": OBJECT_MEDIA_TYPE},
        )
        data = self._json(self._send(request))
        try:
            want = base64.b64decode(data["want"], validate=True)
            dictionary = data.get("dictionary")
            return BeginResponse(
                upload_id=str(data["upload"]),
                want=want,
                dictionary=(str(dictionary[0]), int(dictionary[1])) if dictionary else None,
            )
        except (KeyError, TypeError, ValueError, IndexError):
            raise ContentError("server sent a malformed publish answer") from None

    def upload(self, upload_id: str, pack: Iterator[bytes], length: int | None) -> None:
        def counted() -> Iterator[bytes]:
            for piece in pack:
                self.counters.bytes_uploaded += len(piece)
                yield piece

        request = self.http.build_request(
            "POST",
            f"/v1/uploads/{upload_id}/pack",
            content=counted(),
            headers={"Content-Type": "application/vnd.satchel.pack"},
        )
        self._json(self._send(request))

    def commit(self, upload_id: str, notes: str) -> int:
        request = self.http.build_request(
            "POST", f"/v1/uploads/{upload_id}/commit", json={"notes": notes}
        )
        data = self._json(self._send(request))
        version = data.get("version")
        if type(version) is not int:
            raise ContentError("server sent a malformed commit answer")
        return version

    def withdraw(self, bundle: str, locale: str, version: int, notes: str) -> int:
        """Take a version back; returns the version the line's index serves now."""
        path = f"/v1/lines/{bundle}/{locale}/versions/{version}/withdraw"
        data = self._json(self._send(self.http.build_request("POST", path, json={"notes": notes})))
        serving = data.get("serving")
        if type(serving) is not int:
            raise ContentError("server sent a malformed answer to a withdrawal")
        return serving

    def remove(self, bundle: str, locale: str, notes: str) -> None:
        """Take a whole line away (an admin token)."""
        path = f"/v1/lines/{bundle}/{locale}/remove"
        self._json(self._send(self.http.build_request("POST", path, json={"notes": notes})))

    # -- curators and admins -------------------------------------------------------------
    def translations(self, bundle: str, locale: str) -> dict[str, Any]:
        """The server's translation report for a locale variant (see docs/protocol.md)."""
        data = self._json(self._get(f"/v1/translations/{bundle}/{locale}"))
        files = data.get("files")
        if not isinstance(files, list) or not all(
            isinstance(f, dict)
            and isinstance(f.get("path"), str)
            and isinstance(f.get("state"), str)
            for f in files
        ):
            raise ContentError("server sent a malformed translation report")
        return data

    def history(self, bundle: str, locale: str) -> list[dict[str, Any]]:
        versions = self._json(self._get(f"/v1/history/{bundle}/{locale}")).get("versions")
        if not isinstance(versions, list) or not all(isinstance(v, dict) for v in versions):
            raise ContentError("server sent a malformed history")
        return versions

    def create_token(
        self, role: str, *, bundle: str | None = None, locale: str | None = None, label: str = ""
    ) -> dict[str, Any]:
        body = {"role": role, "bundle": bundle, "locale": locale, "label": label}
        return self._json(self._send(self.http.build_request("POST", "/v1/tokens", json=body)))

    def list_tokens(self) -> list[dict[str, Any]]:
        tokens = self._json(self._get("/v1/tokens")).get("tokens")
        if not isinstance(tokens, list):
            raise ContentError("server sent a malformed token list")
        return tokens

    def revoke_token(self, token_id: int) -> dict[str, Any]:
        return self._json(self._send(self.http.build_request("DELETE", f"/v1/tokens/{token_id}")))

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        raw = self._read_limited(response, JSON_LIMIT, "answer")
        try:
            data = json.loads(raw)
        except ValueError:
            raise ContentError("server sent something that is not JSON") from None
        if not isinstance(data, dict):
            raise ContentError("server sent an unexpected answer")
        return data


def _status_error(status: int, message: str, request: httpx.Request) -> SatchelError:
    where = f"{request.method} {request.url.path}"
    if status == 404:
        return NotFoundError(f"{message} ({where})")
    if status in (401, 403):
        return AuthError(f"{message} (HTTP {status})")
    if status == 422:
        return FormatError(f"server refused the data: {message}")
    if status in (400, 413):
        return UsageError(f"server refused the request: {message} (HTTP {status})")
    if status == 416:
        return NotFoundError(f"range not satisfiable: {message} ({where})")
    return StatusError(f"{where}: HTTP {status} {message}", status)


def _raw_pieces(response: httpx.Response) -> Iterator[bytes]:
    """The body as it arrives, undecoded (a response a test transport built in memory is
    already read: its bytes are all there is)."""
    if response.is_stream_consumed:
        yield response.content
    else:
        yield from response.iter_raw()


def _message(head: bytes, response: httpx.Response) -> str:
    """One printable line from the start of an error body (its JSON "error" if it has one)."""
    text = head.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and doc.get("error"):
            text = str(doc["error"])
    except ValueError:
        pass
    line = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return line[:300] or response.reason_phrase or "(no message)"


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
