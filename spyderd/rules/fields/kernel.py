"""kernel.*, cred.* and prctl.* fields: kernel and credential changes the subject asked for.

`kernel.request` holds a ptrace request or a signal number: compare it with named constants
(`kernel.request in (PTRACE_ATTACH, PTRACE_SEIZE)`, `kernel.request = SIGKILL`).
"""

from __future__ import annotations

from spyderd.model.events import Event
from spyderd.model.nodes import Node
from spyderd.rules.fields.base import Field, ev_attr, event_attr, event_field

KERNEL = frozenset({"kernel"})
CRED = frozenset({"cred"})
PRCTL = frozenset({"prctl"})
# what capture reports in kernel.call and cred.call (capture.probes.kernel.CALLS and
# capture.probes.creds.CALLS; a test keeps them in step)
KERNEL_CALLS = frozenset({
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "mount",
    "umount", "ptrace", "memfd_create", "bpf", "settimeofday", "clock_settime", "adjtimex",
    "clock_adjtime", "sethostname", "setdomainname", "kill", "tkill", "tgkill", "syscall",
    "move_mount", "io_uring_setup",
})  # fmt: skip
CRED_CALLS = frozenset({
    "setuid", "setreuid", "setresuid", "setgid", "setregid", "setresgid", "setfsuid",
    "setfsgid", "capset",
})  # fmt: skip
_UID_ARG = {"setuid": 0, "setfsuid": 0, "setreuid": 1, "setresuid": 1}
_CALLS_DOC = (
    "init_module, finit_module, delete_module, kexec_load, mount, umount, ptrace, "
    "memfd_create, bpf, settimeofday, sethostname, kill, ... or syscall (an attempt seen "
    "only by number: kernel.nr)."
)


def _cred_args(ev: Event | None, node: Node) -> list[str] | None:
    if ev is None or ev.kind != "cred":
        return None
    return [str(a) for a in ev.args]  # type: ignore[attr-defined]


def _cred_new_uid(ev: Event | None, node: Node) -> int | None:
    """The effective (or fs) uid the call asks for; the real uid when euid is unchanged."""
    if ev is None or ev.kind != "cred" or ev.call not in _UID_ARG:  # type: ignore[attr-defined]
        return None
    args = ev.args  # type: ignore[attr-defined]
    i = _UID_ARG[ev.call]  # type: ignore[attr-defined]
    if i < len(args) and args[i] != -1:
        return args[i]
    return args[0] if args and args[0] != -1 else None


def kernel_fields() -> list[Field]:
    f, ev = event_field, event_attr
    return [
        ev("kernel.call", "str", KERNEL, _CALLS_DOC, choices=KERNEL_CALLS),
        ev("kernel.target_pid", "int", KERNEL, "ptrace and kill: the target pid.", 0),
        ev("kernel.request", "int", KERNEL,
           "ptrace request (PTRACE_ATTACH 16, PTRACE_SEIZE 0x4206), signal number (SIGKILL) "
           "or bpf() command (BPF_LINK_DETACH 34)."),
        ev("kernel.name", "str", KERNEL, "Module, memfd or host name, or mount target.", ""),
        ev("kernel.source", "str", KERNEL, "mount: the source.", ""),
        ev("kernel.fstype", "str", KERNEL, "mount: the file system type.", ""),
        ev("kernel.flags", "int", KERNEL, "The call's flags (test bits with `&`)."),
        ev("kernel.nr", "int", KERNEL, "Syscall number, for calls seen only through "
           "raw_syscalls.", -1),
        f("cred.call", "str", CRED, ", ".join(sorted(CRED_CALLS)) + ".", ev_attr("call", CRED),
          choices=CRED_CALLS),
        f("cred.args", "list[str]", CRED, "The call's numeric arguments (-1 unchanged).",
          _cred_args),
        f("cred.new_uid", "int", CRED, "uid calls: the effective uid asked for.", _cred_new_uid),
        f("cred.old_uid", "int", CRED, "Real uid before the call.", ev_attr("old_uid", CRED, -1)),
        f("cred.old_euid", "int", CRED, "Effective uid before the call.",
          ev_attr("old_euid", CRED, -1)),
        f("prctl.option", "int", PRCTL, "prctl option (PR_SET_NAME = 15).",
          ev_attr("option", PRCTL)),
        f("prctl.name", "str", PRCTL, "PR_SET_NAME: the new thread name.",
          ev_attr("name", PRCTL, "")),
    ]  # fmt: skip
