"""Typed events, one dataclass per kind, with the header every probe record carries."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

# Linux capability bits, in order (include/uapi/linux/capability.h).
CAP_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)


def cap_names(mask: int) -> list[str]:
    """Capability names of the bits set in `mask`."""
    return [name for bit, name in enumerate(CAP_NAMES) if mask >> bit & 1]


@dataclass(slots=True, kw_only=True)
class Event:
    """Header shared by every event: who (pid/tid/uid/gid/comm/cgroup) and when.

    `time` is wall-clock ns; `ktime` is CLOCK_BOOTTIME ns as the kernel stamped it.
    `process_id` is the process image the event belongs to when its source already knows
    it (the journal follower, a replay file). Events are never changed once made (plain
    slotted dataclasses rather than frozen ones: frozen ones cost ~5x more to build on the
    decode path); the graph's answer goes into the stored record (`event_record`).
    """

    kind: ClassVar[str] = "event"
    time: int
    ktime: int = 0
    pid: int
    tid: int = 0
    uid: int = 0
    gid: int = 0
    cgroup_id: int = 0
    comm: str = ""
    process_id: str = ""


@dataclass(slots=True, kw_only=True)
class ForkEvent(Event):
    """A new process (not a thread) was created; `pid` is the child, `ppid` the parent."""

    kind: ClassVar[str] = "fork"
    ppid: int
    child_start: int = 0  # child's start_boottime, ns
    thread: bool = False  # a new thread of `ppid`'s group rather than a new process
    clone_flags: int = 0


@dataclass(slots=True, kw_only=True)
class ExecEvent(Event):
    """A process replaced its program image."""

    kind: ClassVar[str] = "exec"
    filename: str
    args: list[str] = field(default_factory=list)
    args_truncated: bool = False
    start: int = 0  # the process's start_boottime, ns (unchanged by exec)
    ppid: int = 0
    cwd: str = ""
    interpreter: str = ""  # for scripts: the interpreter the kernel ran (#! line)
    execveat: bool = False
    euid: int = -1  # effective uid after exec (setuid binaries); -1 when unknown
    loginuid: int = -1  # audit login uid (survives su/sudo); -1 = unset
    sessionid: int = -1
    script: str = ""  # the script an interpreter runs (`bash x.sh`, a #! script); "" if none
    env: dict[str, str] = field(default_factory=dict)  # capture.env_vars present in the image
    # fds 0, 1, 2: {"type": tty|null|chardev|file|fifo|pipe|socket|dir|other|closed, "path",
    # "pipe" (inode, both ends), socket "protocol", "local_ip", "local_port", "remote_ip", ...}
    stdio: list[dict[str, Any]] = field(default_factory=list)
    cap_effective: int = -1  # effective capabilities of the new image; -1 = unknown


@dataclass(slots=True, kw_only=True)
class ExitEvent(Event):
    """A process (thread group) ended; `code` is the exit status, `signal` the killing signal."""

    kind: ClassVar[str] = "exit"
    code: int = 0
    signal: int = 0


@dataclass(slots=True, kw_only=True)
class ConnectEvent(Event):
    """An outbound TCP connection attempt finished (`result` 0 = established, else -errno)."""

    kind: ClassVar[str] = "connect"
    family: int
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    result: int = 0
    netns: int = 0


@dataclass(slots=True, kw_only=True)
class AcceptEvent(Event):
    """An inbound TCP connection was accepted by the process."""

    kind: ClassVar[str] = "accept"
    family: int
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    result: int = 0
    netns: int = 0


@dataclass(slots=True, kw_only=True)
class ListenEvent(Event):
    """A TCP socket started listening."""

    kind: ClassVar[str] = "listen"
    family: int
    local_ip: str
    local_port: int
    netns: int = 0


@dataclass(slots=True, kw_only=True)
class BindEvent(Event):
    """A socket was bound to a local address (TCP or UDP)."""

    kind: ClassVar[str] = "bind"
    family: int
    protocol: str  # "tcp" | "udp"
    local_ip: str
    local_port: int
    result: int = 0
    netns: int = 0


@dataclass(slots=True, kw_only=True)
class UdpEvent(Event):
    """A UDP destination: `sendto`/`sendmsg` with an address, or `connect` on a UDP socket."""

    kind: ClassVar[str] = "udp"
    call: str  # "sendto" | "sendmsg" | "connect"
    family: int
    remote_ip: str
    remote_port: int
    result: int = 0
    netns: int = 0


@dataclass(slots=True, kw_only=True)
class UnixConnectEvent(Event):
    """A connect() to a Unix socket path (abstract names start with '@')."""

    kind: ClassVar[str] = "unix_connect"
    path: str
    result: int = 0


@dataclass(slots=True, kw_only=True)
class SocketEvent(Event):
    """A packet (AF_PACKET) or raw (SOCK_RAW) socket was created: sniffing or crafting packets.

    `family` packet, inet, inet6, ...; `type` raw, dgram, ...; `result` the fd or -errno."""

    kind: ClassVar[str] = "socket"
    family: str
    type: str
    protocol: int = 0
    result: int = 0


@dataclass(slots=True, kw_only=True)
class DupEvent(Event):
    """dup2/dup3 of a socket onto fd 0, 1 or 2 (a shell's stdio wired to a connection)."""

    kind: ClassVar[str] = "dup"
    oldfd: int
    newfd: int
    protocol: str = ""  # tcp, udp, unix, raw, packet ...
    local_ip: str = ""
    local_port: int = 0
    remote_ip: str = ""
    remote_port: int = 0
    result: int = 0


@dataclass(slots=True, kw_only=True)
class FileEvent(Event):
    """A change to a watched path, or a failed open (EACCES/EPERM).

    `op` is one of: open (for write/create), open_failed, create, unlink, rename, chmod,
    chown, setxattr, removexattr, truncate, link, symlink, read (a capture.watch_reads
    path opened read-only), utimes (timestamps set explicitly), setflags (immutable or
    append-only changed). `path2` is the new name for rename/link/symlink. Only paths
    under the watched prefixes reach userspace, plus, from anywhere: chmod setting
    setuid/setgid, the security.capability xattr, utimes and setflags, and writes to
    files that are later executed (see `WroteExecEvent`).
    """

    kind: ClassVar[str] = "file"
    op: str
    path: str
    path2: str = ""
    flags: int = 0
    mode: int = 0
    owner: int = -1  # chown target uid
    group: int = -1  # chown target gid
    result: int = 0
    inode: int = 0
    dev: int = 0
    xattr: str = ""  # setxattr/removexattr: the attribute name (security.capability, ...)
    atime: int = -1  # utimes: access time set explicitly (wall ns); -1 kept or "now"
    mtime: int = -1  # utimes: modification time set explicitly (wall ns); -1 kept or "now"
    fsflags: int = 0  # setflags: the new inode flags (FS_IMMUTABLE_FL 0x10, FS_APPEND_FL 0x20)
    old_fsflags: int = 0  # setflags: immutable / append-only flags before the call


@dataclass(slots=True, kw_only=True)
class WroteExecEvent(Event):
    """The file this process just executed was written earlier by `writer_pid` (download → run)."""

    kind: ClassVar[str] = "wrote_exec"
    path: str
    inode: int = 0
    dev: int = 0
    writer_pid: int
    writer_start: int = 0  # writer's start_boottime, ns
    writer_comm: str = ""
    write_time: int = 0  # wall ns of the write
    script: bool = False  # a script read by its interpreter (#!, or `bash x.sh`), not a binary


@dataclass(slots=True, kw_only=True)
class CredEvent(Event):
    """Credential change: setuid/setreuid/setresuid/setgid/setregid/setresgid/setfsuid/
    setfsgid/capset. `args` are the syscall's numeric arguments (-1 = unchanged)."""

    kind: ClassVar[str] = "cred"
    call: str
    args: list[int] = field(default_factory=list)
    result: int = 0
    old_uid: int = -1
    old_euid: int = -1


@dataclass(slots=True, kw_only=True)
class SessionEvent(Event):
    """setsid() created a new session (`result` is the new sid, or -errno)."""

    kind: ClassVar[str] = "setsid"
    result: int = 0


@dataclass(slots=True, kw_only=True)
class PrctlEvent(Event):
    """prctl(); only PR_SET_NAME (15) by default: `name` is the new thread name."""

    kind: ClassVar[str] = "prctl"
    option: int
    name: str = ""
    result: int = 0


@dataclass(slots=True, kw_only=True)
class KernelEvent(Event):
    """Kernel and system changes, one kind for the audit.rules "system" categories.

    `call`: init_module, finit_module, delete_module, kexec_load, kexec_file_load, mount,
    umount, ptrace, memfd_create, bpf, settimeofday, clock_settime, adjtimex,
    clock_adjtime, sethostname, setdomainname, kill, tkill, tgkill, or `syscall` for an
    attempt seen only through raw_syscalls (hook missing on this kernel; `nr` set).
    `target_pid` for ptrace/kill, `request` the ptrace request or signal number, `name`
    the module/memfd/host name or mount target, `source`/`fstype` for mount, `flags`.
    """

    kind: ClassVar[str] = "kernel"
    call: str
    result: int = 0
    target_pid: int = 0
    request: int = 0
    name: str = ""
    source: str = ""
    fstype: str = ""
    flags: int = 0
    nr: int = -1
    target_spyderd: bool = False  # kill/tkill/tgkill aimed at this spyderd (a thread, its group, -1)
    target_name: str = ""  # kill/ptrace: the target's name (/proc/PID/comm), when readable


@dataclass(slots=True, kw_only=True)
class AlertEvent(Event):
    """A warning or error another service wrote to journald, attached to its process."""

    kind: ClassVar[str] = "alert"
    message: str
    unit: str = ""
    priority: int = 4
    identifier: str = ""
    cursor: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (ForkEvent, ExecEvent, ExitEvent, ConnectEvent, AcceptEvent, ListenEvent,
                BindEvent, UdpEvent, UnixConnectEvent, FileEvent, WroteExecEvent, CredEvent,
                SessionEvent, PrctlEvent, KernelEvent, AlertEvent, SocketEvent, DupEvent)
}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def event_to_dict(ev: Event) -> dict[str, Any]:
    """JSON-ready dict with `kind` first; the form of `spyderctl events -o json` and replay files."""
    cls = type(ev)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    out: dict[str, Any] = {"kind": ev.kind}
    for name in names:
        out[name] = getattr(ev, name)
    return out


def event_record(ev: Event, process_id: str) -> dict[str, Any]:
    """`event_to_dict` with the image the graph found for it (stored, sent with findings)."""
    out = event_to_dict(ev)
    if process_id:
        out["process_id"] = process_id
    return out


def event_from_dict(data: dict[str, Any]) -> Event:
    """Inverse of `event_to_dict`; unknown keys are ignored, a bad kind raises ValueError."""
    kind = data.get("kind")
    cls = EVENT_TYPES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise ValueError(f"bad {kind} event: {exc}") from None
