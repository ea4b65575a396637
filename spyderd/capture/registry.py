"""Self-registering probes: each probe module declares its BPF source, attach points and decoders.

The core never lists probes; it asks the registry. Adding an event kind means one
BPF file under `probes/` and one decoder module here (docs/probes.md).
"""

from __future__ import annotations

import importlib
import pkgutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import spyderd.capture.probes as probe_package
from spyderd.capture.config import CaptureConfig
from spyderd.model import Event

Decoder = Callable[[bytes, "DecodeContext"], Event]


@dataclass(frozen=True, slots=True)
class Settings:
    """What a probe's configuration makes of its source: `.rodata` values (CFG(name) in
    the C, -DCFG_name for bcc), hooks not to attach, a note for the status line."""

    values: dict[str, int] = field(default_factory=dict)
    skip: frozenset[str] = frozenset()
    note: str = ""


# (the capture section, hooks missing on this kernel) -> Settings
Configure = Callable[[CaptureConfig, frozenset[str]], Settings]
# (the capture section, hooks missing) -> {map name: {key: value}} written after the load
Maps = Callable[[CaptureConfig, frozenset[str]], dict[str, dict[Any, int]]]


class MapAccess(Protocol):
    """A loaded map by name (either loader): `update(key, value)`, `lookup`, `items`."""

    def update(self, key: bytes | int, value: bytes | int) -> None: ...
    def lookup(self, key: bytes | int) -> bytes | None: ...


class Loaded(Protocol):
    """What a probe's `setup` may use of the loaded programs, whichever loader."""

    def map(self, name: str) -> MapAccess: ...
    def prog_fd(self, name: str) -> int: ...


@dataclass(frozen=True, slots=True)
class AttachPoint:
    """One kernel hook: ("tracepoint", "sched:sched_process_exec") or ("raw_tracepoint", ...).

    A required hook missing on this kernel makes its probe unavailable; an optional one is
    listed in the probe's status line and the probe runs without it."""

    type: str
    name: str
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Probe:
    """A BPF source file, the hooks it needs, and the record kinds it emits."""

    name: str
    source: str  # file name under probes/
    attach: tuple[AttachPoint, ...]
    decoders: dict[int, tuple[str, Decoder]] = field(default_factory=dict)
    # C struct name -> the decoder's layout of it (checked against the objects' BTF)
    layouts: dict[str, struct.Struct] = field(default_factory=dict)
    configure: Configure | None = None
    maps: Maps | None = None
    # Runs in a forked child after attach; must cause one event of this probe's kinds from
    # that child or its children (status: "attached, self-test ok").
    selftest: Callable[[], None] | None = None
    # Runs once after load and map fill, before attach, as setup(loaded, capture section,
    # decode context): fills maps and tail-call tables (`Loaded`), and keeps state its
    # decoders need in `decode_context.state[probe name]`.
    # ConfigError propagates (bad setting); any other exception marks the probe failed.
    setup: Callable[[Loaded, CaptureConfig, DecodeContext], None] | None = None
    # Probes attach in (rank, name) order. Programs on one tracepoint run in attach order,
    # so rank 0 (the process probe) records an exec before any other probe's record about
    # that exec (files: download then run) and the graph has the new image when it comes.
    rank: int = 1

    @property
    def object(self) -> str:
        """The CO-RE object's file name under probes/build/."""
        return self.source.removesuffix(".c") + ".o"


@dataclass(slots=True)
class DecodeContext:
    """What decoders need besides the bytes: the boot-to-wall clock offset, probe state.

    A decoder may return None for a record that a finer user-space filter drops (counted
    as `<kind> filtered` in `Capture.counters()`, never silently)."""

    boot_to_wall: int = 0
    state: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, Probe] = {}


def register(probe: Probe) -> Probe:
    """Add a probe; called at import time by each probe module."""
    _REGISTRY[probe.name] = probe
    return probe


def probes() -> list[Probe]:
    """Every registered probe: each module of `spyderd.capture.probes` registers itself."""
    for mod in pkgutil.iter_modules(probe_package.__path__):
        importlib.import_module(f"spyderd.capture.probes.{mod.name}")
    return sorted(_REGISTRY.values(), key=lambda p: (p.rank, p.name))


def kind_names() -> dict[int, str]:
    """Record kind number -> event kind name, over every registered probe: the one table
    of event kinds (the C side is checked against it by tests/capture/test_event_kinds.py)."""
    return {k: name for p in probes() for k, (name, _) in p.decoders.items()}
