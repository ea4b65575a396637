"""Credential probe: set*id/setfs*id/capset with arguments, result and the caller's
uid/euid before the call; setsid(); prctl(PR_SET_NAME) with the new name.

Decisions:
- Every call is sent, successful or not (a failed setuid(0) is itself a signal); these
  calls are rare next to exec/open, so no in-kernel sampling is needed.
- `args` keep (uid_t)-1 ("unchanged") as -1; for capset they are
  [pid, effective, permitted, inheritable] as 64-bit capability masks.
- setfsuid/setfsgid return the previous fsuid/fsgid, not an error code: `result` is
  that value as the kernel returned it.
- Only PR_SET_NAME reaches userspace from prctl (filtered in the kernel).
"""

from __future__ import annotations

import ctypes

from spyderd.capture.records import record, signed32
from spyderd.capture.registry import AttachPoint, DecodeContext, Probe, register
from spyderd.model import CredEvent, PrctlEvent, SessionEvent

K_CRED, K_SETSID, K_PRCTL = 12, 13, 14  # probes/common.h K_*
_REC = record("IiIIII4q16s")
CALLS = ("setuid", "setreuid", "setresuid", "setgid", "setregid", "setresgid", "setfsuid",
         "setfsgid", "capset", "setsid", "prctl")
_SYSCALLS = CALLS[:9] + ("setsid", "prctl")
SELFTEST_NAME = b"spyderd-selftst"  # 15 bytes: the longest a comm can be


def _cstr(raw: bytes) -> str:
    i = raw.find(b"\0")
    return (raw if i < 0 else raw[:i]).decode("utf-8", "backslashreplace")


def _decode(buf: bytes, ctx: DecodeContext) -> tuple[dict, tuple]:
    v = _REC.unpack_from(buf, 0)
    head = {"time": v[6] + ctx.boot_to_wall, "ktime": v[6], "pid": v[1], "tid": v[2],
            "uid": v[3], "gid": v[4], "cgroup_id": v[7], "comm": _cstr(v[8])}
    return head, v[9:]


def decode_cred(buf: bytes, ctx: DecodeContext) -> CredEvent:
    head, (call, result, old_uid, old_euid, nargs, _opt, a0, a1, a2, a3, _n) = _decode(buf, ctx)
    return CredEvent(**head, call=CALLS[call] if call < len(CALLS) else str(call),
                     args=[a0, a1, a2, a3][:min(nargs, 4)], result=result,
                     old_uid=signed32(old_uid), old_euid=signed32(old_euid))


def decode_setsid(buf: bytes, ctx: DecodeContext) -> SessionEvent:
    head, rest = _decode(buf, ctx)
    return SessionEvent(**head, result=rest[1])


def decode_prctl(buf: bytes, ctx: DecodeContext) -> PrctlEvent:
    head, rest = _decode(buf, ctx)
    return PrctlEvent(**head, option=rest[5], name=_cstr(rest[10]), result=rest[1])


def selftest() -> None:
    """prctl(PR_SET_NAME) in the test child: cheap and changes nothing outside it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, ctypes.c_char_p(SELFTEST_NAME), 0, 0, 0)


def _hooks() -> tuple[AttachPoint, ...]:
    return tuple(AttachPoint("tracepoint", f"syscalls:sys_{d}_{c}")
                 for c in _SYSCALLS for d in ("enter", "exit"))


register(Probe(
    name="creds",
    source="creds.bpf.c",
    attach=_hooks(),
    decoders={K_CRED: ("cred", decode_cred), K_SETSID: ("setsid", decode_setsid),
              K_PRCTL: ("prctl", decode_prctl)},
    layouts={"cred_rec": _REC},
    selftest=selftest,
))
