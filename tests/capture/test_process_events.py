"""Process and credential events on the real kernel, read back with `spyderctl events`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml
from capture_support import find_event, run_py, start_daemon, status
from conftest import REPO, Spyderd

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def d(tmp_path_factory, journald, loader):
    daemon = start_daemon(tmp_path_factory.mktemp("procd"), {"threads": True}, loader=loader)
    yield daemon
    daemon.stop()


def test_status_reports_probes_attached_and_self_tested(d, loader):
    st = status(d)
    assert st["loader"]["name"] == loader
    probes = st["probes"]
    for name in ("process", "network", "creds", "kernel"):
        assert probes[name]["state"] == "attached", probes[name]
        assert probes[name]["selftest"] == "ok", probes[name]
        assert probes[name]["text"].startswith("attached, self-test ok")
    text = d.ctl("status", check=True).stdout
    assert "probe process: attached, self-test ok" in text
    assert f"  loader: {loader}" in text


def test_loader_footprint(d, loader):
    """With the CO-RE objects no compiler is mapped into the daemon; bcc compiles at start."""
    maps = Path(f"/proc/{d.proc.pid}/maps").read_text()
    compiler = [lib for lib in ("libclang", "libLLVM", "libbcc") if lib in maps]
    if loader == "libbpf":
        assert compiler == [], f"the libbpf loader mapped {compiler}"
        assert "libbpf.so" in maps
    else:
        assert "libbcc" in compiler


def test_exec_argv_cwd_ids(d, tmp_path):
    work = tmp_path / "deep" / "er"
    work.mkdir(parents=True)
    p = subprocess.run(["/bin/sh", "-c", 'echo $$; exec /bin/echo spyder-arg "two words"'],
                       cwd=work, capture_output=True, text=True, check=True)
    pid = int(p.stdout.split()[0])
    ev = find_event(d, "exec", lambda e: e["filename"] == "/bin/echo", pid=pid)
    assert ev["args"] == ["/bin/echo", "spyder-arg", "two words"]
    assert ev["cwd"] == str(work)
    assert ev["args_truncated"] is False
    assert ev["execveat"] is False
    assert ev["interpreter"] == ""
    assert ev["uid"] == 0 and ev["euid"] == 0
    assert ev["ppid"] == os.getpid()
    assert ev["start"] > 0


def test_exec_long_argv_is_truncated_and_flagged(d):
    p = subprocess.run(["/bin/sh", "-c", 'echo $$; exec /bin/true "$@"', "sh",
                        *(["x" * 200] * 40)], capture_output=True, text=True, check=True)
    pid = int(p.stdout.split()[0])
    ev = find_event(d, "exec", lambda e: e["filename"] == "/bin/true", pid=pid)
    assert ev["args_truncated"] is True
    assert ev["args"][0] == "/bin/true" and ev["args"][1] == "x" * 200
    assert len(ev["args"]) < 41


def test_script_interpreter(d, tmp_path):
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho $$\n")
    script.chmod(0o755)
    pid = int(subprocess.run([str(script)], capture_output=True, text=True,
                             check=True).stdout)
    ev = find_event(d, "exec", lambda e: e["filename"] == str(script), pid=pid)
    assert ev["interpreter"] == "/bin/sh"
    assert ev["args"][:1] == [str(script)]


def test_execveat(d):
    # fexecve() is execveat(fd, "", argv, envp, AT_EMPTY_PATH) in glibc.
    code = textwrap.dedent("""
        import os, sys
        print(os.getpid(), flush=True)
        fd = os.open("/bin/true", os.O_RDONLY)
        os.execve(fd, ["true", "via-fd"], {})
    """)
    pid = int(run_py(code).stdout)
    ev = find_event(d, "exec", lambda e: e["args"] == ["true", "via-fd"], pid=pid)
    assert ev["execveat"] is True
    assert ev["filename"].startswith("/dev/fd/")


@pytest.fixture
def open_dir():
    """A directory any user can traverse (pytest's tmp dirs are 0700)."""
    path = tempfile.mkdtemp(prefix="spyder-test-", dir="/var/tmp")
    os.chmod(path, 0o755)
    yield Path(path)
    shutil.rmtree(path)


def test_setuid_binary_gives_euid_and_loginuid_session(d, open_dir):
    tool = open_dir / "suid-id"
    shutil.copy("/usr/bin/id", tool)
    os.chmod(tool, 0o4755)

    def as_nobody_logged_in():
        with open("/proc/self/loginuid", "w") as f:  # what pam_loginuid does at login
            f.write("1000")
        os.setgid(65534)
        os.setuid(65534)

    out = subprocess.run([str(tool), "-u"], preexec_fn=as_nobody_logged_in,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0"  # the kernel honoured the setuid bit (no nosuid mount)
    ev = find_event(d, "exec", lambda e: e["filename"] == str(tool))
    assert ev["uid"] == 65534
    assert ev["euid"] == 0
    assert ev["loginuid"] == 1000
    assert ev["sessionid"] not in (-1, 0)


def test_fork_and_thread(d):
    code = textwrap.dedent("""
        import os, threading
        print(os.getpid(), flush=True)
        child = os.fork()
        if child == 0:
            os._exit(0)
        os.waitpid(child, 0)
        print(child, flush=True)
        t = threading.Thread(target=lambda: None)
        t.start(); t.join()
        print(t.native_id, flush=True)
    """)
    parent, child, tid = map(int, run_py(code).stdout.split())
    fork = find_event(d, "fork", lambda e: e["pid"] == child)
    assert fork["ppid"] == parent
    assert fork["thread"] is False
    assert fork["clone_flags"] & 0xFF == signal.SIGCHLD
    assert fork["child_start"] > 0
    thread = find_event(d, "fork", lambda e: e["tid"] == tid)
    assert thread["thread"] is True
    assert thread["pid"] == parent and thread["ppid"] == parent
    assert thread["clone_flags"] & 0x10000  # CLONE_THREAD
    assert status(d)["kernel_counters"]["threads"] >= 1


def test_exit_code_and_signal(d):
    p = subprocess.run(["/bin/sh", "-c", "echo $$; exit 3"], capture_output=True, text=True,
                       check=False)
    assert p.returncode == 3
    ev = find_event(d, "exit", lambda e: True, pid=int(p.stdout))
    assert ev["code"] == 3 and ev["signal"] == 0
    sleeper = subprocess.Popen(["sleep", "30"])
    sleeper.kill()
    sleeper.wait()
    ev = find_event(d, "exit", lambda e: True, pid=sleeper.pid)
    assert ev["signal"] == signal.SIGKILL
    assert ev["comm"] == "sleep"


def test_credential_changes(d):
    code = textwrap.dedent("""
        import os
        print(os.getpid(), flush=True)
        os.setresgid(-1, 65534, -1)
        os.setresuid(-1, 65534, -1)
        try:
            os.setuid(12345)          # euid 65534 without CAP_SETUID: EPERM
        except PermissionError:
            pass
        os.setresuid(-1, 0, -1)       # saved uid 0 allows going back
        os.setreuid(0, 0)
    """)
    pid = int(run_py(code).stdout)
    ev = find_event(d, "cred", lambda e: e["call"] == "setresuid" and e["args"][1] == 65534,
                    pid=pid)
    assert ev["args"] == [-1, 65534, -1]
    assert ev["result"] == 0 and ev["old_uid"] == 0 and ev["old_euid"] == 0
    ev = find_event(d, "cred", lambda e: e["call"] == "setuid", pid=pid)
    assert ev["args"] == [12345] and ev["result"] == -1  # -EPERM
    assert ev["old_euid"] == 65534
    ev = find_event(d, "cred", lambda e: e["call"] == "setresgid", pid=pid)
    assert ev["args"] == [-1, 65534, -1]
    find_event(d, "cred", lambda e: e["call"] == "setreuid" and e["args"] == [0, 0], pid=pid)


def test_capset(d):
    code = textwrap.dedent("""
        import ctypes, os
        print(os.getpid(), flush=True)
        libc = ctypes.CDLL(None, use_errno=True)
        hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
        data = (ctypes.c_uint32 * 6)()
        libc.capget(hdr, data)
        data[0] &= ~(1 << 21)         # drop CAP_SYS_ADMIN from the effective set
        print(libc.capset(hdr, data), data[0], data[1], data[3], data[4], flush=True)
    """)
    pid, rc, eff_lo, perm_lo, eff_hi, perm_hi = map(int, run_py(code).stdout.split())
    ev = find_event(d, "cred", lambda e: e["call"] == "capset", pid=pid)
    assert rc == 0 and ev["result"] == 0
    assert ev["args"][0] == 0
    assert ev["args"][1] == eff_lo | eff_hi << 32
    assert ev["args"][2] == perm_lo | perm_hi << 32
    assert not ev["args"][1] & (1 << 21)


def test_setsid_and_prctl_name(d):
    code = textwrap.dedent("""
        import ctypes, os
        print(os.getpid(), flush=True)
        child = os.fork()
        if child == 0:
            os.setsid()
            ctypes.CDLL(None).prctl(15, b"spyder-renamed", 0, 0, 0)
            os._exit(0)
        os.waitpid(child, 0)
        print(child, flush=True)
    """)
    _parent, child = map(int, run_py(code).stdout.split())
    ev = find_event(d, "setsid", lambda e: True, pid=child)
    assert ev["result"] == child
    ev = find_event(d, "prctl", lambda e: True, pid=child)
    assert ev["option"] == 15 and ev["name"] == "spyder-renamed" and ev["result"] == 0


def test_daemon_own_activity_never_recorded(d):
    pid = d.proc.pid
    for kind in ("exec", "fork", "cred", "kernel", "connect", "udp", "unix_connect"):
        r = d.ctl("events", "--kind", kind, "--pid", str(pid), "-o", "json", check=True)
        assert r.stdout.strip() == "", f"spyderd's own {kind} events were recorded"


def _child_of(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children, f"no child of {pid}"
    return int(children[0])


def test_daemon_in_its_own_pid_namespace_never_records_itself(tmp_path, journald, loader):
    """spyderd in a container sees itself as a small pid (1 here): the probes compare pids
    in its namespace, so neither it nor the host's pid 1 is mistaken for it."""
    cfg = yaml.safe_load((REPO / "packaging/spyderd.yaml").read_text())
    cfg["capture"].update({"loader": loader, "threads": True})  # its own threads: events
    cfg["store"]["batch_delay"] = 0.2
    path = tmp_path / "spyderd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    d = Spyderd(tmp_path, [str(REPO / "rules")], config=path)
    d.wrapper = ["unshare", "--pid", "--fork", "--kill-child=SIGTERM"]
    d.start()
    try:
        host_pid = _child_of(d.proc.pid)  # the daemon, pid 1 in its namespace
        assert "NSpid:" in (s := Path(f"/proc/{host_pid}/status").read_text())
        assert s.split("NSpid:")[1].split("\n")[0].split()[-1] == "1"
        assert status(d)["probes"]["process"]["selftest"] == "ok"  # its child is recorded
        other = run_py("import os, threading; t = threading.Thread(target=print); t.start();"
                       " t.join(); print(os.getpid())")
        find_event(d, "fork", lambda e: e.get("thread"), pid=int(other.stdout.split()[-1]))
        for kind in ("exec", "fork", "cred", "kernel", "connect", "udp", "unix_connect"):
            r = d.ctl("events", "--kind", kind, "--pid", str(host_pid), "-o", "json",
                      check=True)
            assert r.stdout.strip() == "", f"spyderd's own {kind} events were recorded"
    finally:  # unshare --fork ignores SIGTERM: stop the daemon itself
        if d.proc.poll() is None:
            os.kill(_child_of(d.proc.pid), signal.SIGTERM)
            d.proc.wait(60)
