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
from dataclasses import dataclass, field
from pathlib import Path

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
        self._shared: dict[str, int] = {}

    def available(self, probe: Probe) -> str:
        """Why this probe's object cannot be used ("" if it can)."""
        path = self.object_dir / probe.object
        return "" if path.exists() else f"object {path} not built"

    def load(self, probe: Probe, hooks: list[AttachPoint], values: dict[str, int]) -> str:
        """Open and load one probe's object with only `hooks`' programs; "" or why not."""
        try:
            obj = BpfObject(self.lib, str(self.object_dir / probe.object))
        except OSError as exc:
            return str(exc)
        wanted = {hook_key(a) for a in hooks}
        loaded = _Loaded(obj)
        with StderrCapture() as cap:
            try:
                for prog in obj.programs():
                    hook = hook_of(prog.section)
                    on = hook is None or hook in wanted
                    obj.set_autoload(prog, on)
                    if on and hook is not None:
                        loaded.attach.append(prog)
                obj.set_rodata(values)
                self._share(obj)
                obj.load()
            except OSError as exc:
                failure: Exception | None = exc
            else:
                failure = None
        if failure is not None:
            obj.close()
            log.error("probe %s: libbpf load failed: %s\n%s", probe.name, failure,
                      cap.text[-4000:])
            return reason(cap.text, failure)
        if not self._shared:  # our own descriptors: the first object may be unloaded
            self._shared = {m: os.dup(obj.map(m).fd) for m in SHARED_MAPS if obj.has_map(m)}
        self.objects[probe.name] = loaded
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
        for name in list(self.objects):
            self.unload(name)
        for fd in self._shared.values():
            os.close(fd)
        self._shared = {}
