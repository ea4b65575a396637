"""Named constants for integer fields: open flags, ptrace requests, signals, families, clone flags.

A condition may write `kernel.request = PTRACE_ATTACH`, `file.flags & O_TRUNC` or
`exit.signal in (SIGKILL, SIGSEGV)` instead of the numbers, and join names with `|`
(`file.flags & O_WRONLY|O_RDWR`). Values are Linux's generic ABI (x86_64, arm64 and most
others; `asm-generic`), fixed here rather than taken from the Python running the rules, so
a rule means the same wherever it is checked. Names are resolved when the rule loads; an
unknown one is a located error with the nearest names suggested.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from types import MappingProxyType

_OPEN = {
    "O_RDONLY": 0, "O_WRONLY": 0o1, "O_RDWR": 0o2, "O_ACCMODE": 0o3, "O_CREAT": 0o100,
    "O_EXCL": 0o200, "O_NOCTTY": 0o400, "O_TRUNC": 0o1000, "O_APPEND": 0o2000,
    "O_NONBLOCK": 0o4000, "O_DSYNC": 0o10000, "O_DIRECT": 0o40000, "O_LARGEFILE": 0o100000,
    "O_DIRECTORY": 0o200000, "O_NOFOLLOW": 0o400000, "O_NOATIME": 0o1000000,
    "O_CLOEXEC": 0o2000000, "O_SYNC": 0o4010000, "O_PATH": 0o10000000,
    "O_TMPFILE": 0o20200000,
}  # fmt: skip
_MODE = {
    "S_ISUID": 0o4000, "S_ISGID": 0o2000, "S_ISVTX": 0o1000, "S_IRWXU": 0o700,
    "S_IWGRP": 0o20, "S_IWOTH": 0o2, "S_IXOTH": 0o1,
}  # fmt: skip
_PTRACE = {
    "PTRACE_TRACEME": 0, "PTRACE_PEEKTEXT": 1, "PTRACE_PEEKDATA": 2, "PTRACE_PEEKUSER": 3,
    "PTRACE_POKETEXT": 4, "PTRACE_POKEDATA": 5, "PTRACE_POKEUSER": 6, "PTRACE_CONT": 7,
    "PTRACE_KILL": 8, "PTRACE_SINGLESTEP": 9, "PTRACE_GETREGS": 12, "PTRACE_SETREGS": 13,
    "PTRACE_GETFPREGS": 14, "PTRACE_SETFPREGS": 15, "PTRACE_ATTACH": 16, "PTRACE_DETACH": 17,
    "PTRACE_SYSCALL": 24, "PTRACE_SETOPTIONS": 0x4200, "PTRACE_GETEVENTMSG": 0x4201,
    "PTRACE_GETSIGINFO": 0x4202, "PTRACE_SETSIGINFO": 0x4203, "PTRACE_GETREGSET": 0x4204,
    "PTRACE_SETREGSET": 0x4205, "PTRACE_SEIZE": 0x4206, "PTRACE_INTERRUPT": 0x4207,
    "PTRACE_LISTEN": 0x4208,
}  # fmt: skip
_SIGNALS = {
    "SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6,
    "SIGBUS": 7, "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12,
    "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15, "SIGSTKFLT": 16, "SIGCHLD": 17,
    "SIGCONT": 18, "SIGSTOP": 19, "SIGTSTP": 20, "SIGTTIN": 21, "SIGTTOU": 22, "SIGURG": 23,
    "SIGXCPU": 24, "SIGXFSZ": 25, "SIGVTALRM": 26, "SIGPROF": 27, "SIGWINCH": 28,
    "SIGIO": 29, "SIGPWR": 30, "SIGSYS": 31,
}  # fmt: skip
_FAMILIES = {
    "AF_UNSPEC": 0, "AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_AX25": 3, "AF_IPX": 4,
    "AF_APPLETALK": 5, "AF_NETROM": 6, "AF_BRIDGE": 7, "AF_X25": 9, "AF_INET6": 10,
    "AF_KEY": 15, "AF_NETLINK": 16, "AF_PACKET": 17, "AF_RDS": 21, "AF_IRDA": 23,
    "AF_CAN": 29, "AF_TIPC": 30, "AF_BLUETOOTH": 31, "AF_ALG": 38, "AF_VSOCK": 40,
    "AF_XDP": 44,
}  # fmt: skip
_SOCKET = {"SOCK_STREAM": 1, "SOCK_DGRAM": 2, "SOCK_RAW": 3, "SOCK_SEQPACKET": 5}
_CLONE = {
    "CLONE_VM": 0x100, "CLONE_FS": 0x200, "CLONE_FILES": 0x400, "CLONE_SIGHAND": 0x800,
    "CLONE_PIDFD": 0x1000, "CLONE_PTRACE": 0x2000, "CLONE_VFORK": 0x4000,
    "CLONE_PARENT": 0x8000, "CLONE_THREAD": 0x10000, "CLONE_NEWNS": 0x20000,
    "CLONE_SYSVSEM": 0x40000, "CLONE_SETTLS": 0x80000, "CLONE_NEWCGROUP": 0x2000000,
    "CLONE_NEWUTS": 0x4000000, "CLONE_NEWIPC": 0x8000000, "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000, "CLONE_IO": 0x80000000,
}  # fmt: skip
_PRCTL = {
    "PR_SET_PDEATHSIG": 1, "PR_SET_DUMPABLE": 4, "PR_SET_KEEPCAPS": 8, "PR_SET_NAME": 15,
    "PR_GET_NAME": 16, "PR_SET_SECCOMP": 22, "PR_CAPBSET_DROP": 24, "PR_SET_NO_NEW_PRIVS": 38,
    "PR_CAP_AMBIENT": 47,
}  # fmt: skip
_MOUNT = {
    "MS_RDONLY": 0x1, "MS_NOSUID": 0x2, "MS_NODEV": 0x4, "MS_NOEXEC": 0x8, "MS_REMOUNT": 0x20,
    "MS_BIND": 0x1000, "MS_MOVE": 0x2000, "MS_REC": 0x4000, "MS_PRIVATE": 0x40000,
    "MS_SHARED": 0x100000,
}  # fmt: skip

GROUPS: dict[str, dict[str, int]] = {
    "open(2) flags (file.flags)": _OPEN,
    "mode bits (file.mode)": _MODE,
    "ptrace requests (kernel.request)": _PTRACE,
    "signals (kernel.request for kill, exit.signal)": _SIGNALS,
    "address families": _FAMILIES,
    "socket types": _SOCKET,
    "clone flags (fork.clone_flags)": _CLONE,
    "prctl options (prctl.option)": _PRCTL,
    "mount flags (kernel.flags for mount)": _MOUNT,
}
CONSTANTS: MappingProxyType[str, int] = MappingProxyType(
    {name: value for group in GROUPS.values() for name, value in group.items()}
)
# a word that names a constant or reads like one (O_TRUNK, SIGKIL): checked, not passed on
CONSTANT_LIKE = re.compile(r"[A-Z][A-Z0-9]*_[A-Z0-9_]+|SIG[A-Z0-9]+")


def resolve(text: str, number: Callable[[str], int | None]) -> int | None:
    """`NAME`, `NAME|NAME|0x10` as an int; None when a part is neither a constant nor a number
    (`number` converts one numeric part, None when it is not one)."""
    total = 0
    for part in text.split("|"):
        part = part.strip()
        value = CONSTANTS.get(part)
        if value is None:
            value = number(part) if part else None
        if value is None:
            return None
        total |= value
    return total


def unknown_parts(text: str) -> list[str]:
    """The parts of `text` that read like constant names but are none."""
    return [p for p in text.split("|") if CONSTANT_LIKE.fullmatch(p) and p not in CONSTANTS]


def nearest(name: str) -> list[str]:
    return difflib.get_close_matches(name, list(CONSTANTS), n=2, cutoff=0.7)
