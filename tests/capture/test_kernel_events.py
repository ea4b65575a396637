"""Kernel and system events on the real kernel, read back with `spyderctl events`.

Nothing here changes the machine for others: the clock calls are made with arguments the
kernel rejects (the attempt is what is recorded), host names are set in a UTS namespace
of their own, the mount is a tmpfs in a temporary directory.
"""

from __future__ import annotations

import errno
import os
import platform
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from capture_support import absent, events, find_event, run_py, start_daemon, status

pytestmark = pytest.mark.root
IGNORED = "spyder-ignored"


@pytest.fixture(scope="module")
def d(tmp_path_factory, journald, loader):
    daemon = start_daemon(tmp_path_factory.mktemp("kerneld"), {"ignore_comms": [IGNORED]}, loader=loader)
    yield daemon
    daemon.stop()


def test_status_kernel_probe_reports_missing_hooks(d):
    k = status(d)["probes"]["kernel"]
    assert k["state"] == "attached" and k["selftest"] == "ok"
    have = os.path.isdir("/sys/kernel/tracing/events/syscalls/sys_enter_init_module")
    if have:
        assert "syscalls:sys_enter_init_module" not in k["missing"]
    else:
        assert "syscalls:sys_enter_init_module" in k["missing"]
        assert "init_module()" in k["text"] and "raw_syscalls" in k["text"]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="syscall numbers")
def test_module_and_kexec_attempts(d):
    nrs = {"x86_64": (175, 176, 313, 246, 320), "aarch64": (105, 106, 273, 104, 294)}
    init, delete, finit, kexec, kexec_file = nrs[platform.machine()]
    code = textwrap.dedent(f"""
        import ctypes, os
        print(os.getpid(), flush=True)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall({init}, None, 0, b"")
        libc.syscall({delete}, b"spyder_nosuchmod", 0)
        libc.syscall({finit}, -1, b"", 0)
        libc.syscall({kexec}, 0, 0, None, 0)
        libc.syscall({kexec_file}, -1, -1, 0, None, 0)
    """)
    pid = int(run_py(code).stdout)
    fallback = not os.path.isdir("/sys/kernel/tracing/events/syscalls/sys_enter_init_module")
    for name in ("init_module", "delete_module", "finit_module", "kexec_load",
                 "kexec_file_load"):
        if fallback:
            ev = find_event(d, "kernel", lambda e, n=name: e["name"] == n, pid=pid)
            assert ev["call"] == "syscall"
            assert ev["nr"] in (init, delete, finit, kexec, kexec_file)
            assert ev["result"] == -errno.ENOSYS
        else:
            ev = find_event(d, "kernel", lambda e, n=name: e["call"] == n, pid=pid)
            assert ev["result"] < 0


def test_mount_and_umount(d, tmp_path):
    target = tmp_path / "mnt"
    target.mkdir()
    code = textwrap.dedent(f"""
        import ctypes, os
        print(os.getpid(), flush=True)
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.mount(b"spydertmp", {str(target).encode()!r}, b"tmpfs", 6, None) == 0
        assert libc.umount2({str(target).encode()!r}, 2) == 0            # MNT_DETACH
        libc.mount(b"none", b"/nonexistent-spyder", b"tmpfs", 0, None)   # ENOENT
    """)
    pid = int(run_py(code).stdout)
    ev = find_event(d, "kernel", lambda e: e["call"] == "mount" and e["result"] == 0, pid=pid)
    assert ev["source"] == "spydertmp" and ev["name"] == str(target)
    assert ev["fstype"] == "tmpfs" and ev["flags"] == 6  # MS_NOSUID | MS_NODEV
    ev = find_event(d, "kernel", lambda e: e["call"] == "umount", pid=pid)
    assert ev["name"] == str(target) and ev["flags"] == 2 and ev["result"] == 0
    ev = find_event(d, "kernel", lambda e: e["call"] == "mount" and e["result"] != 0, pid=pid)
    assert ev["result"] == -errno.ENOENT and ev["name"] == "/nonexistent-spyder"


def test_ptrace_attach_recorded_reads_not(d):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        code = textwrap.dedent(f"""
            import ctypes, os
            print(os.getpid(), flush=True)
            libc = ctypes.CDLL(None, use_errno=True)
            assert libc.ptrace(16, {sleeper.pid}, None, None) == 0      # PTRACE_ATTACH
            os.waitpid({sleeper.pid}, 0)
            libc.ptrace(3, {sleeper.pid}, None, None)                    # PEEKUSER: a read
            assert libc.ptrace(17, {sleeper.pid}, None, None) == 0      # PTRACE_DETACH
        """)
        pid = int(run_py(code).stdout)
    finally:
        sleeper.kill()
        sleeper.wait()
    ev = find_event(d, "kernel", lambda e: e["call"] == "ptrace", pid=pid)
    assert ev["request"] == 16 and ev["target_pid"] == sleeper.pid and ev["result"] == 0
    absent(d, "kernel", lambda e: e["call"] == "ptrace" and e["request"] in (3, 17), pid=pid,
           settle=0)


def test_memfd_create(d):
    code = textwrap.dedent("""
        import os
        print(os.getpid(), flush=True)
        fd = os.memfd_create("spyder-payload", os.MFD_CLOEXEC)
        print(fd, flush=True)
    """)
    pid, fd = map(int, run_py(code).stdout.split())
    ev = find_event(d, "kernel", lambda e: e["call"] == "memfd_create", pid=pid)
    assert ev["name"] == "spyder-payload" and ev["flags"] == os.MFD_CLOEXEC
    assert ev["result"] == fd


def test_bpf_prog_load_only(d):
    code = textwrap.dedent("""
        import ctypes, os
        print(os.getpid(), flush=True)
        libc = ctypes.CDLL(None, use_errno=True)
        insns = (ctypes.c_uint64 * 2)(0x00000000000000b7, 0x0000000000000095)  # r0=0; exit
        lic = ctypes.create_string_buffer(b"GPL")
        attr = (ctypes.c_uint8 * 128)()
        ctypes.memmove(attr, (ctypes.c_uint32 * 2)(1, 2), 8)    # SOCKET_FILTER, 2 insns
        ctypes.memmove(ctypes.byref(attr, 8), (ctypes.c_uint64 * 2)(
            ctypes.addressof(insns), ctypes.addressof(lic)), 16)
        ctypes.memmove(ctypes.byref(attr, 48), b"spyder_prog", 11)
        fd = libc.syscall(321, 5, attr, 128)                    # bpf(BPF_PROG_LOAD)
        mattr = (ctypes.c_uint32 * 8)(2, 4, 4, 1)               # BPF_MAP_CREATE: array
        libc.syscall(321, 0, mattr, 32)
        print(fd, flush=True)
    """)
    pid, fd = map(int, run_py(code).stdout.split())
    assert fd > 0
    ev = find_event(d, "kernel", lambda e: e["call"] == "bpf", pid=pid)
    assert ev["request"] == 5 and ev["flags"] == 1 and ev["name"] == "spyder_prog"
    assert ev["result"] == fd
    absent(d, "kernel", lambda e: e["call"] == "bpf" and e["request"] == 0, pid=pid, settle=0)


TIME_NRS = {"x86_64": (164, 159), "aarch64": (170, 171)}  # (settimeofday, adjtimex)


@pytest.mark.skipif(platform.machine() not in TIME_NRS, reason="syscall numbers")
def test_clock_changes_attempted(d):
    # Every call is made so the kernel refuses it: the clock of this machine never moves.
    # glibc turns settimeofday/adjtimex into clock_settime/clock_adjtime: the raw syscalls
    # are made directly.
    settimeofday, adjtimex = TIME_NRS[platform.machine()]
    code = textwrap.dedent(f"""
        import ctypes, os
        print(os.getpid(), flush=True)
        libc = ctypes.CDLL(None, use_errno=True)
        tv = (ctypes.c_long * 2)(1234567, 5000000)                  # tv_usec out of range
        libc.syscall({settimeofday}, tv, None)
        ts = (ctypes.c_long * 2)(7654321, 0)
        libc.clock_settime(1, ts)                                    # CLOCK_MONOTONIC: EINVAL
        tx = (ctypes.c_uint8 * 256)()
        libc.syscall({adjtimex}, tx)                                 # modes 0: a read
        ctypes.memmove(tx, (ctypes.c_uint32 * 1)(0x4000), 4)         # modes = ADJ_TICK,
        ctypes.memmove(ctypes.byref(tx, 88), (ctypes.c_long * 1)(1), 8)  # tick = 1: EINVAL
        libc.syscall({adjtimex}, tx)
        libc.clock_adjtime(0, tx)
    """)
    pid = int(run_py(code).stdout)
    ev = find_event(d, "kernel", lambda e: e["call"] == "settimeofday", pid=pid)
    assert ev["flags"] == 1234567 and ev["result"] == -errno.EINVAL
    ev = find_event(d, "kernel", lambda e: e["call"] == "clock_settime", pid=pid)
    assert ev["request"] == 1 and ev["flags"] == 7654321 and ev["result"] == -errno.EINVAL
    adj = [e for e in events(d, "kernel", pid) if e["call"] == "adjtimex"]
    assert len(adj) == 1 and adj[0]["flags"] == 0x4000 and adj[0]["result"] == -errno.EINVAL
    ev = find_event(d, "kernel", lambda e: e["call"] == "clock_adjtime", pid=pid)
    assert ev["request"] == 0 and ev["flags"] == 0x4000


def test_hostname_and_domainname_in_own_uts_namespace(d):
    code = textwrap.dedent("""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.unshare(0x04000000) == 0                          # CLONE_NEWUTS
        print(os.getpid(), flush=True)
        assert libc.sethostname(b"spyder-hostXYZ", 11) == 0          # only "spyder-host"
        assert libc.setdomainname(b"spyder.example", 14) == 0
    """)
    pid = int(run_py(code).stdout)
    ev = find_event(d, "kernel", lambda e: e["call"] == "sethostname", pid=pid)
    assert ev["name"] == "spyder-host" and ev["result"] == 0
    ev = find_event(d, "kernel", lambda e: e["call"] == "setdomainname", pid=pid)
    assert ev["name"] == "spyder.example"


TKILL = {"x86_64": (200, 234), "aarch64": (130, 131)}  # (tkill, tgkill)


@pytest.mark.skipif(platform.machine() not in TKILL, reason="syscall numbers")
def test_signals_to_others_only(d):
    tkill, tgkill = TKILL[platform.machine()]
    victim = subprocess.Popen(["sleep", "30"])
    code = textwrap.dedent(f"""
        import ctypes, os, signal
        print(os.getpid(), flush=True)
        libc = ctypes.CDLL(None, use_errno=True)
        os.kill({victim.pid}, 0)                                     # existence check
        os.kill(os.getpid(), signal.SIGCHLD)                          # to itself
        libc.syscall({tgkill}, {victim.pid}, {victim.pid}, signal.SIGCONT)
        libc.syscall({tkill}, {victim.pid}, signal.SIGSTOP)
        os.kill({victim.pid}, signal.SIGKILL)
        try:
            os.kill(999999, signal.SIGTERM)                           # ESRCH
        except ProcessLookupError:
            pass
    """)
    pid = int(run_py(code).stdout)
    victim.wait()
    ev = find_event(d, "kernel", lambda e: e["call"] == "kill" and e["request"] == 9, pid=pid)
    assert ev["target_pid"] == victim.pid and ev["result"] == 0
    ev = find_event(d, "kernel", lambda e: e["call"] == "tgkill", pid=pid)
    assert ev["target_pid"] == victim.pid and ev["request"] == signal.SIGCONT
    ev = find_event(d, "kernel", lambda e: e["call"] == "tkill", pid=pid)
    assert ev["target_pid"] == victim.pid and ev["request"] == signal.SIGSTOP
    ev = find_event(d, "kernel", lambda e: e["target_pid"] == 999999, pid=pid)
    assert ev["result"] == -errno.ESRCH
    absent(d, "kernel", lambda e: e["call"] == "kill" and e["request"] in (0, signal.SIGCHLD),
           pid=pid, settle=0)


def test_ignored_comm_never_leaves_the_kernel(d, tmp_path):
    tool = tmp_path / IGNORED
    shutil.copy(sys.executable, tool)
    code = "import os; print(os.getpid(), flush=True); os.memfd_create('spyder-ign')"
    before = status(d)["kernel_counters"].get("ignored_comm", 0)
    pid = int(subprocess.run([str(tool), "-c", code], capture_output=True, text=True,
                             check=True).stdout)
    control = int(run_py(code).stdout)
    find_event(d, "kernel", lambda e: e["call"] == "memfd_create", pid=control)
    absent(d, "kernel", lambda e: True, pid=pid, settle=0)
    absent(d, "exec", lambda e: True, pid=pid, settle=0)
    assert status(d)["kernel_counters"]["ignored_comm"] > before
