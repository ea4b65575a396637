"""A detached BPF program is noticed at the next watchdog tick, reported (critical journald
entry with its catalog MESSAGE_ID, `spyderctl status`, counters) and attached again.

The tampering is real: gdb attaches to the running daemon and makes it close() one of its
link (libbpf) or perf event (bcc) descriptors, as an attacker with ptrace rights would. The
kernel drops the last reference and takes the program off its hook. (Tracepoint and raw
tracepoint links cannot be detached with BPF_LINK_DETACH or updated with BPF_LINK_UPDATE:
the kernel refuses with EOPNOTSUPP, which the unit tests below and the rule examples
cover.)"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from spyderd.capture.integrity import (
    BPF_LINK_GET_FD_BY_ID,
    Attachment,
    BpfSys,
    ProbeIntegrity,
    inspect,
)
from spyderd.daemon.service import MSG_PROBE_TAMPERED
from tests.conftest import REPO, Spyderd, journal_entries, wait_for

BPF_RULE = "BPF program detached or link replaced"


def _fdinfo(pid: int) -> dict[int, dict[str, str]]:
    """fd -> its /proc fdinfo fields, for the daemon's BPF links."""
    out = {}
    for p in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            text = p.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "link_id" in fields:
            out[int(p.name)] = fields
    return out


def _perf_fds(pid: int) -> list[int]:
    fds = []
    for p in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(p) == "anon_inode:[perf_event]":
                fds.append(int(p.name))
        except OSError:
            continue
    return sorted(fds)


def _gdb_close(pid: int, fd: int) -> None:
    """Make the daemon close `fd` (gdb calls close() in it and lets go)."""
    r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-q",
                        "-ex", f"call (int)close({fd})"],
                       check=False, capture_output=True, text=True, timeout=120)
    assert "$1 = 0" in r.stdout, r.stdout + r.stderr


def _bpftool_detach_is_refused_and_found(pid: int, link_id: str) -> None:
    """`bpftool link detach` on a tracepoint link: the kernel refuses (EOPNOTSUPP), and the
    attempt is a finding naming bpftool."""
    tool = subprocess.Popen(["bpftool", "link", "detach", "id", link_id],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = tool.communicate(timeout=30)
    assert tool.returncode != 0 and "not supported" in out, out
    found = wait_for(lambda: journal_entries(SYSLOG_IDENTIFIER="spyderd", _PID=str(pid),
                                             SPYDER_RULE=BPF_RULE, SPYDER_PID=str(tool.pid)),
                     30)
    assert found and "result -95" in found[-1]["MESSAGE"], found


def _tamper_entries(pid: int) -> list[dict]:
    return journal_entries(SYSLOG_IDENTIFIER="spyderd", MESSAGE_ID=MSG_PROBE_TAMPERED,
                           _PID=str(pid))


def _daemon(base: Path, loader: str) -> Spyderd:
    """spyderd with the kernel probe only (the check is the same for every probe; bcc
    compiles much faster), on `loader`."""
    cfg = yaml.safe_load((REPO / "packaging/spyderd.yaml").read_text())
    cfg["capture"].update(loader=loader, disable=["process", "network", "files", "creds"])
    path = base / "spyderd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return Spyderd(base, [str(REPO / "rules")], config=path)


@pytest.fixture
def daemon(tmp_path, journald, loader):
    d = _daemon(tmp_path, loader)
    yield d
    d.stop()


@pytest.mark.root
def test_closed_attachment_is_reported_and_attached_again(daemon, loader):
    daemon.start()
    pid = daemon.proc.pid
    if loader == "libbpf":  # a link: closing our descriptor detaches it
        fd, info = next(iter(sorted(_fdinfo(pid).items())))
        key, value = "SPYDER_PROBE_LINK_ID", info["link_id"]
        _bpftool_detach_is_refused_and_found(pid, value)
    else:  # bcc's tracepoints are perf events running the program, without a link
        fd = _perf_fds(pid)[0]
        key, value = "SPYDER_PROBE_LINK_ID", "0"
    _gdb_close(pid, fd)
    found = wait_for(lambda: [e for e in _tamper_entries(pid) if e.get(key) == value], 30)
    assert found, "no journald entry for the detached attachment"
    e = found[-1]
    assert e["PRIORITY"] == "2" and e["SPYDER_PROBE_STATE"] == "detached", e
    assert e["SPYDER_PROBE"] == "kernel", e
    st = json.loads(daemon.ctl("status", "-o", "json").stdout)
    pi = st["probe_integrity"]
    assert pi["detached"] == 1 and pi["faults"][0]["prog_id"] == int(e["SPYDER_PROBE_PROG_ID"])
    assert "DETACHED at" in st["probes"]["kernel"]["integrity"]
    text = daemon.ctl("status").stdout
    if loader == "libbpf":
        assert e["SPYDER_PROBE_REATTACHED"] == "1" and "re-attached (link" in e["MESSAGE"], e
        again = [f for f in _fdinfo(pid).values() if f["prog_id"] == info["prog_id"]]
        assert again and again[0]["link_id"] != value, again  # a new link, same program
        assert pi["reattached"] == 1 and pi["reattach_failed"] == 0, pi
        assert f"link {value} detached" in text and "re-attached" in text, text
    else:
        assert e["SPYDER_PROBE_REATTACHED"] == "0" and "NOT re-attached" in e["MESSAGE"], e
        assert pi["reattach_failed"] == 1 and pi["unchecked"].startswith("bcc"), pi
        assert "NOT re-attached" in text, text
    time.sleep(2)  # reported once, not at every tick
    assert len([e for e in _tamper_entries(pid) if e.get(key) == value]) == 1


# -- without the daemon: the check itself, on real kernel objects where it needs them ----

def _att(**kw) -> Attachment:
    base = {"probe": "files", "program": "p", "hook": "tp/x", "kind": "link", "fd": -1,
            "prog_id": 7, "link_id": 42}
    return Attachment(**{**base, **kw})


class _Sys(BpfSys):
    """What the kernel answers about our objects, as set by the test."""

    def __init__(self, info=None, perf=None, progs=(7,)) -> None:
        super().__init__()
        self._info, self._perf, self._progs = info, perf, progs

    def info(self, fd):
        return self._info

    def perf_programs(self, fd):
        return self._perf

    def exists(self, cmd, obj_id):
        return obj_id in self._progs


def test_inspect_tells_closed_replaced_and_gone_apart():
    assert inspect(_att(), _Sys(info=(7, 42, 7))) is None
    assert inspect(_att(), _Sys(info=None))[0] == "detached"
    assert inspect(_att(), _Sys(info=(7, 43, 7)))[0] == "detached"  # fd reused
    state, why = inspect(_att(), _Sys(info=(7, 42, 9)))
    assert state == "replaced" and "program id 9" in why
    assert inspect(_att(), _Sys(info=(7, 42, 7), progs=()))[0] == "gone"
    assert inspect(_att(kind="perf", link_id=0), _Sys(perf=[3, 7])) is None
    assert inspect(_att(kind="perf", link_id=0), _Sys(perf=[3]))[0] == "detached"
    assert inspect(_att(kind="perf", link_id=0), _Sys(perf=None))[0] == "detached"


def test_a_fault_is_reported_once_and_a_failed_reattach_is_said():
    def refuse(a):
        raise OSError(95, "Operation not supported")

    pi = ProbeIntegrity([_att()], _Sys(info=None), refuse)
    faults = pi.check(1000.0)
    assert len(faults) == 1 and not faults[0].reattached
    assert "Operation not supported" in faults[0].reattach_error
    assert pi.check(1001.0) == []
    assert pi.counters["detached"] == 1 and pi.counters["reattach_failed"] == 1
    assert "NOT re-attached" in pi.probe_notes()["files"]
    fresh = _att(link_id=50)
    pi = ProbeIntegrity([_att()], _Sys(info=None), lambda a: fresh)
    assert pi.check()[0].reattached and pi.attachments == [fresh]
    assert pi.status()["reattached"] == 1


def test_real_kernel_answers_for_a_missing_link():
    sys = BpfSys()
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        assert sys.info(fd) is None  # not a BPF object
        assert sys.perf_programs(fd) is None
    finally:
        os.close(fd)
    if os.geteuid() == 0:
        assert not sys.exists(BPF_LINK_GET_FD_BY_ID, 0xFFFFFFF0)  # no such link
