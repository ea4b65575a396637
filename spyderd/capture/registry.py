"""Self-registering probes: each probe module declares its BPF source, attach points and decoders.

The core never lists probes; it asks the registry. Adding an event kind means one
BPF file under `probes/` and one decoder module here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from spyderd.model import Event

Decoder = Callable[[bytes, "DecodeContext"], Event]


@dataclass(frozen=True, slots=True)
class AttachPoint:
    """One kernel hook: ("tracepoint", "sched:sched_process_exec") or ("raw_tracepoint", ...)."""

    type: str
    name: str


@dataclass(frozen=True, slots=True)
class Probe:
    """A BPF source file, the hooks it needs, and the record kinds it emits."""

    name: str
    source: str  # file name under probes/
    attach: tuple[AttachPoint, ...]
    decoders: dict[int, tuple[str, Decoder]] = field(default_factory=dict)
    offsets: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(slots=True)
class DecodeContext:
    """What decoders need besides the bytes: the boot-to-wall clock offset."""

    boot_to_wall: int = 0


_REGISTRY: dict[str, Probe] = {}


def register(probe: Probe) -> Probe:
    """Add a probe; called at import time by each probe module."""
    _REGISTRY[probe.name] = probe
    return probe


def probes() -> list[Probe]:
    """Every registered probe: each `spyderd/capture/probe_*.py` module registers itself."""
    import importlib
    import pkgutil

    import spyderd.capture as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name.startswith("probe_"):
            importlib.import_module(f"spyderd.capture.{mod.name}")
    return sorted(_REGISTRY.values(), key=lambda p: p.name)
