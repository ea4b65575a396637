"""Capture: picks the probes and hooks this kernel has, loads them with libbpf (CO-RE
objects built with the package) or bcc (the fallback: no BTF, or `capture.loader: bcc`),
attaches, self-tests, and decodes what the ring buffer delivers.

Neither loader leaks above this module; everything above receives typed `Event`s.

Robustness rules:
- a hook is checked before loading: a missing optional hook is reported per hook while the
  rest of the probe runs, a missing required hook makes only that probe unavailable;
- a probe that does not load or attach is reported `failed` while the others run (libbpf:
  one object per probe; bcc: the culprit is found in the compiler's or loader's message,
  else each probe is tried alone);
- after attach a forked child triggers one cheap event per probe (the self-test), so
  `spyderctl status` says which probes really deliver;
- the attachments are checked at the watchdog tick (`check_probes`): one someone
  detached or replaced is reported, shown on its probe's status line and attached again
  (libbpf; bcc's are reported only).
"""

from __future__ import annotations

import logging
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spyderd.capture import ringbuf, tamper
from spyderd.capture.btf import BTF, VMLINUX_BTF
from spyderd.capture.config import LOADERS, CaptureConfig
from spyderd.capture.integrity import BpfSys, Fault, ProbeIntegrity
from spyderd.capture.libbpf import CallbackRing, KernelBtf, Libbpf
from spyderd.capture.load_bcc import BccLoader, LoadError, blame
from spyderd.capture.load_libbpf import LibbpfLoader, hook_key
from spyderd.capture.progstats import ProgStats, program_label
from spyderd.capture.records import COUNTER_NAMES
from spyderd.capture.registry import (
    AttachPoint,
    DecodeContext,
    Probe,
    Settings,
    kind_names,
    probes,
)
from spyderd.capture.scope import enter_scope, kernel_scope
from spyderd.errors import CaptureError, ConfigError, SpyderError
from spyderd.model import Event

log = logging.getLogger("spyderd.capture")
TRACEFS = Path("/sys/kernel/tracing")
_KIND = struct.Struct("<I")
SELFTEST_TIMEOUT = 3.0
# Compile-time bounds of the CO-RE objects (probes/process.bpf.c MAX_ARGS, ARGBUF).
CORE_MAX_ARGS, CORE_ARGBUF = 64, 4096


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
    integrity: str = ""  # "DETACHED at 17:02:11 (link 42 detached ...), re-attached"

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
        if self.integrity:
            out += f"; {self.integrity}"
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "hooks": self.hooks,
                "missing": self.missing, "selftest": self.selftest, "note": self.note,
                "integrity": self.integrity, "text": self.text()}


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


def objects_dir(source_dir: Path) -> Path:
    """Where the CO-RE objects are: $SPYDERD_OBJECTS_DIR, else <probes>/build."""
    env = os.environ.get("SPYDERD_OBJECTS_DIR")
    return Path(env) if env else source_dir / "build"


def choose_loader(loader: str, have_btf: bool, object_dir: Path) -> tuple[str, str]:
    """(loader, why bcc) from `capture.loader` or $SPYDERD_LOADER: `auto` picks libbpf
    where the kernel has BTF and the objects are built, bcc otherwise."""
    env = os.environ.get("SPYDERD_LOADER")
    want = env or loader or "auto"
    if want not in LOADERS:
        raise ConfigError(f"capture.loader: {want!r} is not one of {', '.join(LOADERS)}")
    if want == "libbpf" and not have_btf:
        raise CaptureError("capture.loader: libbpf needs kernel BTF (/sys/kernel/btf/vmlinux)")
    if want == "bcc":
        return "bcc", "forced by " + ("SPYDERD_LOADER" if env else "capture.loader")
    if want == "auto" and not (have_btf and any(object_dir.glob("*.bpf.o"))):
        why = f"no CO-RE objects in {object_dir}" if have_btf else "the kernel has no BTF"
        log.warning("loading the probes with bcc: %s", why)
        return "bcc", why
    return "libbpf", ""


@dataclass(slots=True)
class Plan:
    """One probe as it will be loaded: the hooks to attach and its configuration values."""

    probe: Probe
    hooks: list[AttachPoint]
    values: dict[str, int]


PROC_PID_INIT_INO = 0xEFFFFFFC  # the initial pid namespace's inode


def own_pidns() -> tuple[int, int]:
    """(nsfs dev, inode) of this process's pid namespace, (0, 0) for the initial one: the
    probes then compare pids as this process sees them (bpf_get_ns_current_pid_tgid)."""
    try:
        st = os.stat("/proc/self/ns/pid")
    except OSError:
        return 0, 0
    return (0, 0) if st.st_ino == PROC_PID_INIT_INO else (st.st_dev, st.st_ino)


def proc_children() -> set[int]:
    """This thread's children as /proc numbers them: the pids the probes report where
    /proc is the initial namespace's (spyderd in a container with the host's /proc)."""
    try:
        with open("/proc/thread-self/children") as f:
            return {int(x) for x in f.read().split()}
    except (OSError, ValueError):
        return set()


def _comm_key(name: str) -> bytes:
    return name.encode()[:15].ljust(16, b"\0")


class Capture:
    """Compiles and attaches the available probes; `poll()` returns decoded events."""

    def __init__(self, config: CaptureConfig | None = None, *, ignore_tgid: int = 0,
                 source_dir: Path | None = None) -> None:
        self.config = config or CaptureConfig()
        self.ring_pages = self.config.ring_buffer_pages
        self.max_args = self.config.max_args
        self.arg_bytes = 1 << max(8, (self.config.arg_bytes - 1).bit_length())  # power of two
        self.ignore_tgid = ignore_tgid
        self.batch_s = max(0.0, float(self.config.batch_ms)) / 1000.0
        self.source_dir = source_dir or probes_dir()
        self.object_dir = objects_dir(self.source_dir)
        self.loader_name = ""
        self.why_bcc = ""
        self.status: dict[str, ProbeStatus] = {}
        self.decode_errors: dict[str, int] = {}
        self.filtered: dict[str, int] = {}  # records a decoder dropped (user-space filter)
        self.received: dict[str, int] = {}
        self._decoders: dict[int, tuple[str, object]] = {}
        self._kinds = kind_names()
        self._ctx = DecodeContext(boot_to_wall=boot_to_wall_ns())
        self._out: list[Event] = []
        self._loader: Any = None  # LibbpfLoader | BccLoader once started
        self._ring: ringbuf.RingReader | None = None
        self._cbring: CallbackRing | None = None
        self._drain: ringbuf.Drain | None = None
        self._progstats: ProgStats | None = None
        self._chosen: list[Probe] = []
        self.integrity: ProbeIntegrity | None = None

    # -- start -----------------------------------------------------------------------------

    def start(self) -> dict[str, ProbeStatus]:
        """Select, load, attach and self-test; raises CaptureError only when nothing runs."""
        have_btf = Path(VMLINUX_BTF).exists()
        self.loader_name, self.why_bcc = choose_loader(self.config.loader, have_btf,
                                                         self.object_dir)
        # bcc needs field offsets from BTF (parsed here, in Python); libbpf parses it itself
        btf = BTF.load() if have_btf and self.loader_name == "bcc" else None
        plans = self._select(probes())
        if not plans:
            raise CaptureError("no probe can attach on this kernel: " + self._reasons())
        if self.loader_name == "libbpf":
            plans = self._load_libbpf(plans)
        else:
            plans = self._load_bcc(plans, btf)
        self._chosen = [p.probe for p in plans]
        for plan in plans:
            self._decoders.update(plan.probe.decoders)
        self._fill_maps(plans)
        plans = self._setup(plans)
        plans = self._attach(plans)
        if not plans:
            raise CaptureError("no probe loads and attaches: " + self._reasons())
        self._chosen = [p.probe for p in plans]
        self.integrity = self._integrity(plans)
        self._progstats = self._prog_stats(btf) if have_btf else None
        self._open_ring()
        if self.config.self_test:
            self.self_test()
        if self._ring is not None:  # after the self-test: it forks, better without threads
            backlog = int(self.config.backlog_mb) << 20
            self._drain = ringbuf.Drain(self._ring, batch_s=self.batch_s, max_bytes=backlog)
        self.refresh_self_tids()
        return self.status

    def _integrity(self, plans: list[Plan]) -> ProbeIntegrity:
        """The attachments as made, with the kernel's ids, for `check_probes`."""
        sys = BpfSys()
        owner = {hook_key(a): plan.probe.name for plan in plans for a in plan.hooks}
        atts = self._loader.attachments(sys)
        for a in atts:
            a.probe = a.probe or owner.get(a.hook, "?")
        if isinstance(self._loader, LibbpfLoader):
            loader = self._loader
            return ProbeIntegrity(atts, sys, lambda a: loader.reattach(sys, a))
        return ProbeIntegrity(atts, sys, None, "bcc: detached tracepoints are reported, "
                              "not attached again")

    def check_probes(self) -> list[Fault]:
        """Check every attachment (`spyderd.capture.integrity`); new faults, each shown on
        its probe's status line."""
        if self.integrity is None or self._loader is None:
            return []
        faults = self.integrity.check()
        if faults:
            for name, note in self.integrity.probe_notes().items():
                if name in self.status:
                    self.status[name].integrity = note
        return faults

    def _prog_stats(self, btf: BTF | None) -> ProgStats:
        if btf is not None:
            return ProgStats(btf, self._loader.programs())
        kbtf = KernelBtf(self._loader.lib)
        try:
            return ProgStats(kbtf, self._loader.programs())
        finally:
            kbtf.close()

    @property
    def running(self) -> bool:
        """Probes are loaded (maps can be read)."""
        return self._loader is not None

    def loader_info(self) -> dict[str, str]:
        """Which loader runs the probes, for `spyderctl status`."""
        if self.loader_name == "libbpf":
            return {"name": "libbpf", "version": Libbpf().version(),
                    "text": f"libbpf {Libbpf().version()}, CO-RE objects in {self.object_dir}"}
        if self.loader_name == "bcc":
            return {"name": "bcc", "version": "",
                    "text": f"bcc (compiled at start from {self.source_dir}): {self.why_bcc}"}
        return {}

    def _reasons(self) -> str:
        return "; ".join(f"{s.name}: {s.reason}" for s in self.status.values())

    def _common_values(self) -> dict[str, int]:
        max_args, arg_bytes = self.max_args, self.arg_bytes
        if self.loader_name == "libbpf" and (max_args > CORE_MAX_ARGS
                                             or arg_bytes > CORE_ARGBUF):
            max_args, arg_bytes = min(max_args, CORE_MAX_ARGS), min(arg_bytes, CORE_ARGBUF)
            log.warning("capture.max_args/arg_bytes above the CO-RE objects' limits (%d, %d):"
                        " using %d, %d", CORE_MAX_ARGS, CORE_ARGBUF, max_args, arg_bytes)
        dev, ino = own_pidns() if self.ignore_tgid else (0, 0)
        return {"ignore_tgid": self.ignore_tgid, "self_pidns_dev": dev, "self_pidns_ino": ino,
                "ignore_comms": 1 if self.config.ignore_comms else 0,
                "max_args": max_args, "arg_bytes": arg_bytes,
                **kernel_scope(self.config.scope)}

    def _select(self, candidates: list[Probe]) -> list[Plan]:
        """Per probe: which hooks exist, what its configuration makes of it."""
        plans: list[Plan] = []
        disabled = set(self.config.disable)
        for p in candidates:
            if p.name in disabled:
                self.status[p.name] = ProbeStatus(p.name, "disabled", "capture.disable")
                continue
            present = [a for a in p.attach if tracepoint_exists(a.name)]
            missing = [a for a in p.attach if a not in present]
            required = [a.name for a in missing if not a.optional]
            if required or not present:
                why = ("missing hooks: " + ", ".join(required)) if required else (
                    "none of its hooks exist")
                self._unavailable(p, why)
                continue
            missing_names = frozenset(a.name for a in missing)
            settings = p.configure(self.config, missing_names) if p.configure else Settings()
            hooks = [a for a in present if a.name not in settings.skip]
            plans.append(Plan(p, hooks, {**self._common_values(), **settings.values}))
            self.status[p.name] = ProbeStatus(
                p.name, "attached", hooks=[a.name for a in hooks],
                missing=sorted(missing_names), note=settings.note)
            if missing:
                log.warning("probe %s: hooks unavailable on this kernel: %s%s", p.name,
                            ", ".join(hook_labels(sorted(missing_names))),
                            f" ({settings.note})" if settings.note else "")
        return plans

    def _unavailable(self, p: Probe, why: str) -> None:
        self.status[p.name] = ProbeStatus(p.name, "unavailable", why)
        log.warning("probe %s unavailable: %s", p.name, why)

    def _fail(self, p: Probe, why: str) -> None:
        self.status[p.name] = ProbeStatus(p.name, "failed", why[:300])
        log.error("probe %s failed: %s", p.name, why)

    # -- libbpf ----------------------------------------------------------------------------

    def _load_libbpf(self, plans: list[Plan]) -> list[Plan]:
        loader = LibbpfLoader(self.object_dir, ring_pages=self.ring_pages)
        self._loader = loader
        good = []
        for plan in plans:
            why = loader.available(plan.probe) or loader.prepare(plan.probe, plan.hooks,
                                                                 plan.values)
            if why:
                self._fail(plan.probe, why)
            else:
                good.append(plan)
        failed = loader.load_all()
        for plan in good:
            if plan.probe.name in failed:
                self._fail(plan.probe, failed[plan.probe.name])
        return [p for p in good if p.probe.name not in failed]

    # -- bcc -------------------------------------------------------------------------------

    def _load_bcc(self, plans: list[Plan], btf: BTF | None) -> list[Plan]:
        loader = BccLoader(self.source_dir, btf, ring_pages=self.ring_pages,
                           max_args=self.max_args, arg_bytes=self.arg_bytes)
        self._loader = loader
        texts: dict[str, str] = {}
        good: list[Plan] = []
        for plan in plans:
            try:
                text = (self.source_dir / plan.probe.source).read_text()
            except OSError as exc:
                self._unavailable(plan.probe, f"source {plan.probe.source}: {exc.strerror}")
                continue
            why = loader.check(plan.probe, text)
            if why:
                self._unavailable(plan.probe, why)
                continue
            texts[plan.probe.name] = text
            good.append(plan)
        values: dict[str, int] = {}
        for plan in good:
            values.update(plan.values)
        return self._compile(loader, good, texts, values)

    def _compile(self, loader: BccLoader, plans: list[Plan], texts: dict[str, str],
                 values: dict[str, int]) -> list[Plan]:
        """One program for all probes. If it fails, the probe at fault is found from the
        compiler's or loader's message (or, failing that, by trying each probe alone),
        reported `failed`, and the rest is compiled again."""
        good = list(plans)
        while good:
            chosen = [p.probe for p in good]
            err = loader.try_load(chosen, texts, values)
            if err is None:
                return good
            culprit = blame(err, chosen, texts, loader.head_lines())
            if culprit is None:
                log.warning("BPF program failed; trying each probe alone: %s", err.text)
                return self._compile_alone(loader, good, texts, values)
            self._bcc_fail(culprit, err)
            good = [p for p in good if p.probe is not culprit]
        raise CaptureError("no probe compiles and attaches: " + self._reasons())

    def _compile_alone(self, loader: BccLoader, plans: list[Plan], texts: dict[str, str],
                       values: dict[str, int]) -> list[Plan]:
        good: list[Plan] = []
        for plan in plans:
            err = loader.try_load([plan.probe], texts, values)
            if err is None:
                loader.close()
                good.append(plan)
            else:
                self._bcc_fail(plan.probe, err)
        if not good or loader.try_load([p.probe for p in good], texts, values) is not None:
            raise CaptureError("no probe compiles and attaches: " + self._reasons())
        return good

    def _bcc_fail(self, p: Probe, err: LoadError) -> None:
        self._fail(p, err.reason())
        log.error("probe %s: bcc output:\n%s", p.name, err.detail[-4000:])

    # -- after the load --------------------------------------------------------------------

    def _fill_maps(self, plans: list[Plan]) -> None:
        """Write the in-kernel filter maps from the configuration."""
        comms = self.config.ignore_comms
        entries: dict[str, dict[Any, int]] = {"ignore_comm": {_comm_key(c): 1 for c in comms}}
        for plan in plans:
            if plan.probe.maps:
                st = self.status[plan.probe.name]
                entries.update(plan.probe.maps(self.config, frozenset(st.missing)))
        for name, values in entries.items():
            if values:
                table = self._loader.map(name)
                for key, value in values.items():
                    table.update(key, value)

    def _setup(self, plans: list[Plan]) -> list[Plan]:
        """Each probe's post-load hook; a failing one marks only that probe failed."""
        good = []
        for plan in plans:
            setup = plan.probe.setup
            try:
                if setup is not None:
                    setup(self._loader, self.config, self._ctx)
                good.append(plan)
            except SpyderError:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded in the probe's status
                self._fail(plan.probe, f"setup: {type(exc).__name__}: {exc}")
                if isinstance(self._loader, LibbpfLoader):
                    self._loader.unload(plan.probe.name)
        return good

    def _attach(self, plans: list[Plan]) -> list[Plan]:
        """Attach each probe's hooks; one that fails is reported and left out."""
        if isinstance(self._loader, LibbpfLoader):
            good = []
            for plan in plans:
                why = self._loader.attach(plan.probe)
                if why:
                    self._fail(plan.probe, f"attach: {why}")
                else:
                    good.append(plan)
            return good
        hooks = [a for plan in plans for a in plan.hooks]
        errors = self._loader.attach(hooks)
        good = []
        for plan in plans:
            bad = [errors[k] for a in plan.hooks if (k := hook_key(a)) in errors]
            if bad:
                self._fail(plan.probe, f"attach: {bad[0]}")
            else:
                good.append(plan)
        return good

    def _open_ring(self) -> None:
        """Read the ring buffer from its memory map (no ctypes callback per record) where
        that is safe, else through libbpf's reader."""
        fd, size = self._loader.ring()
        if ringbuf.usable():
            try:
                self._ring = ringbuf.RingReader(fd, size)
                return
            except (OSError, ValueError) as exc:
                log.warning("ring buffer not mappable (%s); using libbpf's reader", exc)
        self._cbring = CallbackRing(Libbpf(), fd, self._decode)

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
        elif self._cbring is not None and self._out:
            self._cbring.consume()
        elif self._cbring is not None:
            self._cbring.poll(timeout_ms)

    # -- self-test -------------------------------------------------------------------------

    def self_test(self, timeout: float = SELFTEST_TIMEOUT) -> None:
        """Fork a child that runs each probe's trigger; wait for their events (kept for poll)."""
        tests = [p for p in self._chosen if p.selftest]
        if not tests:
            return
        before = proc_children()
        child = child_local = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                enter_scope(self.config.scope)  # else the kernel drops its events
                for p in tests:
                    try:
                        p.selftest()  # type: ignore[misc]
                    except BaseException:  # noqa: BLE001 - a failed trigger shows as failed
                        code = 1
            finally:
                os._exit(code)
        new = proc_children() - before  # before waitpid: a zombie is still listed
        child = new.pop() if len(new) == 1 else child  # events carry /proc's numbering
        os.waitpid(child_local, 0)
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

    def _decode(self, buf: bytes) -> None:
        size = len(buf)
        kind = _KIND.unpack_from(buf, 0)[0] if size >= 4 else 0
        entry = self._decoders.get(kind)
        name = entry[0] if entry else self._kinds.get(kind, f"kind{kind}")
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

    def refresh_self_tids(self) -> None:
        """Keep the kernel probe's `self_tids` map (and the decoder's copy) equal to this
        daemon's threads: a signal to any of them is a signal to spyderd."""
        try:
            tids = {int(t) for t in os.listdir("/proc/self/task")}
        except OSError:
            return
        known = self._ctx.state.get("self_tids", set())
        if tids == known or self._loader is None:
            return
        try:
            table = self._loader.map("self_tids")
        except KeyError:  # kernel probe not loaded
            return
        for tid in known - tids:
            table.delete(tid)
        for tid in tids - known:
            table.update(tid, 1)
        self._ctx.state["self_tids"] = tids

    def refresh_clock(self) -> None:
        """Re-read the boot-to-wall offset (wall clock may be stepped)."""
        self._ctx.boot_to_wall = boot_to_wall_ns()

    def lost(self) -> dict[str, int]:
        """Losses: per event kind, ring-buffer reservations that failed (counted in the
        kernel) and records the backlog had no room for; per hook (`missed <hook>`),
        program runs the kernel skipped because another probe was active on that CPU."""
        if self._loader is None:
            return {}
        out: dict[str, int] = {}
        for k, v in self._loader.map("lost").int_items():
            if v:
                out[self._kinds.get(k, f"kind{k}")] = v
        for kind, n in (self._drain.dropped.items() if self._drain else ()):
            name = self._kinds.get(kind, f"kind{kind}")  # backlog full: lost all the same
            out[name] = out.get(name, 0) + n
        if self._progstats is not None:  # runs the kernel skipped (a probe already active)
            for prog, n in self._progstats.misses().items():
                key = f"missed {program_label(prog)}"
                out[key] = out.get(key, 0) + n
        return out

    def previous_self_signal(self) -> Any:
        """The last signal the kernel saw aimed at the previous daemon on this state
        directory (`spyderd.capture.tamper.SelfSignal`), or None: for the gap report."""
        return self._ctx.state.get("self_signal_before")

    def _release_self_signal(self) -> None:
        pin = self._ctx.state.pop("self_signal_pin", None)
        if pin is None or self._loader is None:
            return
        path, table = pin
        last = tamper.release(table, Path(path), self._ctx.boot_to_wall)
        if last is not None:
            log.info("last signal received: %d from %s[%d] (uid %d)", last.signal,
                     last.sender_comm, last.sender_pid, last.sender_uid)

    def backlog_bytes(self) -> int:
        """Records read from the kernel and not yet decoded (bytes)."""
        return self._drain.backlog_bytes() if self._drain else 0

    def counters(self) -> dict[str, int]:
        """What the kernel saw but did not send (threads, folded repeats, ignored comms)."""
        if self._loader is None:
            return {}
        out = {}
        for k, v in self._loader.map("kcount").int_items():
            if v:
                out[COUNTER_NAMES.get(k, f"counter{k}")] = v
        out.update({f"{k} filtered": v for k, v in self.filtered.items()})
        return out

    def close(self) -> None:
        self._release_self_signal()
        self.integrity = None
        if self._drain is not None:
            self._drain.close()
            self._drain = None
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._cbring is not None:
            self._cbring.close()
            self._cbring = None
        if self._loader is not None:
            self._loader.close()
            self._loader = None
