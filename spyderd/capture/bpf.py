"""bcc loader: picks the probes this kernel can attach, compiles them with BTF offsets, polls.

bcc stays inside this module; everything above it receives typed `Event`s.
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from spyderd.capture.btf import BTF, kernel_offsets
from spyderd.capture.records import KIND_NAMES
from spyderd.capture.registry import DecodeContext, Probe, probes
from spyderd.errors import CaptureError
from spyderd.model import Event

log = logging.getLogger("spyderd.capture")
TRACEFS = Path("/sys/kernel/tracing")
_KIND = struct.Struct("<I")


@dataclass(slots=True)
class ProbeStatus:
    """Whether a probe runs, and if not, why (shown by `spyderctl status`)."""

    name: str
    state: str  # "attached" | "unavailable" | "failed"
    reason: str = ""
    hooks: list[str] = field(default_factory=list)


def boot_to_wall_ns() -> int:
    """Offset that turns CLOCK_BOOTTIME ns (kernel stamps) into wall-clock ns."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def tracepoint_exists(name: str) -> bool:
    cat, _, tp = name.partition(":")
    return (TRACEFS / "events" / cat / tp).is_dir()


def probes_dir() -> Path:
    """Where the BPF sources live: $SPYDERD_PROBES_DIR, the source tree, or the install."""
    env = os.environ.get("SPYDERD_PROBES_DIR")
    if env:
        return Path(env)
    tree = Path(__file__).resolve().parents[2] / "probes"
    if (tree / "common.h").exists():
        return tree
    return Path("/usr/share/spyderd/probes")


class Capture:
    """Compiles and attaches the available probes; `poll()` returns decoded events."""

    def __init__(self, *, ring_pages: int = 256, max_args: int = 32, arg_bytes: int = 2048,
                 ignore_tgid: int = 0, source_dir: Path | None = None) -> None:
        self.ring_pages = ring_pages
        self.max_args = max_args
        self.arg_bytes = 1 << max(8, (arg_bytes - 1).bit_length())  # power of two
        self.ignore_tgid = ignore_tgid
        self.source_dir = source_dir or probes_dir()
        self.status: dict[str, ProbeStatus] = {}
        self.decode_errors: dict[str, int] = {}
        self.received: dict[str, int] = {}
        self._decoders: dict[int, tuple[str, object]] = {}
        self._ctx = DecodeContext(boot_to_wall=boot_to_wall_ns())
        self._out: list[Event] = []
        self._bpf = None

    def start(self) -> dict[str, ProbeStatus]:
        """Select, compile and attach; raises CaptureError only when nothing can run."""
        from bcc import BPF  # imported here so replay and tests run without bcc

        btf = BTF.load()
        chosen, cflags = self._select(probes(), btf)
        if not chosen:
            raise CaptureError("no probe can attach on this kernel: " + "; ".join(
                f"{s.name}: {s.reason}" for s in self.status.values()))
        text = (self.source_dir / "common.h").read_text()
        for p in chosen:
            text += f"\n/* ---- {p.source} ---- */\n" + (self.source_dir / p.source).read_text()
        try:
            self._bpf = BPF(text=text, cflags=cflags)
        except Exception as exc:  # bcc raises bare Exception on compile/attach failure
            for p in chosen:
                self.status[p.name] = ProbeStatus(p.name, "failed", str(exc))
            raise CaptureError(f"BPF compile/attach failed: {exc}") from exc
        for p in chosen:
            self.status[p.name] = ProbeStatus(p.name, "attached",
                                              hooks=[a.name for a in p.attach])
            self._decoders.update(p.decoders)
        self._bpf["events"].open_ring_buffer(self._on_record)
        return self.status

    def _select(self, candidates: list[Probe], btf: BTF) -> tuple[list[Probe], list[str]]:
        cflags = [
            f"-DRINGBUF_PAGES={self.ring_pages}",
            f"-DMAX_ARGS={self.max_args}",
            f"-DARGBUF={self.arg_bytes}",
            f"-DIGNORE_TGID={self.ignore_tgid}",
            "-Wno-macro-redefined",
        ]
        fmt = TRACEFS / "events/sched/sched_process_exit/format"
        if fmt.exists() and "group_dead" in fmt.read_text():
            cflags.append("-DHAVE_GROUP_DEAD=1")
        chosen: list[Probe] = []
        for p in candidates:
            missing = [a.name for a in p.attach if not tracepoint_exists(a.name)]
            found, absent = kernel_offsets(btf, p.offsets)
            if missing or absent:
                why = ("missing hooks: " + ", ".join(missing)) if missing else (
                    "missing kernel fields: " + "; ".join(absent.values()))
                self.status[p.name] = ProbeStatus(p.name, "unavailable", why)
                log.warning("probe %s unavailable: %s", p.name, why)
                continue
            cflags += [f"-D{k}={v}" for k, v in found.items()]
            chosen.append(p)
        return chosen, sorted(set(cflags))

    def _on_record(self, _ctx, data, size) -> None:
        buf = ctypes.string_at(data, size)
        kind = _KIND.unpack_from(buf, 0)[0] if size >= 4 else 0
        entry = self._decoders.get(kind)
        name = entry[0] if entry else KIND_NAMES.get(kind, f"kind{kind}")
        try:
            if entry is None:
                raise ValueError(f"no decoder for record kind {kind}")
            self._out.append(entry[1](buf, self._ctx))  # type: ignore[operator]
            self.received[name] = self.received.get(name, 0) + 1
        except Exception as exc:  # noqa: BLE001 - a bad record is counted and logged, never fatal
            self.decode_errors[name] = self.decode_errors.get(name, 0) + 1
            log.warning("decode error in %s record (%d bytes): %s", name, size, exc)

    def poll(self, timeout_ms: int = 100) -> list[Event]:
        """Wait up to `timeout_ms` for records; return what arrived, in ring order."""
        self._bpf.ring_buffer_poll(timeout_ms)
        out, self._out = self._out, []
        return out

    def refresh_clock(self) -> None:
        """Re-read the boot-to-wall offset (wall clock may be stepped)."""
        self._ctx.boot_to_wall = boot_to_wall_ns()

    def lost(self) -> dict[str, int]:
        """Ring-buffer losses per event kind, as counted in the kernel."""
        if self._bpf is None:
            return {}
        out = {}
        for k, v in self._bpf["lost"].items():
            if v.value:
                out[KIND_NAMES.get(k.value, f"kind{k.value}")] = v.value
        return out

    def close(self) -> None:
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None
