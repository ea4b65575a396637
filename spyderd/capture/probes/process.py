"""Process lifecycle probe: fork/clone, exec (argv, cwd, interpreter, ids), exit.

Decisions:
- cwd is read in the kernel at exec time (dentry walk from task->fs->pwd up to the
  process's root, crossing mounts, at most 16 components and 512 bytes); /proc/<pid>/cwd
  is never read, so short-lived processes have their cwd too. A cwd deeper or longer than
  that starts with `...`.
- Threads are counted in the kernel always (`kernel_counters.threads` in status) and sent
  as ForkEvent(thread=True) only with `capture.threads: true`.
- clone flags are taken at clone/clone3/fork/vfork entry of the parent thread.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from spyderd.capture.config import CaptureConfig
from spyderd.capture.execinfo import (
    DEFAULT_ENV_VARS,
    STDIO,
    decode_env,
    decode_stdio,
    env_keys,
    script_path,
)
from spyderd.capture.records import record, signed32
from spyderd.capture.registry import AttachPoint, DecodeContext, Probe, Settings, register
from spyderd.model import ExecEvent, ExitEvent, ForkEvent

K_FORK, K_EXEC, K_EXIT = 1, 2, 3  # probes/process.bpf.c K_* (common.h)
_FORK = record("IIQQII")
# then stdio_rec[3], env[ENVBUF], cwd[2 * CWDBUF], args[]
_EXEC = record("QIIIIIIIIII256s256sQII")
_EXIT = record("II")
ENVBUF = 512
CWDBUF = 512
TRUNC_ARGS, TRUNC_CWD, TRUNC_ENV, TRUNC_STDIO = 1, 2, 4, 8


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _cstr(raw: bytes) -> str:
    i = raw.find(b"\0")
    return _text(raw if i < 0 else raw[:i])


def decode_fork(buf: bytes, ctx: DecodeContext) -> ForkEvent:
    (_k, _pid, _tid, uid, gid, _p, ktime, cgid, comm, child, parent, child_start, flags,
     child_tid, thread) = _FORK.unpack_from(buf, 0)
    return ForkEvent(time=ktime + ctx.boot_to_wall, ktime=ktime, pid=child, tid=child_tid,
                     uid=uid, gid=gid, cgroup_id=cgid, comm=_cstr(comm), ppid=parent,
                     child_start=child_start, thread=bool(thread), clone_flags=flags)


def cwd_text(raw: bytes, truncated: bool) -> str:
    """Leaf-first NUL-separated components to a path ("/" for the root itself)."""
    parts = [_text(p) for p in raw.split(b"\0") if p]
    path = "/" + "/".join(reversed(parts))
    return "..." + path if truncated else path


def decode_exec(buf: bytes, ctx: DecodeContext) -> ExecEvent:
    (_k, pid, tid, uid, gid, _p, ktime, cgid, comm, start, ppid, argc, args_len, truncated,
     execveat, euid, loginuid, sessionid, cwd_len, _pad, filename,
     interp, caps, env_len, _env_seen) = _EXEC.unpack_from(buf, 0)
    off = _EXEC.size
    stdio = decode_stdio(buf, off)
    off += 3 * STDIO.size
    wanted = ctx.state.get("process_env", _DEFAULT_ENV)
    env = decode_env(buf[off:off + min(env_len, ENVBUF)], wanted) if env_len else {}
    off += ENVBUF
    cwd = buf[off:off + min(cwd_len, 2 * CWDBUF)]
    off += 2 * CWDBUF
    raw = buf[off:off + args_len]
    args = [_text(a) for a in raw.split(b"\0")[:argc]]
    exe, interpreter = _cstr(filename), _cstr(interp)
    cwd_path = cwd_text(cwd, bool(truncated & TRUNC_CWD))
    return ExecEvent(time=ktime + ctx.boot_to_wall, ktime=ktime, pid=pid, tid=tid, uid=uid,
                     gid=gid, cgroup_id=cgid, comm=_cstr(comm), filename=exe,
                     args=args, args_truncated=bool(truncated & TRUNC_ARGS), start=start,
                     ppid=ppid, cwd=cwd_path, interpreter=interpreter,
                     execveat=bool(execveat), euid=signed32(euid),
                     loginuid=signed32(loginuid), sessionid=signed32(sessionid),
                     script=script_path(exe, interpreter, args, cwd_path), env=env,
                     stdio=list(stdio), cap_effective=caps)


def decode_exit(buf: bytes, ctx: DecodeContext) -> ExitEvent:
    (_k, pid, tid, uid, gid, _p, ktime, cgid, comm, status, _) = _EXIT.unpack_from(buf, 0)
    return ExitEvent(time=ktime + ctx.boot_to_wall, ktime=ktime, pid=pid, tid=tid, uid=uid,
                     gid=gid, cgroup_id=cgid, comm=_cstr(comm), code=(status >> 8) & 0xFF,
                     signal=status & 0x7F)


_DEFAULT_ENV = frozenset(DEFAULT_ENV_VARS)


def configure(cfg: CaptureConfig, _missing: frozenset[str]) -> Settings:
    _, short = env_keys(list(cfg.env_vars))
    return Settings({"capture_threads": 1 if cfg.threads else 0, "env_short": short})


def maps(cfg: CaptureConfig, _missing: frozenset[str]) -> dict[str, dict[Any, int]]:
    """capture.env_vars as the kernel's env_watch keys."""
    keys, _ = env_keys(list(cfg.env_vars))
    return {"env_watch": keys}


def setup(_loaded: Any, cfg: CaptureConfig, ctx: DecodeContext) -> None:
    """The exact environment names the decoder keeps."""
    ctx.state["process_env"] = frozenset(cfg.env_vars)


def selftest() -> None:
    """A fork and exec of /bin/true (seen as the exec of a child of the test process)."""
    true = shutil.which("true") or "/bin/true"
    pid = os.posix_spawn(true, [true], {})
    os.waitpid(pid, 0)


register(Probe(
    name="process",
    source="process.bpf.c",
    rank=0,  # attached first: its exec record precedes other probes' records of the exec
    attach=(
        AttachPoint("raw_tracepoint", "sched:sched_process_fork"),
        AttachPoint("raw_tracepoint", "sched:sched_process_exec"),
        AttachPoint("tracepoint", "sched:sched_process_exit"),
        AttachPoint("tracepoint", "syscalls:sys_enter_execve"),
        AttachPoint("tracepoint", "syscalls:sys_exit_execve"),
        AttachPoint("tracepoint", "syscalls:sys_enter_execveat", optional=True),
        AttachPoint("tracepoint", "syscalls:sys_exit_execveat", optional=True),
        AttachPoint("tracepoint", "syscalls:sys_enter_clone", optional=True),
        AttachPoint("tracepoint", "syscalls:sys_enter_clone3", optional=True),
        AttachPoint("tracepoint", "syscalls:sys_enter_fork", optional=True),
        AttachPoint("tracepoint", "syscalls:sys_enter_vfork", optional=True),
    ),
    decoders={K_FORK: ("fork", decode_fork), K_EXEC: ("exec", decode_exec),
              K_EXIT: ("exit", decode_exit)},
    layouts={"fork_rec": _FORK, "exec_rec": _EXEC, "exit_rec": _EXIT},
    configure=configure,
    maps=maps,
    selftest=selftest,
    setup=setup,
))
