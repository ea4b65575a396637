"""A BPF ring buffer read straight from its memory map, without a callback per record.

bcc's `ring_buffer_poll` calls back into Python through ctypes once per record, and that
crossing costs more than decoding the record (~20 µs against ~5 µs on the development
machine). The ring buffer map can be mapped into this process like libbpf does: one
read-write page holding the consumer position, then a read-only page holding the producer
position followed by the data area mapped twice (so a record that wraps around the end is
contiguous). Records are taken in batches; the consumer position is published after each
batch, which is what frees the space for the kernel.

Layout and protocol: kernel/bpf/ringbuf.c and tools/lib/bpf/ringbuf.c. Each record is an
8-byte header (u32 length with BUSY bit 31 and DISCARD bit 30, u32 page offset) followed by
the sample, padded to 8 bytes. x86 and arm64 loads of the aligned 64-bit positions are
atomic; on arm64 the acquire ordering libbpf uses is not guaranteed here, so `usable()`
limits this reader to x86_64, where every load already has acquire semantics.
"""

from __future__ import annotations

import mmap
import platform
import select
import struct
import threading
import time
from collections import deque
from collections.abc import Callable

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HDR_SZ = 8
# Native formats on purpose: CPython packs "<Q" byte by byte, "Q" with one 8-byte memcpy
# (one aligned load or store on x86-64). The positions are shared with the kernel, which
# must never see half of an update (a torn consumer position reads as a full ring).
_U64 = struct.Struct("Q")
_U32 = struct.Struct("I")


def usable() -> bool:
    """Direct reading is used where load ordering is known to be safe (x86-64 TSO)."""
    return platform.machine() == "x86_64"


class RingReader:
    """Consumer of one BPF_MAP_TYPE_RINGBUF map given its fd and data size in bytes."""

    def __init__(self, map_fd: int, size: int) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"ring buffer size {size} is not a power of two")
        page = mmap.PAGESIZE
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ,
                               offset=page)
        self._data = memoryview(self._prod)[page:]
        self._mask = size - 1
        self.size = size
        self._ep = select.epoll()
        self._ep.register(map_fd, select.EPOLLIN)

    def pending(self) -> bool:
        return self.available() > 0

    def available(self) -> int:
        """Bytes produced and not yet consumed (headers and padding included)."""
        return _U64.unpack_from(self._prod, 0)[0] - _U64.unpack_from(self._cons, 0)[0]

    def wait(self, timeout_ms: int) -> None:
        """Block until the kernel signals data (or the timeout passes)."""
        if not self.pending():
            self._ep.poll(timeout_ms / 1000.0)

    def consume(self, on_record: Callable[[bytes], None], limit: int = 1 << 30) -> int:
        """Hand every complete record to `on_record` (as bytes); return how many."""
        cons = _U64.unpack_from(self._cons, 0)[0]
        data, mask, unpack32 = self._data, self._mask, _U32.unpack_from
        n = 0
        while n < limit:
            prod = _U64.unpack_from(self._prod, 0)[0]
            if cons >= prod:
                break
            busy = False
            while cons < prod and n < limit:
                off = cons & mask
                ln = unpack32(data, off)[0]
                if ln & BUSY_BIT:  # reserved but not yet committed by the producer
                    busy = True
                    break
                size = ln & ~(BUSY_BIT | DISCARD_BIT)
                if not ln & DISCARD_BIT:
                    on_record(bytes(data[off + HDR_SZ:off + HDR_SZ + size]))
                    n += 1
                cons += (size + HDR_SZ + 7) & ~7
            _U64.pack_into(self._cons, 0, cons)  # frees the space for the kernel
            if busy:
                break
        return n

    def close(self) -> None:
        self._ep.close()
        self._data.release()
        self._prod.close()
        self._cons.close()


class Drain:
    """Copies records out of the kernel's ring in a thread of its own.

    The daemon's loop sometimes holds on to the CPU for a while (a store commit, a burst of
    rule work); with a reader in that loop, the kernel ring had to absorb everything that
    arrived meanwhile, and a loopback connect storm overflowed 1 MiB of ring. This thread
    only copies bytes (well under a microsecond per record) and needs the GIL for a moment
    every `batch_s`, so the kernel ring covers milliseconds; the backlog waits in this
    process, bounded by `max_bytes`. A record that does not fit is counted in `dropped`
    (per record kind) and shown with the kernel's losses, never dropped silently.
    """

    def __init__(self, reader: RingReader, *, batch_s: float, max_bytes: int) -> None:
        self.reader = reader
        self.batch_s = batch_s
        self.max_bytes = max_bytes
        self.dropped: dict[int, int] = {}
        self._q: deque[bytes] = deque()
        self._in_bytes = 0  # written by the drain thread only
        self._out_bytes = 0  # written by the consumer only
        self._ready = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="spyderd-ring", daemon=True)
        self._thread.start()

    def backlog_bytes(self) -> int:
        return self._in_bytes - self._out_bytes

    def _run(self) -> None:
        reader = self.reader
        while not self._stop:
            reader.wait(100)
            if self._stop:
                break
            if self.batch_s and 0 < reader.available() < reader.size // 8:
                time.sleep(self.batch_s)  # let records gather: one wakeup serves many
            if reader.consume(self._take):
                self._ready.set()

    def _take(self, rec: bytes) -> None:
        if self._in_bytes - self._out_bytes + len(rec) > self.max_bytes:
            kind = _U32.unpack_from(rec, 0)[0] if len(rec) >= 4 else 0
            self.dropped[kind] = self.dropped.get(kind, 0) + 1
            return
        self._in_bytes += len(rec)
        self._q.append(rec)

    def get(self, timeout_s: float, limit: int = 20000) -> list[bytes]:
        """Up to `limit` records in ring order, waiting up to `timeout_s` if there are none."""
        q = self._q
        if not q and timeout_s > 0:
            self._ready.wait(timeout_s)
        self._ready.clear()
        out: list[bytes] = []
        size = 0
        while q and len(out) < limit:
            rec = q.popleft()
            size += len(rec)
            out.append(rec)
        self._out_bytes += size
        if q:
            self._ready.set()
        return out

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
