"""Process lifecycle probe: fork, exec (filename and argv), exit (status)."""

from __future__ import annotations

import struct

from spyderd.capture.records import HDR, K_EXEC, K_EXIT, K_FORK, cstr, header
from spyderd.capture.registry import AttachPoint, DecodeContext, Probe, register
from spyderd.model import ExecEvent, ExitEvent, ForkEvent

_FORK = struct.Struct("<IIQ")
_EXEC = struct.Struct("<QIIII256s")
_EXIT = struct.Struct("<II")


def decode_fork(buf: bytes, ctx: DecodeContext) -> ForkEvent:
    h = header(buf, ctx.boot_to_wall)
    child, parent, child_start = _FORK.unpack_from(buf, HDR.size)
    h["pid"], h["tid"] = child, child
    return ForkEvent(**h, ppid=parent, child_start=child_start)


def decode_exec(buf: bytes, ctx: DecodeContext) -> ExecEvent:
    h = header(buf, ctx.boot_to_wall)
    start, ppid, argc, args_len, truncated, filename = _EXEC.unpack_from(buf, HDR.size)
    off = HDR.size + _EXEC.size
    raw = bytes(buf[off:off + args_len])
    args = [a.decode("utf-8", "backslashreplace") for a in raw.split(b"\0")[:argc]]
    return ExecEvent(**h, filename=cstr(filename), args=args, args_truncated=bool(truncated),
                     start=start, ppid=ppid)


def decode_exit(buf: bytes, ctx: DecodeContext) -> ExitEvent:
    h = header(buf, ctx.boot_to_wall)
    status, _ = _EXIT.unpack_from(buf, HDR.size)
    return ExitEvent(**h, code=(status >> 8) & 0xFF, signal=status & 0x7F)


register(Probe(
    name="process",
    source="process.bpf.c",
    attach=(
        AttachPoint("raw_tracepoint", "sched:sched_process_fork"),
        AttachPoint("tracepoint", "sched:sched_process_exec"),
        AttachPoint("tracepoint", "sched:sched_process_exit"),
        AttachPoint("tracepoint", "syscalls:sys_enter_execve"),
        AttachPoint("tracepoint", "syscalls:sys_exit_execve"),
        AttachPoint("tracepoint", "syscalls:sys_enter_execveat"),
        AttachPoint("tracepoint", "syscalls:sys_exit_execveat"),
    ),
    decoders={K_FORK: ("fork", decode_fork), K_EXEC: ("exec", decode_exec),
              K_EXIT: ("exit", decode_exit)},
    offsets={
        "OFF_TASK_PID": ("task_struct", "pid"),
        "OFF_TASK_TGID": ("task_struct", "tgid"),
        "OFF_TASK_START_BOOTTIME": ("task_struct", "start_boottime"),
        "OFF_TASK_REAL_PARENT": ("task_struct", "real_parent"),
        "OFF_TASK_EXIT_CODE": ("task_struct", "exit_code"),
    },
))
