"""Files probe: watched-path changes, failed opens, and download-then-run (probes/files.bpf.c).

The kernel filters by `capture.watch_paths` (see `spyderd.capture.watch`); this module
decodes the two record kinds, re-filters the few records the kernel flagged for path
normalisation, and fills the probe's maps at start-up (`setup`).
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
import struct
from typing import Any

from spyderd.capture.records import HDR, cstr, header
from spyderd.capture.registry import AttachPoint, DecodeContext, Probe, register
from spyderd.capture.watch import (
    DEFAULT_WATCH_PATHS,
    OP_NAMES,
    OPS,
    WatchSet,
    normalize,
    parse_watch_paths,
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
# kernel spyderd supports; the rest are guarded in the source (#ifdef HAVE_...), so a kernel
# without them (older, or an architecture without the legacy calls) runs without them.
REQUIRED_CALLS = ("openat", "unlinkat", "fchmodat", "fchmod", "fchownat", "fchown",
                  "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
                  "fremovexattr", "truncate", "ftruncate", "linkat", "symlinkat")
OPTIONAL_CALLS = ("openat2", "open", "creat", "unlink", "rmdir", "renameat2", "renameat",
                  "rename", "fchmodat2", "chmod", "chown", "lchown", "setxattrat",
                  "removexattrat", "link", "symlink")


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
    return FileEvent(**h, op=name, path=path, path2=path2, flags=flags, mode=mode,
                     owner=owner, group=group, result=result, inode=inode,
                     dev=kernel_dev(dev) if dev else 0,
                     xattr=cstr(xattr) if name in ("setxattr", "removexattr") else "")


def decode_wrote_exec(buf: bytes, ctx: DecodeContext) -> WroteExecEvent:
    h = header(buf, ctx.boot_to_wall)
    (inode, dev, wpid, wstart, wktime, wcomm, _rflags, _script,
     bits, raw) = _WEXEC.unpack_from(buf, HDR.size)
    return WroteExecEvent(**h, path=_path(bits, raw), inode=inode,
                          dev=kernel_dev(dev) if dev else 0, writer_pid=wpid,
                          writer_start=wstart, writer_comm=cstr(wcomm),
                          write_time=wktime + ctx.boot_to_wall if wktime else 0)


def _fill(table: Any, entries: dict[bytes, int]) -> None:
    for key, value in entries.items():
        k = table.Key()
        ctypes.memmove(ctypes.addressof(k), key, min(len(key), ctypes.sizeof(k)))
        table[k] = table.Leaf(value)


def _attach_second_raw(bpf: Any, tp: str, fn_name: str) -> None:
    """Attach `fn_name` to raw tracepoint `tp` although the process probe's bcc-named
    program is on it already (bcc's attach_raw_tracepoint allows one program per name).
    The fd is kept where bcc's cleanup closes it."""
    from bcc import lib

    fn = bpf.load_func(fn_name, bpf.RAW_TRACEPOINT)
    fd = lib.bpf_attach_raw_tracepoint(fn.fd, tp.encode())
    if fd < 0:
        raise OSError(f"cannot attach {fn_name} to raw tracepoint {tp}")
    bpf.raw_tracepoint_fds[f"{tp}#{fn_name}".encode()] = fd


def setup(bpf: Any, options: dict[str, Any], ctx: DecodeContext) -> None:
    """Fill the watch tries and switches; attach the exec hook (a second program on the
    raw tracepoint whose bcc-named program belongs to the process probe)."""
    ws = parse_watch_paths(options.get("watch_paths", DEFAULT_WATCH_PATHS))
    watch, tails = ws.kernel_maps()
    _fill(bpf["watch"], watch)
    _fill(bpf["watch_tail"], tails)
    settings = bpf["fsettings"]
    settings[settings.Key(0)] = settings.Leaf(1 if options.get("failed_opens", True) else 0)
    repeat_ms = int(max(0.0, options.get("file_repeat_seconds", 1.0)) * 1000)
    settings[settings.Key(2)] = settings.Leaf(min(repeat_ms, 2**32 - 1))
    stages = bpf.get_table("fstages")
    for idx, fn in enumerate(STAGES):
        prog = bpf.load_func(fn, bpf.TRACEPOINT)
        stages[ctypes.c_int(idx)] = ctypes.c_int(prog.fd)
    _attach_second_raw(bpf, "sched_process_exec", "files_on_exec")
    ctx.state["files"] = ws
    settings[settings.Key(1)] = settings.Leaf(1)  # ready: the hooks start working now


def selftest() -> None:
    """A write-open of a 0444 sysctl fails with EACCES even for root: one open_failed
    event (sent when capture.failed_opens is on, the default), nothing changed."""
    try:
        fd = os.open("/proc/sys/kernel/osrelease", os.O_WRONLY)
    except OSError:
        return
    os.close(fd)


def configure(_options: dict[str, Any], _missing: frozenset[str]) -> tuple[list[str], str]:
    """Read the open family's arguments from the saved user registers at sys_exit where
    the kernel has bpf_task_pt_regs (5.15+) and the ABI is known (x86_64); elsewhere the
    probe saves them at sys_enter in a per-thread map (one more hook and map update per
    open)."""
    release = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    if platform.machine() == "x86_64" and release >= (5, 15):
        return ["-DFILES_TASK_PT_REGS=1"], ""
    return [], "open arguments saved at sys_enter"


def _attach() -> tuple[AttachPoint, ...]:
    hooks = [AttachPoint("raw_tracepoint", "sched:sched_process_exec")]
    for call in REQUIRED_CALLS + OPTIONAL_CALLS:
        for side in ("enter", "exit"):
            hooks.append(AttachPoint("tracepoint", f"syscalls:sys_{side}_{call}"))
    return tuple(hooks)


register(Probe(
    name="files",
    source="files.bpf.c",
    attach=_attach(),
    decoders={K_FILE: ("file", decode_file), K_WROTE_EXEC: ("wrote_exec", decode_wrote_exec)},
    offsets={
        "OFF_TASK_FILES": ("task_struct", "files"),
        "OFF_TASK_FS": ("task_struct", "fs"),
        "OFF_TASK_START_BOOTTIME": ("task_struct", "start_boottime"),
        "OFF_FILES_FDT": ("files_struct", "fdt"),
        "OFF_FDT_FD": ("fdtable", "fd"),
        "OFF_FDT_MAX_FDS": ("fdtable", "max_fds"),
        "OFF_FS_ROOT_DENTRY": ("fs_struct", "root.dentry"),
        "OFF_FS_ROOT_MNT": ("fs_struct", "root.mnt"),
        "OFF_FS_PWD_DENTRY": ("fs_struct", "pwd.dentry"),
        "OFF_FS_PWD_MNT": ("fs_struct", "pwd.mnt"),
        "OFF_MOUNT_MNT": ("mount", "mnt"),
        "OFF_MOUNT_MNT_PARENT": ("mount", "mnt_parent"),
        "OFF_MOUNT_MNT_MOUNTPOINT": ("mount", "mnt_mountpoint"),
        "OFF_VFSMOUNT_MNT_ROOT": ("vfsmount", "mnt_root"),
        "OFF_DENTRY_D_PARENT": ("dentry", "d_parent"),
        "OFF_DENTRY_D_NAME_LEN": ("dentry", "d_name.len"),
        "OFF_DENTRY_D_NAME_NAME": ("dentry", "d_name.name"),
        "OFF_FILE_F_PATH_DENTRY": ("file", "f_path.dentry"),
        "OFF_FILE_F_PATH_MNT": ("file", "f_path.mnt"),
        "OFF_FILE_F_INODE": ("file", "f_inode"),
        "OFF_FILE_F_MODE": ("file", "f_mode"),
        "OFF_INODE_I_INO": ("inode", "i_ino"),
        "OFF_INODE_I_SB": ("inode", "i_sb"),
        "OFF_INODE_I_MODE": ("inode", "i_mode"),
        "OFF_SB_S_DEV": ("super_block", "s_dev"),
        "OFF_BPRM_FILE": ("linux_binprm", "file"),
        "OFF_BPRM_FILENAME": ("linux_binprm", "filename"),
        "OFF_BPRM_INTERP": ("linux_binprm", "interp"),
    },
    optional_offsets={
        "OFF_PT_REGS_DI": ("pt_regs", "di"),
        "OFF_PT_REGS_SI": ("pt_regs", "si"),
        "OFF_PT_REGS_DX": ("pt_regs", "dx"),
        "OFF_PT_REGS_R10": ("pt_regs", "r10"),
    },
    configure=configure,
    selftest=selftest,
    setup=setup,
))
