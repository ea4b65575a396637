"""The `capture:` section of spyderd.yaml as a typed, frozen value.

It lives in capture, not in common.config, because capture owns these settings, their
defaults and their item checks, and capture must not import common (common.config
builds its schema from this class). Field metadata, read by common.config's loader:
"choices" (allowed strings), "items" (a type or a checker that returns a problem or
None, applied to every list item with its own location) and "setting" (False: not a key
of the file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spyderd.capture.execinfo import DEFAULT_ENV_VARS, env_name_problem
from spyderd.capture.watch import (
    DEFAULT_WATCH_PATHS,
    DEFAULT_WATCH_READS,
    watch_path_problem,
    watch_read_problem,
)

LOADERS = ("auto", "libbpf", "bcc")
# ptrace TRACEME, POKETEXT, POKEDATA, POKEUSER, SETREGS, SETFPREGS, ATTACH, SETREGSET, SEIZE
DEFAULT_PTRACE = (0, 4, 5, 6, 13, 15, 16, 0x4205, 0x4206)
# bpf() BPF_PROG_LOAD, and what takes a program off its hook or swaps it: BPF_PROG_DETACH,
# BPF_LINK_UPDATE, BPF_LINK_DETACH (rule "BPF program detached or link replaced")
DEFAULT_BPF_CMDS = (5, 9, 29, 34)


@dataclass(frozen=True)
class CaptureConfig:
    """What the probes record and how records reach the daemon (docs in spyderd.yaml)."""

    ring_buffer_pages: int = 1024
    max_args: int = 32
    arg_bytes: int = 2048
    ignore_self: bool = True
    self_test: bool = True
    threads: bool = False
    ignore_comms: tuple[str, ...] = field(default=(), metadata={"items": str})
    udp_ports: tuple[int, ...] = field(default=(), metadata={"items": int})
    udp_repeat_seconds: float = 1.0
    kill_signals: tuple[int, ...] = field(default=(), metadata={"items": int})
    ptrace_requests: tuple[int, ...] = field(default=DEFAULT_PTRACE, metadata={"items": int})
    bpf_cmds: tuple[int, ...] = field(default=DEFAULT_BPF_CMDS, metadata={"items": int})
    disable: tuple[str, ...] = field(default=(), metadata={"items": str})
    batch_ms: float = 20.0
    backlog_mb: int = 64
    syscall_fallback: bool = True
    probe_check_seconds: float = 1.0  # integrity check of the attachments (at most the tick)
    loader: str = field(default="auto", metadata={"choices": LOADERS})
    watch_paths: tuple[Any, ...] = field(default=tuple(DEFAULT_WATCH_PATHS),
                                         metadata={"items": watch_path_problem})
    watch_reads: tuple[Any, ...] = field(default=tuple(DEFAULT_WATCH_READS),
                                         metadata={"items": watch_read_problem})
    failed_opens: bool = True
    file_repeat_seconds: float = 1.0
    scope: str = ""
    env_vars: tuple[str, ...] = field(default=tuple(DEFAULT_ENV_VARS),
                                      metadata={"items": env_name_problem})
    # Not a `capture:` key: the daemon's state directory (--state-dir, SPYDERD_STATE_DIR,
    # state_dir), where the kernel probe pins the map that outlives a killed daemon.
    state_dir: str = field(default="/var/lib/spyderd", metadata={"setting": False})
