"""The CO-RE loader: the probes' objects compiled at build time, loaded with libbpf.

Each probe is its own object (`probes/build/<name>.bpf.o`), so a probe the verifier
rejects fails alone. The maps every probe shares (the `events` ring buffer, the loss and
kernel counters, the ignored commands) are created by the first object loaded and reused
by the others. Per object: programs for hooks this kernel lacks, or that the configuration
leaves out, are not loaded (autoload off); configuration goes into `.rodata`.
"""

from __future__ import annotations

import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from spyderd.capture.integrity import Attachment, BpfSys
from spyderd.capture.libbpf import BpfObject, Libbpf, LibbpfError, MapView, Program
from spyderd.capture.load_bcc import StderrCapture
from spyderd.capture.registry import AttachPoint, Probe

log = logging.getLogger("spyderd.capture")
SHARED_MAPS = ("events", "lost", "kcount", "ignore_comm")
_LIBBPF_LINE = re.compile(r"^libbpf: (?:prog '[^']*': )?(.*)$", re.MULTILINE)


def hook_of(section: str) -> str | None:
    """The hook a program's ELF section names, as AttachPoint names it (raw tracepoints
    by event name only); None for tail-called programs without a target."""
    kind, _, target = section.partition("/")
    if not target:
        return None
    if kind in ("tracepoint", "tp"):
        return target.replace("/", ":", 1)
    if kind in ("raw_tp", "raw_tracepoint"):
        return target
    return None


def hook_key(a: AttachPoint) -> str:
    return a.name.partition(":")[2] if a.type == "raw_tracepoint" else a.name


def reason(text: str, exc: Exception) -> str:
    """The telling part of a failed load: the verifier's last line, or libbpf's."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    verifier = [ln for ln in lines if not ln.startswith("libbpf:") and ln[0].isalpha()]
    libbpf = [m.group(1) for m in _LIBBPF_LINE.finditer(text)]
    core = [ln for ln in libbpf if "relo" in ln.lower() or "CO-RE" in ln]
    pick = core[:1] or verifier[-1:] or libbpf[:1]
    return f"{exc}: {pick[0]}" if pick else str(exc)


@dataclass(slots=True)
class _Loaded:
    obj: BpfObject
    attach: list[Program] = field(default_factory=list)


class LibbpfLoader:
    """Opens, configures, loads and attaches the probes' CO-RE objects."""

    name = "libbpf"

    def __init__(self, object_dir: Path, *, ring_pages: int) -> None:
        self.object_dir = object_dir
        self.ring_pages = ring_pages
        self.lib = Libbpf()
        self.objects: dict[str, _Loaded] = {}
        self._pending: dict[str, tuple[_Loaded, Probe, list[AttachPoint], dict[str, int]]] = {}
        self._shared: dict[str, int] = {}

    def available(self, probe: Probe) -> str:
        """Why this probe's object cannot be used ("" if it can)."""
        path = self.object_dir / probe.object
        return "" if path.exists() else f"object {path} not built"

    def prepare(self, probe: Probe, hooks: list[AttachPoint], values: dict[str, int]) -> str:
        """Open one probe's object: only `hooks`' programs loaded, `.rodata` written;
        "" or why not."""
        try:
            obj = BpfObject(self.lib, str(self.object_dir / probe.object))
        except OSError as exc:
            return str(exc)
        wanted = {hook_key(a) for a in hooks}
        loaded = _Loaded(obj)
        try:
            for prog in obj.programs():
                hook = hook_of(prog.section)
                on = hook is None or hook in wanted
                obj.set_autoload(prog, on)
                if on and hook is not None:
                    loaded.attach.append(prog)
            obj.set_rodata(values)
        except OSError as exc:
            obj.close()
            return str(exc)
        self._pending[probe.name] = (loaded, probe, hooks, values)
        return ""

    def load_all(self) -> dict[str, str]:
        """Load the prepared objects: the first alone (it creates the shared maps), the
        rest side by side (the verifier runs in the loading thread; ctypes lets go of the
        GIL). Returns probe name -> why it failed."""
        failed: dict[str, str] = {}
        # the smallest object first (it only has to create the shared maps), then the rest
        pending = sorted(self._pending, key=lambda n: os.path.getsize(
            self.object_dir / self._pending[n][1].object))
        while pending and not self._shared:
            name = pending.pop(0)
            why = self._load_one(name)
            if why:
                failed[name] = why
        if not pending:
            return failed
        with StderrCapture() as cap, ThreadPoolExecutor(len(pending)) as pool:
            results = dict(zip(pending, pool.map(self._load_quiet, pending), strict=True))
        for name, ok in results.items():
            if not ok:  # again alone, for a log of its own
                loaded, probe, hooks, values = self._pending[name]
                loaded.obj.close()
                self.prepare(probe, hooks, values)
                why = self._load_one(name)
                if why:
                    failed[name] = why
        if failed and cap.text:
            log.debug("libbpf output of the parallel load:\n%s", cap.text[-4000:])
        return failed

    def _load_quiet(self, name: str) -> bool:
        loaded = self._pending[name][0]
        try:
            self._share(loaded.obj)
            loaded.obj.load()
        except OSError:
            return False
        self.objects[name] = loaded
        return True

    def _load_one(self, name: str) -> str:
        loaded = self._pending[name][0]
        with StderrCapture() as cap:
            try:
                self._share(loaded.obj)
                loaded.obj.load()
            except OSError as exc:
                failure: Exception | None = exc
            else:
                failure = None
        if failure is not None:
            loaded.obj.close()
            log.error("probe %s: libbpf load failed: %s\n%s", name, failure, cap.text[-4000:])
            return reason(cap.text, failure)
        if not self._shared:  # our own descriptors: the first object may be unloaded
            self._shared = {m: os.dup(loaded.obj.map(m).fd) for m in SHARED_MAPS
                            if loaded.obj.has_map(m)}
        self.objects[name] = loaded
        return ""

    def _share(self, obj: BpfObject) -> None:
        if self._shared:
            for name, fd in self._shared.items():
                if obj.has_map(name):
                    obj.reuse_map(name, fd)
        elif obj.has_map("events"):
            obj.set_max_entries("events", self.ring_pages * 4096)

    def attach(self, probe: Probe) -> str:
        """Attach the loaded programs of one probe; "" or why not (then it is unloaded)."""
        loaded = self.objects[probe.name]
        try:
            for prog in loaded.attach:
                loaded.obj.attach(prog)
        except LibbpfError as exc:
            self.unload(probe.name)
            return str(exc)
        return ""

    def attachments(self, sys: BpfSys) -> list[Attachment]:
        """Every attachment of the probes with the kernel's ids, for the integrity check
        (`spyderd.capture.integrity`); one whose ids cannot be read is left out."""
        out = []
        for name, loaded in self.objects.items():
            for prog, link, fd in loaded.obj.links():
                a = self._attachment(sys, name, loaded.obj, prog, link, fd)
                if a is not None:
                    out.append(a)
        return out

    def _attachment(self, sys: BpfSys, probe: str, obj: BpfObject, prog: Program,
                    link: int, fd: int) -> Attachment | None:
        info = sys.info(fd)
        if info is not None:
            return Attachment(probe=probe, program=prog.name, hook=prog.section,
                              kind="link", fd=fd, link_id=info[1], prog_id=info[2],
                              handle=link)
        # kernels before perf links (5.15): libbpf's link holds the perf event itself
        own = sys.info(obj.prog_fd(prog.name))
        if own is None or own[1] not in (sys.perf_programs(fd) or []):
            return None
        return Attachment(probe=probe, program=prog.name, hook=prog.section, kind="perf",
                          fd=fd, prog_id=own[1], handle=link)

    def reattach(self, sys: BpfSys, a: Attachment) -> Attachment:
        """Attach a detached or replaced program again (`ProbeIntegrity.reattach`)."""
        obj = self.objects[a.probe].obj
        prog = next(p for p, link, _ in obj.links() if link == a.handle)
        link, fd = obj.reattach(a.handle, ours=a.state == "replaced")
        fresh = self._attachment(sys, a.probe, obj, prog, link, fd)
        if fresh is None:
            raise LibbpfError(5, f"attached {prog.name} again, but cannot read its ids")
        return fresh

    def unload(self, name: str) -> None:
        loaded = self.objects.pop(name, None)
        if loaded is not None:
            loaded.obj.close()

    def map(self, name: str) -> MapView:
        for loaded in self.objects.values():
            if loaded.obj.has_map(name):
                return loaded.obj.map(name)
        raise KeyError(f"no loaded probe has a map {name!r}")

    def prog_fd(self, name: str) -> int:
        for loaded in self.objects.values():
            try:
                return loaded.obj.prog_fd(name)
            except KeyError:
                continue
        raise KeyError(f"no loaded probe has a program {name!r}")

    def programs(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for loaded in self.objects.values():
            out.update(loaded.obj.loaded_programs())
        return out

    def ring(self) -> tuple[int, int]:
        return self.map("events").fd, self.ring_pages * 4096

    def close(self) -> None:
        """Detach everything, then close. Links are destroyed side by side: each detach
        waits for an RCU grace period, and concurrent waiters share one."""
        links = [link for loaded in self.objects.values() for link in loaded.obj.take_links()]
        if links:
            with ThreadPoolExecutor(min(32, len(links))) as pool:
                list(pool.map(self.lib.lib.bpf_link__destroy, links))
        for name in list(self.objects):
            self.unload(name)
        for fd in self._shared.values():
            os.close(fd)
        self._shared = {}
