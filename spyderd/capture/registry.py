"""Self-registering probes: each probe module declares its BPF source, attach points and decoders.

The core never lists probes; it asks the registry. Adding an event kind means one
BPF file under `probes/` and one decoder module here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spyderd.model import Event

Decoder = Callable[[bytes, "DecodeContext"], Event]
# (capture options, hooks missing on this kernel) -> (extra cflags, note for the status line)
Configure = Callable[[dict[str, Any], frozenset[str]], tuple[list[str], str]]
# (capture options, hooks missing) -> {map name: {key: value}} written after the load
Maps = Callable[[dict[str, Any], frozenset[str]], dict[str, dict[Any, int]]]


@dataclass(frozen=True, slots=True)
class AttachPoint:
    """One kernel hook: ("tracepoint", "sched:sched_process_exec") or ("raw_tracepoint", ...)."""

    type: str
    name: str

    @property
    def guard(self) -> str:
        """Macro defined (-DHAVE_...=1) when the hook exists on this kernel. A probe whose
        source wraps the hook in `#ifdef` of it keeps running without the hook; a hook
        used unguarded is required, and the whole probe is unavailable without it."""
        return "HAVE_" + "".join(c if c.isalnum() else "_" for c in self.name).upper()


@dataclass(frozen=True, slots=True)
class Probe:
    """A BPF source file, the hooks it needs, and the record kinds it emits."""

    name: str
    source: str  # file name under probes/
    attach: tuple[AttachPoint, ...]
    decoders: dict[int, tuple[str, Decoder]] = field(default_factory=dict)
    offsets: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Fields that some kernels lack (e.g. loginuid without CONFIG_AUDIT): defined only if found.
    optional_offsets: dict[str, tuple[str, str]] = field(default_factory=dict)
    configure: Configure | None = None
    maps: Maps | None = None
    # Runs in a forked child after attach; must cause one event of this probe's kinds from
    # that child or its children (status: "attached, self-test ok").
    selftest: Callable[[], None] | None = None
    # Runs once after load and map fill as setup(bpf, capture options, decode context):
    # attaches programs bcc cannot attach by name (a second program on a hook another probe
    # uses), and keeps state its decoders need in `decode_context.state[probe name]`.
    # ConfigError propagates (bad setting); any other exception marks the probe failed.
    setup: Callable[[Any, dict[str, Any], DecodeContext], None] | None = None


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
    """Every registered probe: each `spyderd/capture/probe_*.py` module registers itself."""
    import importlib
    import pkgutil

    import spyderd.capture as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name.startswith("probe_"):
            importlib.import_module(f"spyderd.capture.{mod.name}")
    return sorted(_REGISTRY.values(), key=lambda p: p.name)
