"""Operators and constants added for Falco users: case-insensitive variants, element vs
substring, pmatch, named constants and bit tests, structured exceptions, append/override."""

from __future__ import annotations

from pathlib import Path

import pytest
from rules_support import check, proc, write

from spyderd.capture.probes.creds import CALLS as CRED_CALLS
from spyderd.capture.probes.kernel import CALLS as KERNEL_CALLS
from spyderd.capture.watch import OPS
from spyderd.model import ExecEvent, FileEvent, KernelEvent
from spyderd.rules import FIELDS, DictContext, load_rules

NODE = proc("n", "/usr/bin/Python3", pid=7, args=["python3", "-c", "import os; os.system('id')"])


def file_ev(op: str, path: str, **kw) -> FileEvent:
    return FileEvent(time=1, pid=7, op=op, path=path, **kw)


@pytest.mark.parametrize(
    "condition, expected",
    [
        ("process.name i= python3", True),
        ("process.name = python3", False),
        ("process.name i!= PYTHON3", False),
        ("process.exe istartswith /USR/", True),
        ("process.exe iendswith /PYTHON3", True),
        ("process.exe iglob '/usr/*/python?'", True),
        ("process.exe imatches 'bin/py'", True),
        ("process.exe matches 'bin/py'", False),
        ("process.name iin (PYTHON3, perl)", True),
        ("process.name icontains THON", True),
        ("process.args has -c", True),
        ("process.args ihas -C", True),
        ("process.args contains import", False),  # elements, not substrings
        ("process.cmdline contains import", True),
        ("process.args iin (-C)", True),
        ("process.exe pmatch (/usr/bin, /opt)", True),
        ("process.exe pmatch (/usr/bi)", False),  # whole path components only
        ("process.exe pmatch (/usr/bin/Python3)", True),
        ("process.exe ipmatch (/USR/BIN/)", True),
    ],
)
def test_string_operators(condition: str, expected: bool) -> None:
    assert check(condition, NODE) is expected


def test_pmatch_against_a_list() -> None:
    lists = {"system_dirs": ["/etc", "/usr/lib/"]}
    node = proc("n", "/bin/x")
    assert check("file.path pmatch system_dirs", node, ev=file_ev("open", "/etc/x"), lists=lists)
    assert not check("file.path pmatch system_dirs", node, ev=file_ev("open", "/etcx"),
                     lists=lists)  # fmt: skip
    assert check("file.path pmatch system_dirs", node, ev=file_ev("open", "/usr/lib/a/b"),
                 lists=lists)  # fmt: skip


@pytest.mark.parametrize(
    "ev, condition, expected",
    [
        (file_ev("open", "/x", flags=0o1101), "file.flags & O_TRUNC", True),
        (file_ev("open", "/x", flags=0o101), "file.flags & O_TRUNC", False),
        (file_ev("open", "/x", flags=0o2001), "file.flags & O_TRUNC|O_APPEND", True),
        (file_ev("open", "/x", flags=0o1101), "file.flags & O_ACCMODE = O_WRONLY", True),
        (file_ev("open", "/x", flags=0o1102), "file.flags & O_ACCMODE = O_WRONLY", False),
        (file_ev("chmod", "/x", mode=0o4755), "file.mode & S_ISUID|S_ISGID != 0", True),
        (file_ev("chmod", "/x", mode=0o755), "file.mode & S_ISUID|S_ISGID != 0", False),
        (KernelEvent(time=1, pid=7, call="ptrace", request=16),
         "kernel.request in (PTRACE_ATTACH, PTRACE_SEIZE)", True),
        (KernelEvent(time=1, pid=7, call="ptrace", request=0x4206),
         "kernel.request = PTRACE_SEIZE", True),
        (KernelEvent(time=1, pid=7, call="kill", request=9), "kernel.request = SIGKILL", True),
        (KernelEvent(time=1, pid=7, call="kill", request=15), "kernel.request = SIGKILL", False),
    ],
)  # fmt: skip
def test_constants_and_bits(ev, condition: str, expected: bool) -> None:
    assert check(condition, proc("n", "/bin/x"), ev=ev) is expected


RULES = """\
- macro: editors
  condition: process.name = vim
- rule: etc write
  event: file
  condition: file.changed_path startswith /etc/
  severity: high
  output: "{process.name} {file.changed_path}"
  exceptions:
    - name: package_tools
      fields: [process.name, file.changed_path]
      comps: [=, pmatch]
      values:
        - [apt, /etc/apt]
    - name: managers
      fields: process.name
      comps: in
      values: [ansible, salt]
"""

SITE = """\
- macro: editors
  append: true
  condition: or process.name = nano
- rule: etc write
  append: true
  condition: and not editors
  exceptions:
    - name: package_tools
      values:
        - [dpkg, /etc/dpkg]
- rule: etc write
  override:
    severity: replace
  severity: low
"""


@pytest.mark.parametrize(
    "exe, path, fires",
    [
        ("/bin/cp", "/etc/passwd", True),
        ("/usr/bin/apt", "/etc/apt/sources.list", False),
        ("/usr/bin/apt", "/etc/passwd", True),
        ("/usr/bin/dpkg", "/etc/dpkg/x", False),  # row appended by the site file
        ("/usr/bin/ansible", "/etc/x", False),
        ("/usr/bin/vim", "/etc/x", False),  # condition appended by the site file
        ("/usr/bin/nano", "/etc/x", False),  # macro appended the Falco way
    ],
)
def test_structured_exceptions_and_appends(tmp_path: Path, exe: str, path: str,
                                           fires: bool) -> None:  # fmt: skip
    rs = load_rules([write(tmp_path, "00.yaml", RULES), write(tmp_path, "10.yaml", SITE)])
    assert rs.warnings == []
    assert rs.get("etc write").severity == "low"
    node = proc("n", exe)
    matches = rs.match(file_ev("open", path), node, DictContext.of(node))
    assert bool(matches) is fires


def test_exec_event_reads_args_before_the_node_has_them() -> None:
    node = proc("n", "/bin/sh", args=None)
    node.attrs.pop("args")
    ev = ExecEvent(time=1, pid=7, filename="/bin/sh", args=["sh", "-c", "id"])
    assert check("process.args has -c and process.cmdline contains 'c id'", node, ev=ev)


def test_enumerated_values_cover_what_capture_reports() -> None:
    """Every value capture can put in an enumerated field is a known choice (no W304 on it)."""
    assert set(OPS) <= FIELDS["file.op"].choices
    assert set(KERNEL_CALLS) <= FIELDS["kernel.call"].choices
    assert set(CRED_CALLS[:9]) <= FIELDS["cred.call"].choices
