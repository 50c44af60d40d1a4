"""The pack stream: many stored objects in one response, verifiable one by one as they arrive.

Byte format (all integers big-endian)::

    pack    = magic frame* trailer
    magic   = "SATPACK" 0x01                      (8 bytes)
    frame   = id:32 length:u32 object:length      (id = raw SHA-256 of the chunk's bytes)
    trailer = 0x00*32 count:u32                   (count = number of frames before it)

A reader never needs more than one frame in memory; it knows a pack was cut short because
the trailer is missing, and a frame is refused before it is buffered if its length exceeds
the limit. :class:`PackReader` is sans-IO: feed it bytes, take complete frames out; or, for a
reader that can seek (a pack file on a USB stick), take only the frame heads with where each
object lies, and skip the objects' bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from satchel.content.errors import FormatError, TruncatedError
from satchel.content.objects import MAX_OBJECT_LENGTH

MAGIC = b"SATPACK\x01"
_HEAD = struct.Struct(">32sI")
HEAD_SIZE = _HEAD.size
END_ID = bytes(32)
MAX_FRAME = MAX_OBJECT_LENGTH + 64
PACK_MEDIA_TYPE = "application/vnd.satchel.pack"


@dataclass(frozen=True, slots=True)
class PackFrame:
    chunk_id: str
    obj: bytes


@dataclass(frozen=True, slots=True)
class FrameHead:
    """A frame's head: its id, and where its object lies (counted from the pack's first byte)."""

    chunk_id: str
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class PartialFrame:
    """The frame a pack stopped inside: its id, declared object length and the bytes so far."""

    chunk_id: str
    length: int
    data: bytes


@dataclass(frozen=True, slots=True)
class PendingHead:
    """The frame begun: id, declared object length, object bytes so far, first object byte."""

    chunk_id: str
    length: int
    have: int
    format: int | None


def frame_head(cid: str, length: int) -> bytes:
    """A frame's head alone, for writers that send the object after it without a copy."""
    return _HEAD.pack(bytes.fromhex(cid), length)


def frame(cid: str, obj: bytes) -> bytes:
    return frame_head(cid, len(obj)) + obj


def trailer(count: int) -> bytes:
    return _HEAD.pack(END_ID, count)


def write_pack(items: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    """Yield a whole pack, one frame at a time, for streaming responses."""
    yield MAGIC
    count = 0
    for cid, obj in items:
        yield frame(cid, obj)
        count += 1
    yield trailer(count)


def pack_bytes(items: Iterable[tuple[str, bytes]]) -> bytes:
    return b"".join(write_pack(items))


class PackReader:
    """Incremental pack parser: ``feed()`` bytes, get the frames completed so far."""

    def __init__(self, *, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame
        self._magic_seen = False
        self._count = 0
        self._skip = 0  # object bytes still to pass over (heads only)
        self.done = False
        self.bytes_read = 0  # fed or skipped

    def feed(self, data: bytes) -> list[PackFrame]:
        """The frames completed by ``data`` (each whole, never a partial one)."""
        frames, _heads = self._parse(data, objects=True)
        return frames

    def feed_heads(self, data: bytes) -> list[FrameHead]:
        """Like :meth:`feed`, keeping only frame heads: objects' bytes are dropped as they are
        fed, and the caller may instead pass over the next :attr:`to_skip` bytes unread and
        say so with :meth:`skip`. Use one of ``feed`` and ``feed_heads`` per reader."""
        _frames, heads = self._parse(data, objects=False)
        return heads

    @property
    def to_skip(self) -> int:
        """Object bytes :meth:`feed_heads` does not need to see before the next head."""
        return self._skip

    def skip(self, n: int) -> None:
        """The caller passed over ``n`` bytes of the current object without feeding them."""
        if not 0 <= n <= self._skip:
            raise ValueError(f"cannot skip {n} bytes; only {self._skip} may be skipped")
        self._skip -= n
        self.bytes_read += n

    def _parse(self, data: bytes, *, objects: bool) -> tuple[list[PackFrame], list[FrameHead]]:
        frames: list[PackFrame] = []
        heads: list[FrameHead] = []
        if self.done:
            if data:
                raise FormatError("pack has data after its trailer")
            return frames, heads
        self.bytes_read += len(data)
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        self._buf += data
        if not self._magic_seen:
            if len(self._buf) < len(MAGIC):
                if not MAGIC.startswith(bytes(self._buf)):
                    raise FormatError("not a Satchel pack (bad magic bytes)")
                return frames, heads
            if bytes(self._buf[: len(MAGIC)]) != MAGIC:
                raise FormatError("not a Satchel pack (bad magic bytes)")
            del self._buf[: len(MAGIC)]
            self._magic_seen = True
        pos = 0
        buf = self._buf
        base = self.bytes_read - len(buf)  # where buf[0] lies in the pack
        while not self._skip and len(buf) - pos >= HEAD_SIZE:
            raw_id, length = _HEAD.unpack_from(buf, pos)
            if raw_id == END_ID:
                if length != self._count:
                    raise FormatError(
                        f"pack trailer counts {length} frames but {self._count} arrived"
                    )
                if len(buf) - pos > HEAD_SIZE:
                    raise FormatError("pack has data after its trailer")
                self.done = True
                pos += HEAD_SIZE
                break
            if length > self._max:
                raise FormatError(f"pack frame of {length:,} bytes exceeds the {self._max:,} limit")
            start = pos + HEAD_SIZE
            if objects:
                if len(buf) - start < length:
                    break
                frames.append(PackFrame(raw_id.hex(), bytes(buf[start : start + length])))
            else:
                heads.append(FrameHead(raw_id.hex(), base + start, length))
                self._skip = max(0, start + length - len(buf))
            self._count += 1
            pos = min(start + length, len(buf))
        del buf[:pos]
        return frames, heads

    def close(self) -> None:
        """Raise TruncatedError if the pack ended before its trailer (a cut connection)."""
        if not self.done:
            raise TruncatedError(
                f"pack was cut short after {self._count} complete frames"
                f" ({self.bytes_read:,} bytes); the complete ones are kept"
            )

    @property
    def frames(self) -> int:
        return self._count

    @property
    def pending(self) -> PartialFrame | None:
        """The frame begun but not complete (its head has arrived), or None.

        After a cut this is what a client may keep to finish later with a Range request; the
        reader itself never hands out a partial frame as a frame.
        """
        head = self.pending_head
        if head is None:
            return None
        return PartialFrame(head.chunk_id, head.length, bytes(self._buf[HEAD_SIZE:]))

    @property
    def pending_head(self) -> PendingHead | None:
        """Like :attr:`pending` without copying the bytes: cheap enough to ask after each feed."""
        if self.done or not self._magic_seen or len(self._buf) < HEAD_SIZE:
            return None
        raw_id, length = _HEAD.unpack_from(self._buf, 0)
        if raw_id == END_ID or length > self._max:
            return None
        have = len(self._buf) - HEAD_SIZE
        return PendingHead(raw_id.hex(), length, have, self._buf[HEAD_SIZE] if have else None)


def read_pack(chunks: Iterable[bytes]) -> Iterator[PackFrame]:
    """Parse a whole pack from an iterable of byte pieces, raising if it is truncated."""
    reader = PackReader()
    for piece in chunks:
        yield from reader.feed(piece)
    reader.close()
