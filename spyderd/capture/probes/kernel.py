"""Kernel and system probe: modules, kexec, mounts, ptrace, memfd_create, bpf program
loads, clock changes, host/domain name, signals to other processes.

Decisions:
- Module and kexec syscalls have tracepoints only on kernels built with them. Where they
  are missing the probe says so in `spyderctl status` and watches their syscall numbers on
  raw_syscalls:sys_enter instead (filtered in the kernel by syscall number: one array
  lookup per syscall of any kind, measured at ~5 % of an open+close loop); such an attempt
  is a KernelEvent with call="syscall", `nr`, `name` = the syscall's name, `flags` = its
  first argument (x86_64) and `result` -38: a call whose tracepoint is missing is not built
  into the kernel, so it fails with ENOSYS. `capture.syscall_fallback: false` turns it off.
- ptrace: only the requests that attach or write (capture.ptrace_requests; empty = all),
  so a debugger's PEEK/GETREGS loop stays in the kernel.
- bpf: only capture.bpf_cmds (default BPF_PROG_LOAD and the commands that take a program
  off its hook or swap it: BPF_PROG_DETACH, BPF_LINK_UPDATE, BPF_LINK_DETACH); `request` =
  command; for PROG_LOAD `flags` = the program type and `name` = the program name, for the
  others `flags` = the first word of the attribute (the link or target descriptor).
- Time: settimeofday, clock_settime always; adjtimex/clock_adjtime only with modes != 0
  (`flags` = modes; reading the clock is not a change). `flags` = the new tv_sec for the
  settime calls, `request` = the clock id.
- kill/tkill/tgkill: signal 0 and signals to the caller itself are dropped in the kernel;
  capture.kill_signals limits the signals (empty = all).
- io_uring_setup is an event (`request` = entries, `flags` = setup flags): io_uring's
  file and network operations never pass the syscall tracepoints (docs/audit-coverage.md).
- Signals aimed at spyderd's own pid, one of its threads, its process group or -1 (every
  process) are always events, whatever `capture.kill_signals` says, and the last one is kept in a map pinned to bpffs that
  outlives a SIGKILL; the next start reads it (`spyderd.capture.tamper`).
- mount covers mount(2), umount2(2) and move_mount(2) (the new mount API's last step;
  `source` = from path, often empty when it moves an fsmount() descriptor).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from spyderd.capture import tamper
from spyderd.capture.config import CaptureConfig
from spyderd.capture.libbpf import Libbpf
from spyderd.capture.records import fallback_syscalls, record
from spyderd.capture.registry import (
    AttachPoint,
    DecodeContext,
    Loaded,
    Probe,
    Settings,
    register,
)
from spyderd.model import KernelEvent

log = logging.getLogger("spyderd.capture")
K_KERNEL = 15  # probes/common.h K_KERNEL
_REC = record("IiiIQiI256s256s32s")
CALLS = ("init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
         "mount", "umount", "ptrace", "memfd_create", "bpf", "settimeofday", "clock_settime",
         "adjtimex", "clock_adjtime", "sethostname", "setdomainname", "kill", "tkill",
         "tgkill", "syscall", "move_mount", "io_uring_setup")
FALLBACK_CALLS = ("init_module", "finit_module", "delete_module", "kexec_load",
                  "kexec_file_load")
OTHER_CALLS = ("mount", "umount", "move_mount", "ptrace", "memfd_create", "bpf",
               "settimeofday", "clock_settime", "adjtimex", "clock_adjtime", "sethostname",
               "setdomainname", "kill", "tkill", "tgkill", "io_uring_setup")
# Hooks some kernels lack (built without modules/kexec; move_mount before 5.2).
OPTIONAL = frozenset(FALLBACK_CALLS + ("move_mount", "io_uring_setup"))
SC_HOOK = "raw_syscalls:sys_enter"  # attached only for missing FALLBACK_CALLS


def _cstr(raw: bytes) -> str:
    i = raw.find(b"\0")
    return (raw if i < 0 else raw[:i]).decode("utf-8", "backslashreplace")


def decode_kernel(buf: bytes, ctx: DecodeContext) -> KernelEvent:
    v = _REC.unpack_from(buf, 0)
    call, result, target, request, flags, nr, _pad, name, source, fstype = v[9:]
    call_name = CALLS[call] if call < len(CALLS) else str(call)
    text = _cstr(name)
    if call_name in ("sethostname", "setdomainname"):
        text = _cstr(name[:flags])  # the kernel read 64 bytes; the call passed `flags`
    elif call_name == "syscall":
        names = {n: s for s, n in fallback_syscalls().items()}
        text = names.get(nr, f"syscall_{nr}")
    signal = call_name in ("kill", "tkill", "tgkill")
    return KernelEvent(time=v[6] + ctx.boot_to_wall, ktime=v[6], pid=v[1], tid=v[2],
                       uid=v[3], gid=v[4], cgroup_id=v[7], comm=_cstr(v[8]), call=call_name,
                       result=result, target_pid=target, request=request, name=text,
                       source=_cstr(source), fstype=_cstr(fstype), flags=flags, nr=nr,
                       target_spyderd=signal and aimed_at_self(target, ctx),
                       target_name=target_name(target) if signal or call_name == "ptrace"
                       else "")


def aimed_at_self(target: int, ctx: DecodeContext) -> bool:
    """kill's target is this daemon: its pid, any of its threads (`self_tids`, kept by
    the capture), its process group (-pid) or every process (-1)."""
    me = os.getpid()
    return target in (me, -1, -me) or target in ctx.state.get("self_tids", ())


def target_name(pid: int) -> str:
    """/proc/PID/comm of a signal's or ptrace's target: read when the record is decoded,
    so a target already gone (SIGKILL) may have no name."""
    if pid <= 0:
        return ""
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().rstrip(b"\n").decode("utf-8", "backslashreplace")
    except OSError:
        return ""


def _missing_fallback(missing: frozenset[str]) -> list[str]:
    return [c for c in FALLBACK_CALLS if f"syscalls:sys_enter_{c}" in missing]


def configure(cfg: CaptureConfig, missing: frozenset[str]) -> Settings:
    note = ""
    watched = [c for c in _missing_fallback(missing) if c in fallback_syscalls()]
    if not cfg.syscall_fallback:
        watched = []
    if watched:
        note = "attempts seen through raw_syscalls"
        if len(watched) < len(_missing_fallback(missing)):
            note = ", ".join(f"{c}()" for c in watched) + " " + note
    mask = 0
    for sig in cfg.kill_signals or range(1, 65):
        if 1 <= sig <= 64:
            mask |= 1 << (sig - 1)
    values = {
        "filter_ptrace": 1 if cfg.ptrace_requests else 0,
        "filter_bpf_cmds": 1 if cfg.bpf_cmds else 0,
        "kill_sigmask": mask,
        "spyderd_tgid": os.getpid(),
    }
    skip = frozenset() if watched else frozenset({SC_HOOK})
    return Settings(values, skip, note)


def maps(cfg: CaptureConfig, missing: frozenset[str]) -> dict[str, dict[Any, int]]:
    nrs = fallback_syscalls()
    on = cfg.syscall_fallback
    return {
        "sc_watch": {nrs[c]: 1 for c in _missing_fallback(missing) if c in nrs and on},
        "ptrace_req_filter": {int(r): 1 for r in cfg.ptrace_requests},
        "bpf_cmd_filter": {int(c): 1 for c in cfg.bpf_cmds},
    }


def setup(loaded: Loaded, cfg: CaptureConfig, ctx: DecodeContext) -> None:
    """Read who signalled the previous daemon on this state directory (its pinned map),
    then pin this daemon's map in its place (`spyderd.capture.tamper`)."""
    lib = Libbpf()
    path = tamper.pin_path(cfg.state_dir or "/var/lib/spyderd")
    before = tamper.read_pinned(lib, path, ctx.boot_to_wall)
    ctx.state["self_signal_before"] = before
    if before is not None:
        log.warning("the previous spyderd on this state directory was sent signal %d by "
                    "%s[%d] (uid %d); %d signal(s) aimed at it in all", before.signal,
                    before.sender_comm, before.sender_pid, before.sender_uid, before.count)
    table = loaded.map("self_signals")
    try:
        tamper.pin(lib, table.fd, path)  # type: ignore[attr-defined]
        ctx.state["self_signal_pin"] = (str(path), table)
    except OSError as exc:  # no bpffs: signals to spyderd are still events, not kept
        log.warning("signals aimed at spyderd will not survive its death: %s", exc)


def selftest() -> None:
    """memfd_create("spyderd-selftest"): cheap, leaves nothing behind once closed."""
    os.close(os.memfd_create("spyderd-selftest", os.MFD_CLOEXEC))


def _hooks() -> tuple[AttachPoint, ...]:
    return tuple(AttachPoint("tracepoint", f"syscalls:sys_{d}_{c}", optional=c in OPTIONAL)
                 for c in FALLBACK_CALLS + OTHER_CALLS for d in ("enter", "exit")) + (
        AttachPoint("raw_tracepoint", SC_HOOK, optional=True),
    )


register(Probe(
    name="kernel",
    source="kernel.bpf.c",
    attach=_hooks(),
    decoders={K_KERNEL: ("kernel", decode_kernel)},
    layouts={"kern_rec": _REC},
    configure=configure,
    maps=maps,
    selftest=selftest,
    setup=setup,
))
