"""Issue 11 file capture: watched read-opens (capture.watch_reads) and the changes recorded
wherever they happen (setuid/setgid chmod, file capabilities, explicit timestamps,
immutable/append-only flags), on the real kernel through `spyderctl events -o json`.
The watch_reads unit tests (parsing, kernel keys) run without root."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from capture_support import absent, find_event, start_daemon
from conftest import REPO

from spyderd.capture.execinfo import DEFAULT_ENV_VARS
from spyderd.capture.watch import (
    DEFAULT_WATCH_READS,
    OTHER_OPS,
    WatchSet,
    parse_watch_reads,
    watch_read_problem,
)
from spyderd.common.config import load_config
from spyderd.errors import ConfigError

READ = 1 << OTHER_OPS["read"]


# --- watch_reads, unit ----------------------------------------------------------------------


def test_watch_reads_names_and_entries():
    entries, names = parse_watch_reads(["/etc/shadow", "/home/*/.ssh/", "/proc/*/mem",
                                        {"path": "/srv/app/", "names": ["secret.key"]}])
    assert names.files == {b"shadow", b"mem", b"secret.key"}
    assert names.dirs == {b".ssh"}
    ws = WatchSet(entries)
    assert ws.match("/etc/shadow", READ) and ws.match("/home/ann/.ssh/id_rsa", READ)
    assert ws.match("/proc/42/mem", READ) and not ws.match("/proc/42/maps", READ)
    assert names.wanted("/home/ann/.ssh/id_rsa") and not names.wanted("/etc/passwd")
    keys, first, file_lens, dir_lens = names.kernel_maps()
    assert len(keys) == 4 and file_lens == (1 << 6) | (1 << 3) | (1 << 10)
    assert first == {6 << 8 | ord("s"): 1, 3 << 8 | ord("m"): 1, 10 << 8 | ord("s"): 1,
                     1 << 13 | 4 << 8 | ord("."): 1}
    assert dir_lens == 1 << 4


def test_watch_reads_defaults_parse_and_bad_items_are_located(tmp_path):
    parse_watch_reads(DEFAULT_WATCH_READS)
    packaged = load_config(str(REPO / "packaging/spyderd.yaml"))
    assert list(packaged.capture.watch_reads) == DEFAULT_WATCH_READS
    assert list(packaged.capture.env_vars) == DEFAULT_ENV_VARS
    assert watch_read_problem("/home/*") and watch_read_problem("etc/shadow")
    assert watch_read_problem({"path": "/x/", "names": ["a/b"]})
    assert watch_read_problem("/etc/shadow") is None
    cfg = tmp_path / "c.yaml"
    cfg.write_text("capture:\n  watch_reads:\n    - /etc/shadow\n    - /opt/*\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:4:7: 'capture.watch_reads'"):
        load_config(str(cfg))


# --- live -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def d(tmp_path_factory, journald, loader):
    base = tmp_path_factory.mktemp("filesany")
    secrets = base / "secrets"
    secrets.mkdir()
    daemon = start_daemon(base, {"disable": ["network", "kernel", "creds"],
                                 "watch_reads": [*DEFAULT_WATCH_READS, f"{secrets}/"]},
                          loader=loader)
    daemon.secrets = secrets
    yield daemon
    daemon.stop()


def spawn(*cmd: str, **kw) -> int:
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    p.wait()
    return p.pid


@pytest.mark.root
def test_watched_reads_are_recorded_unwatched_are_not(d, tmp_path):
    key = d.secrets / "id_test"
    key.write_text("secret\n")
    other = tmp_path / "plain.txt"
    other.write_text("x\n")
    pid = spawn("cat", "/etc/shadow", str(key), str(other))
    ev = find_event(d, "file", lambda e: e["op"] == "read" and e["path"] == "/etc/shadow",
                    pid=pid)
    assert ev["result"] >= 0 and ev["inode"] == os.stat("/etc/shadow").st_ino
    find_event(d, "file", lambda e: e["op"] == "read" and e["path"] == str(key), pid=pid)
    absent(d, "file", lambda e: e["path"] == str(other), pid=pid)


@pytest.mark.root
def test_reading_another_process_environ_not_its_own(d):
    victim = subprocess.Popen(["sleep", "30"])
    try:
        pid = spawn("cat", f"/proc/{victim.pid}/environ", "/proc/self/environ")
    finally:
        victim.kill()
        victim.wait()
    find_event(d, "file", lambda e: e["op"] == "read"
               and e["path"] == f"/proc/{victim.pid}/environ", pid=pid)
    absent(d, "file", lambda e: e["path"] == f"/proc/{pid}/environ", pid=pid)


@pytest.mark.root
def test_setuid_chmod_and_file_capabilities_anywhere(d, tmp_path):
    target = tmp_path / f"tool-{uuid.uuid4().hex[:6]}"
    shutil.copy("/bin/true", target)
    plain = spawn("chmod", "0755", str(target))
    suid = spawn("chmod", "u+s,g+s", str(target))
    ev = find_event(d, "file", lambda e: e["op"] == "chmod" and e["path"] == str(target),
                    pid=suid)
    assert ev["mode"] & 0o6000 == 0o6000 and ev["result"] == 0
    absent(d, "file", lambda e: e["op"] == "chmod", pid=plain)
    # vfs_cap_data revision 2, effective, permitted = CAP_NET_RAW (what setcap writes)
    data = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
    cap = spawn("python3", "-c", f"import os; os.setxattr({str(target)!r}, "
                f"'security.capability', {data!r})")
    ev = find_event(d, "file", lambda e: e["op"] == "setxattr", pid=cap)
    assert ev["xattr"] == "security.capability" and ev["path"] == str(target)
    assert os.getxattr(target, "security.capability") == data
    other = spawn("python3", "-c", f"import os; os.setxattr({str(target)!r}, 'user.spyder', "
                  "b'1')")
    absent(d, "file", lambda e: e["op"] == "setxattr", pid=other)


@pytest.mark.root
def test_explicit_timestamps_and_not_touch_now(d, tmp_path):
    f = tmp_path / "stamp"
    f.write_text("x")
    now = spawn("touch", str(f))
    stomp = spawn("touch", "-m", "-d", "2001-02-03 04:05:06 UTC", str(f))
    ev = find_event(d, "file", lambda e: e["op"] == "utimes", pid=stomp)
    assert ev["path"] == str(f) and ev["result"] == 0
    assert ev["mtime"] == 981173106 * 10**9 and ev["atime"] == -1  # -m: atime kept
    pyf = tmp_path / "stamp2"
    pyf.write_text("x")
    code = f"import os; os.utime({str(pyf)!r}, (1, 2))"
    py = spawn("python3", "-c", code)
    ev = find_event(d, "file", lambda e: e["op"] == "utimes", pid=py)
    assert ev["atime"] == 10**9 and ev["mtime"] == 2 * 10**9
    absent(d, "file", lambda e: e["op"] == "utimes", pid=now)
    assert os.stat(f).st_mtime == 981173106


@pytest.mark.root
def test_immutable_and_append_only_flags(d, tmp_path):
    f = tmp_path / "locked"
    f.write_text("x")
    try:
        on = spawn("chattr", "+i", str(f))
    finally:
        off = spawn("chattr", "-i", str(f))
    ev = find_event(d, "file", lambda e: e["op"] == "setflags", pid=on)
    assert ev["path"] == str(f) and ev["fsflags"] & 0x10 and not ev["old_fsflags"] & 0x10
    ev = find_event(d, "file", lambda e: e["op"] == "setflags", pid=off)
    assert not ev["fsflags"] & 0x10 and ev["old_fsflags"] & 0x10
    noatime = spawn("chattr", "+A", str(f))
    time.sleep(0.2)
    absent(d, "file", lambda e: e["op"] == "setflags", pid=noatime)
    assert Path(f).read_text() == "x"


# --- scripts given to an interpreter, linked to their writer ---------------------------------


def _written_by_cp(src: Path, dst: Path) -> int:
    """`dst` written by a cp process (a writer the kernel's cache records)."""
    return spawn("cp", str(src), str(dst))


@pytest.mark.root
def test_script_given_to_an_interpreter_is_linked_to_its_writer(d, tmp_path):
    src = tmp_path / "src"
    src.write_text("exit 0\n")
    dl = tmp_path / "dl.sh"
    writer = _written_by_cp(src, dl)
    runs = {
        "abs": spawn("bash", str(dl), "arg"),
        "rel": spawn("sh", "-e", "dl.sh", cwd=tmp_path),
        "opt": spawn("bash", "-x", "-o", "pipefail", "--", str(dl)),
    }
    for how, pid in runs.items():
        ev = find_event(d, "wrote_exec", lambda e: e["path"] == str(dl), pid=pid)
        assert (ev["writer_pid"], ev["writer_comm"], ev["script"]) == (writer, "cp", True), how
        assert ev["inode"] == os.stat(dl).st_ino
    # python opens ~800 files of its own (site packages) before the script
    py = tmp_path / "dl.py"
    src.write_text("import sys\nsys.exit(0)\n")
    pywriter = _written_by_cp(src, py)
    pid = spawn("python3", "-u", "-W", "ignore", str(py))
    ev = find_event(d, "wrote_exec", lambda e: e["path"] == str(py), pid=pid)
    assert (ev["writer_pid"], ev["script"]) == (pywriter, True)
    # inline code with the written file as a mere argument; a reader that runs nothing
    inline = spawn("bash", "-c", f"read -r line < {dl}", str(dl))
    cat = spawn("cat", str(dl))
    absent(d, "wrote_exec", lambda e: True, pid=inline)
    absent(d, "wrote_exec", lambda e: True, pid=cat)


@pytest.mark.root
def test_interpreter_waiting_for_its_script_still_reports_watched_reads(d, tmp_path):
    """`--rcfile F` is taken as valueless in the kernel, so it waits for a file named F that
    bash never opens: the watched read bash makes meanwhile must still be sent."""
    key = d.secrets / "id_waiting"
    key.write_text("secret\n")
    script = tmp_path / "reader.sh"
    script.write_text(f"read -r line < {key}\n")
    pid = spawn("bash", "--rcfile", "/nonexistent/rc", str(script))
    find_event(d, "file", lambda e: e["op"] == "read" and e["path"] == str(key), pid=pid)
