"""What an operator sees: Prometheus metrics, one access log line per request, readiness.

One pure ASGI middleware (:class:`Observability`) wraps the app. It reads the route *template*
that FastAPI matched (``/v1/chunks/{chunk_id}``, never the concrete path or its query), so
label sets stay small and no token, chunk id or query secret can reach a metric or a log. It
counts body bytes as each ``http.response.body`` message goes out, so a streamed pack is
counted as it streams and a pack cut by the client is counted for what was really sent.

The access log goes through the stdlib logger ``satchel.access``; :class:`JsonFormatter`
renders every record as one JSON object per line (``time, level, event`` plus the request
fields). Request headers are never read for logging: the only header-derived field is none.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from sqlalchemy import text
from sqlmodel import Session, select

from .db import Version
from .repository import Repository

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A *_created sample per label set doubles the scrape for nothing a dashboard uses.
disable_created_metrics()  # type: ignore[no-untyped-call]

ACCESS_LOGGER = "satchel.access"
UNMATCHED = "<unmatched>"  # one label for every path no route knows (scanners, typos)

# Route templates the metrics single out (they must match app.py's decorators).
PACK_ROUTE = "/v1/pack"
DELTA_ROUTE = "/v1/deltas/{from_manifest}/{to_manifest}"
COMMIT_ROUTE = "/v1/uploads/{upload_id}/commit"

# Seconds: a cached index answer is ~1 ms; a first sync's pack over a slow link takes minutes.
_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    """The server's Prometheus metrics, in a registry of their own (one per app)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "satchel_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.bytes_sent = Counter(
            "satchel_http_response_bytes",
            "Response body bytes sent, by route template (counted as they stream).",
            ["route"],
            registry=r,
        )
        self.duration = Histogram(
            "satchel_http_request_duration_seconds",
            "Time from request to the last body byte sent, by route template.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.pack_seconds = Histogram(
            "satchel_pack_stream_duration_seconds",
            "Time to stream one update pack: kind=static (ready-made, cacheable GET) or"
            " dynamic (POST /v1/pack).",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.pack_bytes = Counter(
            "satchel_pack_stream_bytes",
            "Update pack bytes streamed, by kind (static or dynamic).",
            ["kind"],
            registry=r,
        )
        self.packs = Counter(
            "satchel_update_packs",
            "Update packs served with 200/206, by kind: static ones a cache can serve again,"
            " dynamic ones it cannot.",
            ["kind"],
            registry=r,
        )
        self.not_modified = Counter(
            "satchel_not_modified_responses",
            "304 answers (a client or cache revalidated and got no body), by route template.",
            ["route"],
            registry=r,
        )
        self.commit_seconds = Histogram(
            "satchel_publish_commit_duration_seconds",
            "Time to commit a publish (version visible, index re-signed, static deltas built).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Observability:
    """ASGI middleware: metrics for every HTTP request and one access log record each."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        sent = 0
        finished = False

        async def counting_send(message: Message) -> None:
            nonlocal status, sent, finished
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                finished = not message.get("more_body", False)
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except BaseException:
            # An error escaping the app (the server answers 500) or a client that went away
            # mid-stream: still one record, with what was sent.
            self._record(scope, status or 500, sent, start, complete=False)
            raise
        self._record(scope, status, sent, start, complete=finished)

    def _record(
        self, scope: Scope, status: int, sent: int, start: float, *, complete: bool
    ) -> None:
        seconds = time.perf_counter() - start
        route = _route_template(scope)
        method = str(scope.get("method", ""))
        m = self.metrics
        m.requests.labels(method, route, str(status)).inc()
        m.bytes_sent.labels(route).inc(sent)
        m.duration.labels(route).observe(seconds)
        if status == 304:
            m.not_modified.labels(route).inc()
        kind = _pack_kind(method, route)
        if kind is not None and status in (200, 206):
            m.packs.labels(kind).inc()
            m.pack_bytes.labels(kind).inc(sent)
            m.pack_seconds.labels(kind).observe(seconds)
        if route == COMMIT_ROUTE and status == 200:
            m.commit_seconds.observe(seconds)
        if self.log.isEnabledFor(logging.INFO):
            client = scope.get("client")
            self.log.info(
                "request",
                extra={
                    "http": {
                        "method": method,
                        "path": route,  # the template: never a token, id or query string
                        "status": status,
                        "bytes": sent,
                        "duration_ms": round(seconds * 1000, 3),
                        "client": client[0] if client else None,
                        "complete": complete,
                    }
                },
            )


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def _pack_kind(method: str, route: str) -> str | None:
    if route == PACK_ROUTE and method == "POST":
        return "dynamic"
    if route == DELTA_ROUTE and method == "GET":
        return "static"
    return None


# -- readiness ---------------------------------------------------------------------------------
def not_ready_reason(repo: Repository) -> str | None:
    """None when the database answers and the object store serves a published object.

    The probe object is the newest published manifest, which the store must hold: a store that
    answers but is the wrong bucket, prefix or folder fails here, not at a client's first
    sync. With nothing published yet, the store must still answer a lookup.
    """
    try:
        with Session(repo.engine) as s:
            s.connection().execute(text("SELECT 1"))
            newest = s.exec(select(Version.manifest_id).limit(1)).first()
    except Exception as exc:  # any driver error means the same thing: not ready
        return f"database does not answer: {_first_line(exc)}"
    probe = newest if newest is not None else "0" * 64
    try:
        held = repo.store.has(probe)
    except Exception as exc:  # S3 errors, permissions, a missing mount...
        return f"object store does not answer: {_first_line(exc)}"
    if newest is not None and not held:
        return f"object store lacks published manifest {newest[:16]}... (wrong store?)"
    return None


def _first_line(exc: BaseException) -> str:
    text_ = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text_[0][:200]}" if text_ else type(exc).__name__


# -- logs -------------------------------------------------------------------------------------
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, event, then fields.

    A request record's fields come from its ``http`` extra; other records (warnings from the
    server, uvicorn's own) carry their message as ``event``.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "http", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    """The same records for a person at a terminal: one short line each."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "http", None)
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        if isinstance(fields, dict):
            line = (
                f"{stamp} {fields['method']} {fields['path']} {fields['status']}"
                f" {fields['bytes']}B {fields['duration_ms']:.1f}ms {fields['client'] or '-'}"
            )
        else:
            line = f"{stamp} {record.levelname.lower()} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


LOG_FORMATS = ("text", "json")


def configure_logging(fmt: str, *, access: bool = True, stream: Any = None) -> logging.Handler:
    """Send the server's records (and uvicorn's) to one stderr handler in ``fmt``.

    ``access=False`` keeps everything but the per-request lines (for very busy servers whose
    proxy already logs requests).
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    # Our own records at INFO (requests); uvicorn's startup/errors through the same handler.
    logging.getLogger("satchel").setLevel(logging.INFO)
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO if access else logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    return handler
