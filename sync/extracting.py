"""The searchable text of many pages at once, on every core the laptop has.

Extracting text (libxml2's parser driving Python callbacks, CommonMark in Python) holds the
GIL, so threads do not help: on a first sync or a USB import of 10,000 pages it was 60% of
the search index's time, on one core. :func:`extract_texts` hands pages to worker processes
in batches of about :data:`BATCH_BYTES` (one pickle and pipe round trip per batch, not per
page) when there are at least :data:`PARALLEL_FROM` of them, and runs in the calling process
otherwise: starting two workers (a Python each, importing lxml and the Markdown parser) costs
~0.5 s on two cores, more than a version bump's few pages take.

Reading stays in the caller (it owns the store and its errors); only bytes and kinds cross to
the workers, and their :class:`~satchel.content.text.PageText` comes back in the order the
pages were given. At most two batches per worker are in flight, so memory does not grow with
the course. A pool that breaks (a worker killed, say by the out-of-memory killer) costs speed,
not the index: its batches and the rest are extracted here.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from satchel.content.text import Kind, PageText, extract_text

J = TypeVar("J")

# Pages: fewer are extracted in the calling process. Index of generated pages on 2 cores, in
# the process against workers: 1,000 0.8 / 1.25 s, 2,000 2.0 / 1.9 s, 4,000 3.7 / 3.2 s,
# 10,000 7.4 / 4.8 s.
PARALLEL_FROM = 3000
BATCH_BYTES = 1024 * 1024
BATCH_PAGES = 256
IN_FLIGHT = 2  # batches per worker

Read = Callable[[J], "tuple[bytes, Kind] | None"]
"""A page's bytes and kind, or None to leave it out (unreadable: the caller counts it)."""

_Batch = tuple[list[J], list[tuple[bytes, Kind]]]


def cores() -> int:
    """CPUs this process may run on (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def extract_texts(
    jobs: Iterable[J],
    read: Read[J],
    *,
    count: int,
    workers: int | None = None,
    parallel_from: int | None = None,
) -> Iterator[tuple[J, PageText]]:
    """``(job, text)`` for every job that ``read`` gives bytes for, in the order given.

    ``count`` is how many jobs there are (it decides whether workers are worth starting);
    ``workers`` defaults to :func:`cores`, ``parallel_from`` to :data:`PARALLEL_FROM`.
    """
    n = cores() if workers is None else workers
    if n < 2 or count < (PARALLEL_FROM if parallel_from is None else parallel_from):
        yield from _here(jobs, read)
        return
    yield from _parallel(jobs, read, n)


def _here(jobs: Iterable[J], read: Read[J]) -> Iterator[tuple[J, PageText]]:
    for job in jobs:
        got = read(job)
        if got is not None:
            yield job, extract_text(*got)


def _extract_batch(pages: list[tuple[bytes, Kind]]) -> list[PageText]:
    return [extract_text(data, kind) for data, kind in pages]


def _quiet() -> None:
    # Ctrl-C reaches the whole process group: the caller stops and shuts the pool down;
    # workers that raised KeyboardInterrupt too would only print tracebacks over its message.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _batches(jobs: Iterable[J], read: Read[J]) -> Iterator[_Batch[J]]:
    done: list[J] = []
    pages: list[tuple[bytes, Kind]] = []
    size = 0
    for job in jobs:
        got = read(job)
        if got is None:
            continue
        done.append(job)
        pages.append(got)
        size += len(got[0])
        if size >= BATCH_BYTES or len(pages) >= BATCH_PAGES:
            yield done, pages
            done, pages, size = [], [], 0
    if pages:
        yield done, pages


def _parallel(jobs: Iterable[J], read: Read[J], workers: int) -> Iterator[tuple[J, PageText]]:
    # spawn, not fork: the caller may have threads (a sync's fsync pool, an HTTP client)
    # whose locks a forked child would inherit held.
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_quiet
    )
    pending: deque[tuple[_Batch[J], Future[list[PageText]] | None]] = deque()
    broken = False

    def finish(batch: _Batch[J], future: Future[list[PageText]] | None) -> list[PageText]:
        nonlocal broken
        if future is not None and not broken:
            try:
                return future.result()
            except BrokenProcessPool:
                broken = True
        return _extract_batch(batch[1])

    def ready(limit: int) -> Iterator[tuple[J, PageText]]:
        while len(pending) > limit:
            batch, future = pending.popleft()
            yield from zip(batch[0], finish(batch, future), strict=True)

    try:
        for batch in _batches(jobs, read):
            future = None
            if not broken:
                try:
                    future = pool.submit(_extract_batch, batch[1])
                except BrokenProcessPool:
                    broken = True
            pending.append((batch, future))
            yield from ready(0 if broken else workers * IN_FLIGHT)
        yield from ready(0)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
