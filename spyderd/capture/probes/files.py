"""Files probe: watched-path changes, failed opens, and download-then-run (probes/files.bpf.c).

The kernel filters by `capture.watch_paths` (see `spyderd.capture.watch`); this module
decodes the two record kinds, re-filters the few records the kernel flagged for path
normalisation, and fills the probe's maps at start-up (`setup`).
"""

from __future__ import annotations

import os
import platform
import re
import struct

from spyderd.capture.config import CaptureConfig
from spyderd.capture.execinfo import kernel_interpreters
from spyderd.capture.records import HDR, cstr, header, record
from spyderd.capture.registry import (
    AttachPoint,
    DecodeContext,
    Loaded,
    Probe,
    Settings,
    register,
)
from spyderd.capture.watch import (
    OP_NAMES,
    OPS,
    ReadNames,
    WatchSet,
    normalize,
    parse_watch_paths,
    parse_watch_reads,
)
from spyderd.model import FileEvent, WroteExecEvent

K_FILE, K_WROTE_EXEC = 7, 8

# probes/files.bpf.c RF_* flags
RF_NORM1, RF_NORM2, RF_ANY, RF_NAME = 0x004, 0x008, 0x020, 0x040
O_CREAT, O_TRUNC, O_TMPFILE = 0o100, 0o1000, 0o20000000

_PATH = "I256s"
_FILE = struct.Struct("<IIIiiiQIIiI64s" + _PATH + _PATH)
_WEXEC = struct.Struct("<QIIQQ16sII" + _PATH)

# Syscalls whose sys_enter/sys_exit pairs the probe uses. The first group exists on every
# kernel spyderd supports; the rest are optional hooks, so a kernel without them (older,
# or an architecture without the legacy calls) runs without them.
REQUIRED_CALLS = ("openat", "unlinkat", "fchmodat", "fchmod", "fchownat", "fchown",
                  "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
                  "fremovexattr", "truncate", "ftruncate", "linkat", "symlinkat", "utimensat",
                  "ioctl")
OPTIONAL_CALLS = ("openat2", "open", "creat", "unlink", "rmdir", "renameat2", "renameat",
                  "rename", "fchmodat2", "chmod", "chown", "lchown", "setxattrat",
                  "removexattrat", "link", "symlink", "futimesat", "utimes", "utime")
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
_TIMES = struct.Struct("<qqqq")
# inode->i_flags S_APPEND / S_IMMUTABLE as the FS_*_FL bits chattr speaks
_VFS_TO_FS = ((4, 0x20), (8, 0x10))


# sys_enter hooks of the open family, needed only without bpf_task_pt_regs.
OPEN_ENTER_HOOKS = tuple(f"syscalls:sys_enter_{c}" for c in ("openat", "openat2", "open",
                                                             "creat"))
# Tail-called stage programs, in STAGE_* order (probes/files.bpf.c).
STAGES = ("files_resolve", "files_finish")


def kernel_dev(dev: int) -> int:
    """Kernel dev_t (major << 20 | minor) as user space's st_dev encodes it."""
    return os.makedev(dev >> 20, dev & 0xFFFFF)


def _path(bits: int, raw: bytes) -> str:
    return raw[: min(bits // 8, len(raw))].split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def wanted_ops(op: int, flags: int) -> int:
    """The operation bits an event of `op` is watched for (as the kernel decides it)."""
    want = 1 << op
    if op == OPS["open"] and flags & O_TRUNC:
        want |= 1 << OPS["truncate"]
    return want


def decode_file(buf: bytes, ctx: DecodeContext) -> FileEvent | None:
    h = header(buf, ctx.boot_to_wall)
    if len(buf) < HDR.size + _FILE.size:  # sent only up to the end of its last path
        buf = bytes(buf).ljust(HDR.size + _FILE.size, b"\0")
    (op, flags, mode, owner, group, result, inode, dev, rflags, _fd, _pad, xattr,
     b1, s1, b2, s2) = _FILE.unpack_from(buf, HDR.size)
    name = OP_NAMES.get(op)
    if name is None:
        raise ValueError(f"unknown file operation {op}")
    path, path2 = _path(b1, s1), _path(b2, s2)
    if rflags & (RF_NORM1 | RF_NORM2):
        if rflags & RF_NORM1:
            path = normalize(path)
        if rflags & RF_NORM2:
            path2 = normalize(path2)
        ws: WatchSet | None = ctx.state.get("files")
        want = wanted_ops(op, flags)
        if not rflags & RF_ANY and ws is not None and not (
                (name != "symlink" and ws.match(path, want)) or ws.match(path2, want)):
            return None  # only the un-normalised spelling looked watched
    if name in ("open", "create"):  # path2 holds the name given; kept only if it matched
        path, path2 = (path2, path) if rflags & RF_NAME else (path, "")
    if name in ("open", "create", "open_failed") and not flags & (O_CREAT | O_TMPFILE):
        mode = 0
    if name == "read" and _own_proc_file(path, h["pid"]):
        return None  # the process's own /proc files: not another process's memory
    ev = FileEvent(**h, op=name, path=path, path2=path2, flags=flags, mode=mode,
                   owner=owner, group=group, result=result, inode=inode,
                   dev=kernel_dev(dev) if dev else 0,
                   xattr=cstr(xattr) if name in ("setxattr", "removexattr") else "")
    if name == "utimes":
        a_s, a_ns, m_s, m_ns = _TIMES.unpack_from(xattr)
        ev.atime, ev.mtime = _time(a_s, a_ns), _time(m_s, m_ns)
    elif name == "setflags":
        old = struct.unpack_from("<I", xattr)[0]
        ev.fsflags = flags
        ev.old_fsflags = sum(fs for vfs, fs in _VFS_TO_FS if old & vfs)
        ev.flags = 0
    return ev


def _time(sec: int, nsec: int) -> int:
    """Wall ns a utimes call sets, -1 when it keeps the time or sets "now"."""
    return -1 if nsec in (UTIME_NOW, UTIME_OMIT) else sec * 1_000_000_000 + nsec


def _own_proc_file(path: str, pid: int) -> bool:
    parts = path.split("/")
    return len(parts) > 2 and parts[1] == "proc" and parts[2] == str(pid)


def decode_wrote_exec(buf: bytes, ctx: DecodeContext) -> WroteExecEvent:
    h = header(buf, ctx.boot_to_wall)
    (inode, dev, wpid, wstart, wktime, wcomm, _rflags, script,
     bits, raw) = _WEXEC.unpack_from(buf, HDR.size)
    return WroteExecEvent(**h, path=_path(bits, raw), inode=inode,
                          dev=kernel_dev(dev) if dev else 0, writer_pid=wpid,
                          writer_start=wstart, writer_comm=cstr(wcomm),
                          write_time=wktime + ctx.boot_to_wall if wktime else 0,
                          script=bool(script))


def watch_set(cfg: CaptureConfig) -> tuple[WatchSet, ReadNames]:
    """capture.watch_paths and capture.watch_reads compiled into one watch list, and the
    names a read-only open must have to be looked up in it."""
    ws = parse_watch_paths(list(cfg.watch_paths))
    entries, names = parse_watch_reads(list(cfg.watch_reads))
    return WatchSet(ws.entries + entries), names


def setup(loaded: Loaded, cfg: CaptureConfig, ctx: DecodeContext) -> None:
    """Fill the watch tries (watch_paths and watch_reads), the read-name filter, the
    interpreters whose script operand is followed, switches and the tail-call table of the
    stage programs."""
    ws, names = watch_set(cfg)
    watch, tails = ws.kernel_maps()
    keys, first, file_lens, dir_lens = names.kernel_maps()
    for name, entries in (("watch", watch), ("watch_tail", tails), ("read_names", keys),
                          ("read_first", first)):
        table = loaded.map(name)
        for key, value in entries.items():
            table.update(key, value)
    settings = loaded.map("fsettings")
    settings.update(3, file_lens)
    settings.update(4, dir_lens)
    settings.update(0, 1 if cfg.failed_opens else 0)
    repeat_ms = int(max(0.0, cfg.file_repeat_seconds) * 1000)
    settings.update(2, min(repeat_ms, 2**32 - 1))
    table = loaded.map("interpreters")
    for comm, opts in kernel_interpreters().items():
        table.update(comm, opts)
    stages = loaded.map("fstages")
    for idx, fn in enumerate(STAGES):
        stages.update(idx, loaded.prog_fd(fn))
    ctx.state["files"] = ws
    settings.update(1, 1)  # ready: the hooks start working once attached


def selftest() -> None:
    """A write-open of a 0444 sysctl fails with EACCES even for root: one open_failed
    event (sent when capture.failed_opens is on, the default), nothing changed."""
    try:
        fd = os.open("/proc/sys/kernel/osrelease", os.O_WRONLY)
    except OSError:
        return
    os.close(fd)


def configure(_cfg: CaptureConfig, _missing: frozenset[str]) -> Settings:
    """Read the open family's arguments from the saved user registers at sys_exit where
    the kernel has bpf_task_pt_regs (5.15+) and the ABI is known (x86_64); elsewhere the
    probe saves them at sys_enter in a per-thread map (one more hook and map update per
    open)."""
    release = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    if platform.machine() == "x86_64" and release >= (5, 15):
        return Settings({"task_pt_regs": 1}, frozenset(OPEN_ENTER_HOOKS))
    return Settings({"task_pt_regs": 0}, note="open arguments saved at sys_enter")


def _attach() -> tuple[AttachPoint, ...]:
    hooks = [AttachPoint("raw_tracepoint", "sched:sched_process_exec")]
    for call in REQUIRED_CALLS + OPTIONAL_CALLS:
        for side in ("enter", "exit"):
            hooks.append(AttachPoint("tracepoint", f"syscalls:sys_{side}_{call}",
                                     optional=call in OPTIONAL_CALLS))
    return tuple(hooks)


register(Probe(
    name="files",
    source="files.bpf.c",
    attach=_attach(),
    decoders={K_FILE: ("file", decode_file), K_WROTE_EXEC: ("wrote_exec", decode_wrote_exec)},
    layouts={"file_rec": record(_FILE.format.lstrip("<")),
             "wexec_rec": record(_WEXEC.format.lstrip("<"))},
    configure=configure,
    selftest=selftest,
    setup=setup,
))
