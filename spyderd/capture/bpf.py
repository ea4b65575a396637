"""bcc loader: picks the hooks this kernel has, compiles the probes with BTF offsets, polls.

bcc stays inside this module; everything above it receives typed `Event`s.

Robustness rules:
- a hook is checked before compiling; a missing hook that the source guards with its
  `HAVE_*` macro is reported per hook while the rest of the probe runs, a missing
  unguarded hook makes only that probe unavailable;
- if the combined program does not compile or attach, each probe is tried alone and the
  ones that fail are reported `failed` while the others run;
- after attach a forked child triggers one cheap event per probe (the self-test), so
  `spyderctl status` says which probes really deliver.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from spyderd.capture import ringbuf
from spyderd.capture.btf import BTF, kernel_offsets
from spyderd.capture.progstats import ProgStats, bpf_programs, program_label
from spyderd.capture.records import COUNTER_NAMES, KIND_NAMES
from spyderd.capture.registry import DecodeContext, Probe, probes
from spyderd.errors import CaptureError, SpyderError
from spyderd.model import Event

log = logging.getLogger("spyderd.capture")
TRACEFS = Path("/sys/kernel/tracing")
_KIND = struct.Struct("<I")
SELFTEST_TIMEOUT = 3.0


@dataclass(slots=True)
class ProbeStatus:
    """Whether a probe runs, and if not, why (shown by `spyderctl status`)."""

    name: str
    state: str  # "attached" | "unavailable" | "failed" | "disabled"
    reason: str = ""
    hooks: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # hooks absent on this kernel
    selftest: str = ""  # "" (none) | "ok" | "failed: ..."
    note: str = ""

    def text(self) -> str:
        """One line: `attached, self-test ok`, `unavailable: <reason>`, ..."""
        if self.state != "attached":
            return f"{self.state}: {self.reason}" if self.reason else self.state
        out = "attached"
        if self.selftest:
            out += f", self-test {self.selftest}"
        if self.missing:
            out += "; hooks unavailable: " + ", ".join(hook_labels(self.missing))
        if self.note:
            out += f" ({self.note})"
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "hooks": self.hooks,
                "missing": self.missing, "selftest": self.selftest, "note": self.note,
                "text": self.text()}


def hook_labels(names: list[str]) -> list[str]:
    """`syscalls:sys_enter_X` and `syscalls:sys_exit_X` shown once, as `X()`."""
    out: list[str] = []
    for n in names:
        cat, _, tp = n.partition(":")
        if cat == "syscalls":
            n = tp.removeprefix("sys_enter_").removeprefix("sys_exit_") + "()"
        if n not in out:
            out.append(n)
    return out


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


def _comm_key(name: str) -> bytes:
    return name.encode()[:15].ljust(16, b"\0")


@dataclass(slots=True)
class LoadError:
    """bcc's exception text and what the compiler/verifier printed on stderr."""

    text: str
    detail: str

    def reason(self) -> str:
        """The most telling line: the first compiler error, else the exception."""
        m = _CLANG_ERR.search(self.detail)
        if m:
            return f"{self.text}: {m.group(2).strip()}"
        return self.text


_CLANG_ERR = re.compile(r"^/virtual/main\.c:(\d+):\d+: error: (.*)$", re.MULTILINE)
_PROG = re.compile(r"Failed to (?:load|attach) BPF program b?'?([A-Za-z0-9_]+)")


def blame(err: LoadError, chosen: list[Probe], texts: dict[str, str]) -> Probe | None:
    """Which probe's source a failure points at: the line of the first compiler error in
    the combined text, or the probe whose source defines the program that failed to load."""
    m = _CLANG_ERR.search(err.detail)
    if m:
        line = int(m.group(1))
        for p, (first, last) in zip(chosen, source_spans(chosen, texts), strict=True):
            if first <= line <= last:
                return p
        return None
    m = _PROG.search(err.text)
    if m:
        fn = m.group(1)
        event = fn.split("__")[-1]
        owners = [p for p in chosen if event in texts[p.name] or fn in texts[p.name]]
        if len(owners) == 1:
            return owners[0]
    return None


def source_spans(chosen: list[Probe], texts: dict[str, str]) -> list[tuple[int, int]]:
    """1-based (first, last) line of each probe's text in `Capture._source`'s output."""
    line = common_h_lines() + 1
    out = []
    for p in chosen:
        n = texts[p.name].count("\n") + 1
        line += 1  # the "/* ---- x ---- */" marker
        out.append((line + 1, line + n))
        line += n
    return out


def common_h_lines(source_dir: Path | None = None) -> int:
    return ((source_dir or probes_dir()) / "common.h").read_text().count("\n")


class StderrCapture:
    """Collects what bcc, clang and the verifier write to fd 2 (logged on failure)."""

    def __enter__(self) -> Self:
        self._tmp = tempfile.TemporaryFile()
        sys.stderr.flush()
        self._saved = os.dup(2)
        os.dup2(self._tmp.fileno(), 2)
        self.text = ""
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode("utf-8", "replace")
        self._tmp.close()


class Capture:
    """Compiles and attaches the available probes; `poll()` returns decoded events."""

    def __init__(self, *, ring_pages: int = 256, max_args: int = 32, arg_bytes: int = 2048,
                 ignore_tgid: int = 0, source_dir: Path | None = None,
                 options: dict[str, Any] | None = None) -> None:
        self.ring_pages = ring_pages
        self.max_args = max_args
        self.arg_bytes = 1 << max(8, (arg_bytes - 1).bit_length())  # power of two
        self.ignore_tgid = ignore_tgid
        self.options: dict[str, Any] = dict(options or {})
        self.batch_s = max(0.0, float(self.options.get("batch_ms", 20))) / 1000.0
        self.source_dir = source_dir or probes_dir()
        self.status: dict[str, ProbeStatus] = {}
        self.decode_errors: dict[str, int] = {}
        self.filtered: dict[str, int] = {}  # records a decoder dropped (user-space filter)
        self.received: dict[str, int] = {}
        self._decoders: dict[int, tuple[str, object]] = {}
        self._ctx = DecodeContext(boot_to_wall=boot_to_wall_ns())
        self._out: list[Event] = []
        self._bpf = None
        self._ring: ringbuf.RingReader | None = None
        self._drain: ringbuf.Drain | None = None
        self._progstats: ProgStats | None = None
        self._chosen: list[Probe] = []

    # -- start -----------------------------------------------------------------------------

    def start(self) -> dict[str, ProbeStatus]:
        """Select, compile, attach and self-test; raises CaptureError only when nothing runs."""
        btf = BTF.load()
        chosen, cflags, texts = self._select(probes(), btf)
        if not chosen:
            raise CaptureError("no probe can attach on this kernel: " + "; ".join(
                f"{s.name}: {s.reason}" for s in self.status.values()))
        chosen = self._compile(chosen, cflags, texts)
        self._chosen = chosen
        self._progstats = ProgStats(btf, bpf_programs(self._bpf))
        for p in chosen:
            self._decoders.update(p.decoders)
        self._fill_maps(chosen)
        self._setup(chosen)
        self._open_ring()
        if self.options.get("self_test", True):
            self.self_test()
        if self._ring is not None:  # after the self-test: it forks, better without threads
            backlog = int(self.options.get("backlog_mb", 64)) << 20
            self._drain = ringbuf.Drain(self._ring, batch_s=self.batch_s, max_bytes=backlog)
        return self.status

    def _base_cflags(self) -> list[str]:
        cflags = [
            f"-DRINGBUF_PAGES={self.ring_pages}",
            f"-DMAX_ARGS={self.max_args}",
            f"-DARGBUF={self.arg_bytes}",
            f"-DIGNORE_TGID={self.ignore_tgid}",
            "-Wno-macro-redefined",
        ]
        if self.options.get("ignore_comms"):
            cflags.append("-DHAVE_IGNORE_COMMS=1")
        fmt = TRACEFS / "events/sched/sched_process_exit/format"
        if fmt.exists() and "group_dead" in fmt.read_text():
            cflags.append("-DHAVE_GROUP_DEAD=1")
        return cflags

    def _select(self, candidates: list[Probe], btf: BTF
                ) -> tuple[list[Probe], list[str], dict[str, str]]:
        """Per probe: which hooks exist, which fields BTF has; the cflags for the rest."""
        cflags = self._base_cflags()
        chosen: list[Probe] = []
        texts: dict[str, str] = {}
        disabled = set(self.options.get("disable") or [])
        for p in candidates:
            if p.name in disabled:
                self.status[p.name] = ProbeStatus(p.name, "disabled", "capture.disable")
                continue
            try:
                text = (self.source_dir / p.source).read_text()
            except OSError as exc:
                self._unavailable(p, f"source {p.source}: {exc.strerror}")
                continue
            present = [a for a in p.attach if tracepoint_exists(a.name)]
            missing = [a for a in p.attach if a not in present]
            required = [a.name for a in missing if a.guard not in text]
            found, absent = kernel_offsets(btf, p.offsets)
            if required or absent or not present:
                why = ("missing hooks: " + ", ".join(required)) if required else (
                    "missing kernel fields: " + "; ".join(absent.values())) if absent else (
                    "none of its hooks exist")
                self._unavailable(p, why)
                continue
            opt, _ = kernel_offsets(btf, p.optional_offsets)
            missing_names = frozenset(a.name for a in missing)
            extra, note = p.configure(self.options, missing_names) if p.configure else ([], "")
            cflags += [f"-D{a.guard}=1" for a in present]
            cflags += [f"-D{k}={v}" for k, v in {**found, **opt}.items()]
            cflags += extra
            texts[p.name] = text
            chosen.append(p)
            self.status[p.name] = ProbeStatus(
                p.name, "attached", hooks=[a.name for a in present],
                missing=sorted(missing_names), note=note)
            if missing:
                log.warning("probe %s: hooks unavailable on this kernel: %s%s", p.name,
                            ", ".join(hook_labels(sorted(missing_names))),
                            f" ({note})" if note else "")
        return chosen, sorted(set(cflags)), texts

    def _unavailable(self, p: Probe, why: str) -> None:
        self.status[p.name] = ProbeStatus(p.name, "unavailable", why)
        log.warning("probe %s unavailable: %s", p.name, why)

    def _source(self, chosen: list[Probe], texts: dict[str, str]) -> str:
        text = (self.source_dir / "common.h").read_text()
        for p in chosen:
            text += f"\n/* ---- {p.source} ---- */\n" + texts[p.name]
        return text

    def _compile(self, chosen: list[Probe], cflags: list[str],
                 texts: dict[str, str]) -> list[Probe]:
        """One program for all probes. If it fails, the probe at fault is found from the
        compiler's or loader's message (or, failing that, by trying each probe alone),
        reported `failed`, and the rest is compiled again."""
        good = list(chosen)
        while good:
            err = self._try_load(good, texts, cflags)
            if err is None:
                return good
            culprit = blame(err, good, texts)
            if culprit is None:
                log.warning("BPF program failed; trying each probe alone: %s", err.text)
                return self._compile_alone(good, cflags, texts)
            self._fail(culprit, err)
            good.remove(culprit)
        raise CaptureError("no probe compiles and attaches: " + "; ".join(
            f"{s.name}: {s.reason}" for s in self.status.values()))

    def _try_load(self, chosen: list[Probe], texts: dict[str, str],
                  cflags: list[str]) -> LoadError | None:
        from bcc import BPF  # imported here so replay and tests run without bcc

        with StderrCapture() as cap:
            try:
                self._bpf = BPF(text=self._source(chosen, texts), cflags=cflags)
                return None
            except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception
                self._bpf = None
                failure = exc
        return LoadError(str(failure), cap.text)

    def _compile_alone(self, chosen: list[Probe], cflags: list[str],
                       texts: dict[str, str]) -> list[Probe]:
        good: list[Probe] = []
        for p in chosen:
            err = self._try_load([p], texts, cflags)
            if err is None:
                self._bpf.cleanup()
                good.append(p)
            else:
                self._fail(p, err)
        if not good or self._try_load(good, texts, cflags) is not None:
            raise CaptureError("no probe compiles and attaches: " + "; ".join(
                f"{s.name}: {s.reason}" for s in self.status.values()))
        return good

    def _fail(self, p: Probe, err: LoadError | Exception) -> None:
        if not isinstance(err, LoadError):
            err = LoadError(f"{type(err).__name__}: {err}", "")
        self.status[p.name] = ProbeStatus(p.name, "failed", err.reason()[:300])
        log.error("probe %s failed to compile/attach: %s\n%s", p.name, err.text,
                  err.detail[-4000:])

    def _fill_maps(self, chosen: list[Probe]) -> None:
        """Write the in-kernel filter maps from the configuration."""
        comms = self.options.get("ignore_comms") or []
        entries: dict[str, dict[Any, int]] = {"ignore_comm": {_comm_key(c): 1 for c in comms}}
        for p in chosen:
            if p.maps:
                st = self.status[p.name]
                entries.update(p.maps(self.options, frozenset(st.missing)))
        for name, values in entries.items():
            if not values:
                continue
            table = self._bpf[name]
            for key, value in values.items():
                k = table.Key()
                if isinstance(key, bytes):
                    ctypes.memmove(ctypes.addressof(k), key, min(len(key), ctypes.sizeof(k)))
                else:
                    k = table.Key(key)
                table[k] = table.Leaf(value)

    def _setup(self, chosen: list[Probe]) -> None:
        """Each probe's post-load hook; a failing one marks only that probe failed."""
        for p in chosen:
            setup = getattr(p, "setup", None)
            if setup is None:
                continue
            try:
                setup(self._bpf, self.options, self._ctx)
            except SpyderError:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded in the probe's status
                self._fail(p, exc)

    def _open_ring(self) -> None:
        """Read the ring buffer from its memory map (no ctypes callback per record) where
        that is safe, else through bcc's callback."""
        table = self._bpf["events"]
        if ringbuf.usable():
            try:
                self._ring = ringbuf.RingReader(table.map_fd, table.max_entries)
                return
            except (OSError, ValueError, AttributeError) as exc:
                log.warning("ring buffer not mappable (%s); using bcc's reader", exc)
        table.open_ring_buffer(self._on_record)

    def _pump(self, timeout_ms: int) -> None:
        """Wait up to `timeout_ms` unless records are waiting; decode what is there."""
        if self._drain is not None:
            for rec in self._drain.get(0 if self._out else timeout_ms / 1000.0):
                self._decode(rec)
        elif self._ring is not None:
            if not self._out:
                self._ring.wait(timeout_ms)
                # Woken for a few records: let more arrive before reading, so one wakeup
                # serves many records (a wakeup costs more than decoding a record).
                if self.batch_s and 0 < self._ring.available() < self._ring.size // 8:
                    time.sleep(self.batch_s)
            self._ring.consume(self._decode)
        elif self._out:
            self._bpf.ring_buffer_consume()
        else:
            self._bpf.ring_buffer_poll(timeout_ms)

    # -- self-test -------------------------------------------------------------------------

    def self_test(self, timeout: float = SELFTEST_TIMEOUT) -> None:
        """Fork a child that runs each probe's trigger; wait for their events (kept for poll)."""
        tests = [p for p in self._chosen if p.selftest]
        if not tests:
            return
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                for p in tests:
                    try:
                        p.selftest()  # type: ignore[misc]
                    except BaseException:  # noqa: BLE001 - a failed trigger shows as failed
                        code = 1
            finally:
                os._exit(code)
        os.waitpid(child, 0)
        want = {p.name: {name for name, _ in p.decoders.values()} for p in tests}
        deadline = time.monotonic() + timeout
        seen = 0
        while want and time.monotonic() < deadline:
            self._pump(50)
            for ev in self._out[seen:]:
                if ev.pid != child and getattr(ev, "ppid", 0) != child:
                    continue
                for name, kinds in list(want.items()):
                    if ev.kind in kinds:
                        self.status[name].selftest = "ok"
                        del want[name]
            seen = len(self._out)
        for name in want:
            self.status[name].selftest = f"failed: no event within {timeout:g} s"
            log.warning("probe %s attached but its self-test saw no event", name)

    # -- records ---------------------------------------------------------------------------

    def _on_record(self, _ctx, data, size) -> None:
        self._decode(ctypes.string_at(data, size))

    def _decode(self, buf: bytes) -> None:
        size = len(buf)
        kind = _KIND.unpack_from(buf, 0)[0] if size >= 4 else 0
        entry = self._decoders.get(kind)
        name = entry[0] if entry else KIND_NAMES.get(kind, f"kind{kind}")
        try:
            if entry is None:
                raise ValueError(f"no decoder for record kind {kind}")
            ev = entry[1](buf, self._ctx)  # type: ignore[operator]
            if ev is None:  # dropped by the probe's user-space filter: counted, not lost
                self.filtered[name] = self.filtered.get(name, 0) + 1
                return
            self._out.append(ev)
            self.received[name] = self.received.get(name, 0) + 1
        except Exception as exc:  # noqa: BLE001 - a bad record is counted and logged, never fatal
            self.decode_errors[name] = self.decode_errors.get(name, 0) + 1
            log.warning("decode error in %s record (%d bytes): %s", name, size, exc)

    def poll(self, timeout_ms: int = 100) -> list[Event]:
        """Wait up to `timeout_ms` for records; return what arrived, in ring order."""
        self._pump(timeout_ms)
        out, self._out = self._out, []
        return out

    def refresh_clock(self) -> None:
        """Re-read the boot-to-wall offset (wall clock may be stepped)."""
        self._ctx.boot_to_wall = boot_to_wall_ns()

    def lost(self) -> dict[str, int]:
        """Losses: per event kind, ring-buffer reservations that failed (counted in the
        kernel) and records the backlog had no room for; per hook (`missed <hook>`),
        program runs the kernel skipped because another probe was active on that CPU."""
        if self._bpf is None:
            return {}
        out: dict[str, int] = {}
        for k, v in self._bpf["lost"].items():
            if v.value:
                out[KIND_NAMES.get(k.value, f"kind{k.value}")] = v.value
        for kind, n in (self._drain.dropped.items() if self._drain else ()):
            name = KIND_NAMES.get(kind, f"kind{kind}")  # backlog full: lost all the same
            out[name] = out.get(name, 0) + n
        if self._progstats is not None:  # runs the kernel skipped (a probe already active)
            for prog, n in self._progstats.misses().items():
                key = f"missed {program_label(prog)}"
                out[key] = out.get(key, 0) + n
        return out

    def backlog_bytes(self) -> int:
        """Records read from the kernel and not yet decoded (bytes)."""
        return self._drain.backlog_bytes() if self._drain else 0

    def counters(self) -> dict[str, int]:
        """What the kernel saw but did not send (threads, folded repeats, ignored comms)."""
        if self._bpf is None:
            return {}
        out = {}
        for k, v in self._bpf["kcount"].items():
            if v.value:
                out[COUNTER_NAMES.get(k.value, f"counter{k.value}")] = v.value
        out.update({f"{k} filtered": v for k, v in self.filtered.items()})
        return out

    def close(self) -> None:
        if self._drain is not None:
            self._drain.close()
            self._drain = None
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None
