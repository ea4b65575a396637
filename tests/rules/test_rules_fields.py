"""The field catalogue on every event kind: file, kernel, cred, alert, wrote_exec, network,
enrichment attributes, literals (0o modes, durations), and the W303 kind check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from rules_support import check, proc, rule_text, write

from spyderd.errors import RuleError
from spyderd.model import (
    AlertEvent,
    BindEvent,
    CredEvent,
    ExecEvent,
    FileEvent,
    KernelEvent,
    PrctlEvent,
    UdpEvent,
    UnixConnectEvent,
    WroteExecEvent,
)
from spyderd.rules import FIELDS, compile_condition, load_rules
from spyderd.rules.docs import render_falco
from spyderd.rules.fields import HOST_NS

S = 1_000_000_000
NODE = proc("n", "/usr/bin/python3", pid=7, args=["python3", "x.py"])


def file_ev(op: str, path: str, **kw) -> FileEvent:
    return FileEvent(time=1, pid=7, op=op, path=path, **kw)


@pytest.mark.parametrize(
    "ev, condition, expected",
    [
        (file_ev("chmod", "/tmp/sh", mode=0o104755), "file.setuid and not file.setgid", True),
        (file_ev("chmod", "/tmp/sh", mode=0o102755), "file.setgid", True),
        (file_ev("chmod", "/tmp/sh", mode=0o100755), "file.setuid", False),
        (file_ev("chmod", "/tmp/sh", mode=0o4755), "file.mode = 0o4755", True),
        (file_ev("unlink", "/tmp/sh"), "file.setuid exists", False),
        (file_ev("rename", "/etc/passwd+", path2="/etc/passwd"), "file.target = /etc/passwd", True),
        (file_ev("rename", "/etc/passwd+", path2="/etc/passwd"), "file.path = /etc/passwd+", True),
        (file_ev("rename", "/etc/passwd+", path2="/etc/passwd"),
         "file.changed_path = /etc/passwd", True),
        (file_ev("symlink", "/etc/shadow", path2="/tmp/s"), "file.link_path = /tmp/s", True),
        (file_ev("symlink", "/etc/shadow", path2="/tmp/s"), "file.link_to = /etc/shadow", True),
        (file_ev("link", "/etc/shadow", path2="/tmp/h"), "file.link_to = /etc/shadow", True),
        (file_ev("rename", "/a", path2="/b"), "file.link_path exists", False),
        (file_ev("open", "/etc/shadow", flags=0), "file.access = 'read'", True),
        (file_ev("open", "/etc/shadow", flags=0o1101), "file.access = 'write'", True),
        (file_ev("open", "/var/log/x", flags=0o1001), "file.truncating", True),
        (file_ev("open", "/var/log/x", flags=0o2001), "file.truncating", False),
        (file_ev("truncate", "/var/log/x"), "file.truncating", True),
        (file_ev("open", "/root/.ssh/authorized_keys"), "file.name = 'authorized_keys'", True),
        (file_ev("open", "/root/.ssh/authorized_keys"), "file.directory = /root/.ssh", True),
        (file_ev("chown", "/etc/x", owner=0), "file.owner = 0 and not file.group exists", True),
        (file_ev("open_failed", "/etc/shadow", result=-13), "file.result = -13", True),
        (file_ev("open_failed", "/etc/shadow", result=-13), "evt.result < 0", True),
        (KernelEvent(time=1, pid=7, call="ptrace", request=0x4206, target_pid=9),
         "kernel.call = ptrace and kernel.request = 0x4206 and kernel.target_pid = 9", True),
        (KernelEvent(time=1, pid=7, call="syscall", nr=313),
         "kernel.nr = 313 and not kernel.name exists", True),
        (KernelEvent(time=1, pid=7, call="finit_module", name="rk"), "kernel.name = rk", True),
        (CredEvent(time=1, pid=7, call="setresuid", args=[-1, 0, -1], old_uid=1000),
         "cred.new_uid = 0 and cred.old_uid = 1000 and cred.args contains 0", True),
        (CredEvent(time=1, pid=7, call="setgid", args=[0]), "cred.new_uid exists", False),
        (AlertEvent(time=1, pid=7, message="Out of memory", unit="db.service", priority=3),
         "alert.message icontains 'memory' and alert.unit = db.service and alert.priority < 4",
         True),
        (WroteExecEvent(time=90 * S, pid=7, path="/tmp/x", writer_pid=6, writer_comm="curl",
                        write_time=30 * S),
         "wrote_exec.delay = 1m and wrote_exec.delay < 61s and file.path = /tmp/x", True),
        (BindEvent(time=1, pid=7, family=4, protocol="udp", local_ip="0.0.0.0", local_port=53),
         ("connection.protocol = udp and connection.local_port = 53 "
         "and connection.direction = bind"), True),
        (UdpEvent(time=1, pid=7, call="sendto", family=6, remote_ip="2001:db8::1",
                  remote_port=53),
         "connection.remote_ip in (2001:db8::/32) and connection.call = sendto", True),
        (UnixConnectEvent(time=1, pid=7, path="/run/docker.sock"),
         "unix.path = /run/docker.sock", True),
        (PrctlEvent(time=1, pid=7, option=15, name="[kworker/0:0]"),
         "prctl.option = 15 and prctl.name startswith '[kworker'", True),
    ],
)  # fmt: skip
def test_event_fields(ev, condition: str, expected: bool) -> None:
    assert check(condition, NODE, ev=ev) is expected


def test_exec_facts_fall_back_to_the_exec_event() -> None:
    node = proc("n", "/opt/x/run.sh", pid=7)
    ev = ExecEvent(time=1, pid=7, filename="/opt/x/run.sh", cwd="/srv", interpreter="/bin/sh",
                   euid=0, loginuid=1000, execveat=True)  # fmt: skip
    cond = "process.cwd = /srv and process.interpreter = /bin/sh and process.euid = 0"
    assert check(cond + " and process.loginuid = 1000 and user.loginuid = 1000", node, ev=ev)
    assert not check("process.loginuid exists", proc("m", "/bin/sh", loginuid=-1))
    assert check("process.cwd = /home", proc("m", "/bin/sh", cwd="/home"), ev=ev)


def test_enrichment_attributes() -> None:
    node = proc(
        "c", "/bin/sh", container_id="abc", container_name="web", container_image="nginx:1",
        container_runtime="docker", k8s_pod="web-0", k8s_namespace="shop", k8s_pod_uid="u-1",
        k8s_container="nginx", pidns=HOST_NS["pidns"], userns=4026532000, tty="pts/1",
        user="www-data", group="www-data", interactive=True, netns=4026531840,
    )  # fmt: skip
    cond = (
        "container.id = abc and container.name = web and container.image startswith nginx "
        "and container.runtime = docker and k8s.pod = web-0 and k8s.namespace = shop "
        "and k8s.pod_uid = u-1 and k8s.container = nginx and process.host_pidns "
        "and not process.host_userns and process.tty = pts/1 and user.name = www-data "
        "and group.name = www-data and process.interactive and process.netns = 4026531840"
    )
    assert check(cond, node)
    assert not check("container.id exists or process.host_pidns exists", proc("h", "/bin/sh"))


def test_memfd_and_tmp_exec_fields() -> None:
    assert check("process.memfd", proc("m", "/memfd:x (deleted)"))
    ev = ExecEvent(time=1, pid=7, filename="/dev/fd/3", execveat=True)
    assert check("process.memfd", proc("m", "/dev/fd/3"), ev=ev)
    assert not check("process.memfd", proc("m", "/dev/fd/3"))


def test_octal_and_hex_literals_but_no_bare_leading_zero() -> None:
    ev = file_ev("chmod", "/x", mode=0o755)
    assert check("file.mode = 0o755 and file.mode = 493 and file.mode = 0x1ed", NODE, ev=ev)
    with pytest.raises(RuleError) as exc:
        compile_condition("file.mode = 0755")
    assert exc.value.diagnostics[0].code == "E305"
    with pytest.raises(RuleError):
        compile_condition("wrote_exec.delay < 10 minutes")


def test_field_for_another_event_kind_warns(tmp_path: Path) -> None:
    text = rule_text(condition="process.name = sh and file.path = /etc/passwd")
    rs = load_rules([write(tmp_path, "r.yaml", text)])
    (w,) = rs.warnings
    assert w.code == "W303" and (w.line, w.col) == (3, 14)
    assert "file.path is never present on exec events (it comes with file, wrote_exec)" in str(w)


def test_catalogue_documents_every_field_in_docs() -> None:
    # a fresh interpreter: compiling rules registers dynamic fields (process.env.NAME, ...)
    # in this process's FIELDS, which the shipped catalogue rightly does not list
    table = subprocess.run([sys.executable, "-c", ("from spyderd.rules.fields import markdown;"
                            "print(markdown(), end='')")], capture_output=True, text=True,
                           check=True, cwd=Path(__file__).resolve().parents[2]).stdout
    for name in FIELDS:
        if not name.startswith("process.env."):
            assert f"`{name}`" in table
    docs = (Path(__file__).resolve().parents[2] / "docs/rules.md").read_text()
    assert table in docs, "docs/rules.md is stale: regenerate with python -m spyderd.rules.docs"


def test_falco_users_page_has_the_current_tables() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs/falco-users.md").read_text()
    assert render_falco(page) == page, "regenerate with python -m spyderd.rules.docs"
