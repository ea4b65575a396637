"""Files probe: the watch list (unit) and real file operations read back through
`spyderctl events -o json` from a real spyderd watching a temporary prefix (root)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO, Spyderd, wait_for

from spyderd.capture.probes import files as probe_files
from spyderd.capture.records import HDR
from spyderd.capture.registry import DecodeContext
from spyderd.capture.watch import (
    DEFAULT_WATCH_PATHS,
    OPS,
    lpm_key,
    normalize,
    parse_watch_paths,
    watch_path_problem,
)
from spyderd.common.config import load_config
from spyderd.errors import ConfigError

OPEN, UNLINK, CHMOD = 1 << OPS["open"], 1 << OPS["unlink"], 1 << OPS["chmod"]
O_TRUNC = os.O_TRUNC

# --- the watch list ------------------------------------------------------------------------


def test_prefix_entries_match_bytes_and_trailing_star():
    ws = parse_watch_paths(["/etc/passwd", "/etc/cron*", "/var/spool/cron/"])
    assert ws.match("/etc/passwd", OPEN)
    assert ws.match("/etc/passwd-", OPEN)  # backups and lock files are under the prefix
    assert ws.match("/etc/cron.d/job", OPEN) and ws.match("/etc/crontab", OPEN)
    assert not ws.match("/etc/pass", OPEN)
    assert not ws.match("/var/spool/cronx", OPEN)
    assert not ws.match("/tmp/etc/passwd", OPEN)


def test_wildcard_component_and_tail():
    ws = parse_watch_paths(["/home/*/.ssh/", "/home/*/.bashrc"])
    assert ws.match("/home/bob/.ssh/authorized_keys", OPEN)
    assert ws.match("/home/alice/.bashrc", OPEN)
    assert not ws.match("/home/bob/notes", OPEN)
    assert not ws.match("/home/bob/x/.ssh/k", OPEN)  # * is exactly one component
    assert not ws.match("/home/.ssh", OPEN)


def test_ops_limit_an_entry_and_are_inherited_below_it():
    ws = parse_watch_paths([{"path": "/var/log/", "ops": ["unlink", "rename"]},
                            {"path": "/var/log/audit/", "ops": ["chmod"]}])
    assert ws.match("/var/log/syslog", UNLINK)
    assert not ws.match("/var/log/syslog", OPEN)
    # the longer entry answers in the kernel; it keeps the shorter one's operations
    assert ws.match("/var/log/audit/audit.log", UNLINK)
    assert ws.match("/var/log/audit/audit.log", CHMOD)
    assert not ws.match("/var/log/syslog", CHMOD)


def test_longer_prefix_under_a_wildcard_keeps_the_wildcard():
    ws = parse_watch_paths(["/home/*/.ssh/", {"path": "/home/alice/", "ops": ["unlink"]}])
    assert ws.match("/home/alice/.ssh/id_rsa", OPEN)
    assert ws.match("/home/alice/x", UNLINK)
    assert not ws.match("/home/alice/x", OPEN)


def test_kernel_maps_are_lpm_keys_with_packed_values():
    ws = parse_watch_paths(["/etc/", {"path": "/var/log/", "ops": ["unlink"]}, "/home/*/.ssh/"])
    watch, tails = ws.kernel_maps()
    assert watch[lpm_key(b"/var/log/")] == UNLINK
    home = watch[lpm_key(b"/home/")]
    assert home & 0xFFFF == 0 and (home >> 16) & 0xFF == 1 and home >> 32 == len(b"/home/")
    assert tails == {lpm_key(b"\x01.ssh/"): sum(1 << v for v in OPS.values())}
    assert struct.unpack_from("<I", lpm_key(b"/etc/"))[0] == 5 * 8
    assert len(lpm_key(b"/etc/")) == 4 + 256


@pytest.mark.parametrize("item, problem", [
    ("etc/passwd", "not an absolute path"),
    ("/home/*x/.ssh", "whole path component"),
    ("/a/*/b/*/c", "appear once"),
    ({"path": "/var/log/", "ops": ["explode"]}, "unknown operation 'explode'"),
    ({"path": "/var/log/", "mode": 1}, "unknown key"),
    (42, "expected a path"),
])
def test_bad_entries_say_why(item, problem):
    assert problem in (watch_path_problem(item) or "")
    with pytest.raises(ConfigError, match=r"capture\.watch_paths\[0\]"):
        parse_watch_paths([item])


def test_config_errors_are_located_per_item(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("capture:\n  watch_paths:\n    - /etc/ok\n    - relative/path\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:4:7: 'capture\.watch_paths' 'relative"):
        load_config(str(cfg))


def test_default_watch_list_is_valid_and_matches_the_packaged_config():
    assert all(watch_path_problem(i) is None for i in DEFAULT_WATCH_PATHS)
    packaged = load_config(str(REPO / "packaging/spyderd.yaml"))
    assert list(packaged.capture.watch_paths) == DEFAULT_WATCH_PATHS
    ws = parse_watch_paths(DEFAULT_WATCH_PATHS)
    for p in ("/etc/shadow", "/etc/sudoers.d/x", "/etc/ld.so.preload", "/root/.ssh/a",
              "/home/u/.ssh/authorized_keys", "/etc/systemd/system/x.service",
              "/etc/profile.d/x.sh", "/etc/pam.d/sshd", "/etc/spyderd/spyderd.yaml"):
        assert ws.match(p, OPEN), p
    assert ws.match("/var/log/auth.log", UNLINK)
    assert not ws.match("/var/log/auth.log", OPEN)  # logs are written all the time
    assert not ws.match("/home/u/Documents/a", OPEN)


def test_normalize():
    assert normalize("/tmp/../etc//./shadow") == "/etc/shadow"
    assert normalize("/../..") == "/"
    assert normalize("rel/../x") == "rel/../x"  # relative (symlink targets) left alone


# --- decoding ------------------------------------------------------------------------------


def _record(op: int, p1: bytes, p2: bytes = b"", *, rflags: int = 0, flags: int = 0,
            mode: int = 0, dev: int = (8 << 20) | 1) -> bytes:
    hdr = HDR.pack(probe_files.K_FILE, 10, 10, 0, 0, 0, 1000, 1, b"x")
    body = probe_files._FILE.pack(op, flags, mode, -1, -1, 0, 77, dev, rflags, -1, 0,
                                  b"user.x", len(p1) * 8, p1, len(p2) * 8, p2)
    return hdr + body


def test_decoder_drops_a_normalised_path_that_is_not_watched():
    ctx = DecodeContext(boot_to_wall=5)
    ctx.state["files"] = parse_watch_paths(["/etc/"])
    ev = probe_files.decode_file(_record(OPS["unlink"], b"/tmp/../etc/x",
                                         rflags=probe_files.RF_NORM1), ctx)
    assert ev is not None and ev.path == "/etc/x" and ev.time == 1005
    assert ev.dev == os.makedev(8, 1) and ev.inode == 77
    assert probe_files.decode_file(_record(OPS["unlink"], b"/etc/../tmp/x",
                                           rflags=probe_files.RF_NORM1), ctx) is None


def test_decoder_open_fields():
    ctx = DecodeContext()
    # opened through a watched name: the name is the path, the file reached is path2
    ev = probe_files.decode_file(_record(OPS["open"], b"/run/real", b"/etc/resolv.conf",
                                         rflags=probe_files.RF_NAME, flags=1, mode=0o644), ctx)
    assert (ev.path, ev.path2, ev.mode) == ("/etc/resolv.conf", "/run/real", 0)
    ev = probe_files.decode_file(_record(OPS["create"], b"/etc/x", b"x",
                                         flags=os.O_CREAT | 1, mode=0o600), ctx)
    assert (ev.path, ev.path2, ev.mode, ev.xattr) == ("/etc/x", "", 0o600, "")
    ev = probe_files.decode_file(_record(OPS["setxattr"], b"/etc/x"), ctx)
    assert ev.xattr == "user.x"
    with pytest.raises(ValueError, match="unknown file operation"):
        probe_files.decode_file(_record(99, b"/etc/x"), ctx)


# --- the real thing: a spyderd watching a temporary prefix --------------------------------


class Tree:
    """/tmp/spy-files-XXXX with watched, op-limited, wildcard and unwatched parts."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="spy-files-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.w = self.root / "watch"        # every operation
        self.logs = self.root / "logs"      # unlink only
        self.home = self.root / "home"      # home/*/.ssh/ only
        self.u = self.root / "unwatched"
        self.sib = self.root / "watch-sibling"  # shares bytes with the prefix, not the "/"
        self.dl = self.root / "dl"
        for d in (self.w, self.logs, self.home / "bob/.ssh", self.u, self.sib, self.dl):
            d.mkdir(parents=True)
            os.chmod(d, 0o755)

    def config(self, loader: str) -> Path:
        path = self.root / f"spyderd-{loader}.yaml"
        path.write_text(json.dumps({"capture": {
            "loader": loader,
            "watch_paths": [f"{self.w}/", {"path": f"{self.logs}/", "ops": ["unlink"]},
                            f"{self.home}/*/.ssh/"],
            "failed_opens": True,
            "disable": ["network", "creds", "kernel"]}}))
        return path


@pytest.fixture(scope="module")
def tree(loader):
    t = Tree()
    yield t
    shutil.rmtree(t.root, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon(tree, journald, tmp_path_factory, loader):
    d = Spyderd(tmp_path_factory.mktemp("spyderd-files"), [str(REPO / "rules")],
                config=tree.config(loader))
    d.start()
    yield d
    d.stop()


def run_child(code: str, *, cwd: Path | None = None) -> int:
    """Run `code` in a new Python process; its pid (the events' pid)."""
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, check=False,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return int(p.stdout.split()[-1]) if p.stdout.strip() else 0


def events(d: Spyderd, kind: str, pid: int) -> list[dict]:
    r = d.ctl("events", "--kind", kind, "--pid", str(pid), "-o", "json", check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def wait_events(d: Spyderd, kind: str, pid: int, until, timeout: float = 30) -> list[dict]:
    """Events of `pid` once `until(events)` holds (the store is written in batches)."""
    def ready() -> list[dict] | None:
        evs = events(d, kind, pid)
        return evs if until(evs) else None

    return wait_for(ready, timeout, interval=0.5) or events(d, kind, pid)


def one(evs: list[dict], op: str, path: Path | str) -> dict:
    found = [e for e in evs if e["op"] == op and e["path"] == str(path)]
    assert len(found) == 1, f"{op} {path}: {found}\nall: {[(e['op'], e['path']) for e in evs]}"
    return found[0]


OPS_CHILD = """
    import os
    W, U = {w!r}, {u!r}
    fd = os.open(W + "/a", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.fchmod(fd, 0o600)
    os.fchown(fd, 1, 2)
    os.ftruncate(fd, 0)
    os.close(fd)
    os.close(os.open(W + "/a", os.O_WRONLY | os.O_TRUNC))
    os.close(os.open(W + "/a", os.O_RDONLY))                 # read-only: never recorded
    os.chdir(W)
    os.close(os.open("rel", os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod("rel", 0o755)
    os.chown("rel", 3, 4)
    os.rename("rel", "rel2")
    os.link("rel2", "hard")
    os.symlink("/etc/passwd", "sym")
    os.setxattr("rel2", "user.spyder", b"v")
    os.removexattr("rel2", "user.spyder")
    os.truncate("rel2", 0)
    os.unlink("hard")
    os.mkdir("d")
    os.rmdir("d")
    os.chdir("/")
    dfd = os.open(W, os.O_RDONLY | os.O_DIRECTORY)
    os.close(os.open("viafd", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=dfd))
    os.unlink("viafd", dir_fd=dfd)                            # unlinkat(dirfd, "viafd")
    os.chmod(U + "/../watch/rel2", 0o700)                     # ".." resolved, watched
    os.close(os.open(U + "/x", os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(W + "/../unwatched/x", 0o700)                    # ".." resolved, not watched
    os.symlink(U + "/x", W + "/tolink")                       # watched name, unwatched file
    os.close(os.open(W + "/tolink", os.O_WRONLY))
    os.symlink(W + "/a", U + "/toa")                          # unwatched name, watched file
    os.close(os.open(U + "/toa", os.O_WRONLY))
    os.rename(U + "/x", W + "/moved")                          # into the watched tree
    try:
        os.open(W + "/nodir/x", os.O_WRONLY | os.O_CREAT, 0o600)
    except FileNotFoundError:
        pass
    print(os.getpid())
"""


@pytest.fixture(scope="module")
def ops(daemon, tree):
    """Every file operation once under the watched prefix; (pid, file events)."""
    pid = run_child(OPS_CHILD.format(w=str(tree.w), u=str(tree.u)))
    evs = wait_events(daemon, "file", pid,
                      lambda e: any(x["op"] == "open_failed" for x in e))
    return pid, evs


@pytest.mark.root
def test_create_and_fd_calls(ops, tree):
    pid, evs = ops
    st = os.stat(tree.w / "a")
    create = one(evs, "create", tree.w / "a")
    assert create["pid"] == pid and create["result"] >= 0 and create["mode"] == 0o640
    assert create["flags"] & (os.O_CREAT | os.O_EXCL | os.O_WRONLY) == (
        os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    assert (create["inode"], create["dev"]) == (st.st_ino, st.st_dev)
    chmod = [e for e in evs if e["op"] == "chmod" and e["path"] == str(tree.w / "a")]
    assert [e["mode"] for e in chmod] == [0o600]
    assert chmod[0]["inode"] == st.st_ino and chmod[0]["result"] == 0
    chown = one(evs, "chown", tree.w / "a")
    assert (chown["owner"], chown["group"], chown["result"]) == (1, 2, 0)
    assert one(evs, "truncate", tree.w / "a")["inode"] == st.st_ino


@pytest.mark.root
def test_open_for_write_is_recorded_read_only_is_not(ops, tree):
    _pid, evs = ops
    opens = [e for e in evs if e["op"] == "open" and e["path"] == str(tree.w / "a")]
    # the O_TRUNC open and the write-open through a symlink; the O_RDONLY one is never sent
    assert len(opens) == 2
    assert all(e["flags"] & os.O_ACCMODE == os.O_WRONLY and e["path2"] == "" for e in opens)
    assert len([e for e in opens if e["flags"] & O_TRUNC]) == 1


@pytest.mark.root
def test_relative_paths_resolve_against_cwd(ops, tree):
    _pid, evs = ops
    assert one(evs, "create", tree.w / "rel")["mode"] == 0o600
    assert one(evs, "chmod", tree.w / "rel")["mode"] == 0o755
    chown = one(evs, "chown", tree.w / "rel")
    assert (chown["owner"], chown["group"]) == (3, 4)
    assert one(evs, "rename", tree.w / "rel")["path2"] == str(tree.w / "rel2")
    assert one(evs, "link", tree.w / "rel2")["path2"] == str(tree.w / "hard")
    assert one(evs, "unlink", tree.w / "hard")["result"] == 0
    rmdir = one(evs, "unlink", tree.w / "d")
    assert rmdir["flags"] == 0x200  # AT_REMOVEDIR


@pytest.mark.root
def test_symlink_and_xattrs_and_truncate_by_path(ops, tree):
    _pid, evs = ops
    sym = one(evs, "symlink", "/etc/passwd")  # the target is kept as given
    assert sym["path2"] == str(tree.w / "sym")
    assert one(evs, "setxattr", tree.w / "rel2")["xattr"] == "user.spyder"
    assert one(evs, "removexattr", tree.w / "rel2")["xattr"] == "user.spyder"
    assert one(evs, "truncate", tree.w / "rel2")["result"] == 0


@pytest.mark.root
def test_dirfd_and_dotdot_paths(ops, tree):
    _pid, evs = ops
    assert one(evs, "create", tree.w / "viafd")["result"] >= 0
    assert one(evs, "unlink", tree.w / "viafd")["result"] == 0
    assert [e["mode"] for e in evs if e["op"] == "chmod"
            and e["path"] == str(tree.w / "rel2")] == [0o700]
    assert not [e for e in evs if str(tree.u) in e["path"] and e["op"] == "chmod"]


@pytest.mark.root
def test_opens_through_symlinks(ops, tree):
    _pid, evs = ops
    by_name = one(evs, "open", tree.w / "tolink")  # watched name, file elsewhere
    assert by_name["path2"] == str(tree.u / "x")
    by_file = [e for e in evs if e["op"] == "open" and e["path"] == str(tree.w / "a")
               and not e["flags"] & O_TRUNC]
    assert len(by_file) == 1  # unwatched name, watched file: the file's real path


@pytest.mark.root
def test_rename_into_a_watched_tree(ops, tree):
    _pid, evs = ops
    assert one(evs, "rename", tree.u / "x")["path2"] == str(tree.w / "moved")


@pytest.mark.root
def test_failed_write_open_under_watched_prefix(ops, tree):
    _pid, evs = ops
    failed = one(evs, "open_failed", tree.w / "nodir/x")
    assert failed["result"] == -2 and failed["mode"] == 0o600


@pytest.mark.root
def test_unwatched_paths_produce_no_event(daemon, tree):
    pid = run_child(f"""
        import os
        for d in ({str(tree.u)!r}, {str(tree.sib)!r}):
            fd = os.open(d + "/f", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o644)
            os.close(fd)
            os.chmod(d + "/f", 0o600)
            os.rename(d + "/f", d + "/g")
            os.unlink(d + "/g")
        try:
            os.unlink({str(tree.w)!r} + "/marker")      # watched: the end marker
        except FileNotFoundError:
            pass
        print(os.getpid())
    """)
    evs = wait_events(daemon, "file", pid, lambda e: any("marker" in x["path"] for x in e))
    assert [(e["op"], e["path"], e["result"]) for e in evs] == [
        ("unlink", str(tree.w / "marker"), -2)]


@pytest.mark.root
def test_wildcard_and_op_limited_prefixes(daemon, tree):
    pid = run_child(f"""
        import os
        H, L = {str(tree.home)!r}, {str(tree.logs)!r}
        os.close(os.open(H + "/bob/.ssh/authorized_keys", os.O_WRONLY | os.O_CREAT, 0o600))
        os.close(os.open(H + "/bob/notes", os.O_WRONLY | os.O_CREAT, 0o600))
        os.close(os.open(L + "/app.log", os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(L + "/app.log", 0o640)
        os.unlink(L + "/app.log")
        print(os.getpid())
    """)
    evs = wait_events(daemon, "file", pid, lambda e: any(x["op"] == "unlink" for x in e))
    assert sorted((e["op"], e["path"]) for e in evs) == [
        ("create", str(tree.home / "bob/.ssh/authorized_keys")),
        ("unlink", str(tree.logs / "app.log"))]


@pytest.mark.root
def test_failed_open_eacces_anywhere(daemon, tree):
    secret = tree.u / "secret"
    secret.write_text("x")
    os.chmod(secret, 0)
    pid = run_child(f"""
        import os
        os.setgid(65534)
        os.setuid(65534)
        try:
            open({str(secret)!r})
        except PermissionError:
            pass
        print(os.getpid())
    """)
    evs = wait_events(daemon, "file", pid, lambda e: bool(e))
    failed = one(evs, "open_failed", secret)
    assert failed["result"] == -13 and failed["uid"] == 65534 and failed["pid"] == pid


@pytest.mark.root
def test_status_counts_the_user_space_refilter(daemon, ops):
    def status() -> dict:  # written once a second
        return json.loads((daemon.run / "status.json").read_text())

    # the "/../unwatched" chmod: sent by the kernel for its "..", dropped after normalising
    assert wait_for(lambda: status()["kernel_counters"].get("file filtered", 0) >= 1, 10)
    st = status()
    assert st["probes"]["files"]["state"] == "attached"
    assert st["probes"]["files"]["selftest"] == "ok"  # the EACCES open of a 0444 sysctl
    assert not st["lost"].get("file") and not st["decode_errors"].get("file")


def _writer_and_runner(tree: Tree, name: str, write: list[str]) -> tuple[int, int, Path]:
    path = tree.dl / name
    w = subprocess.Popen(write)
    assert w.wait(30) == 0
    time.sleep(0.05)
    r = subprocess.Popen([str(path)], stdout=subprocess.DEVNULL)
    assert r.wait(30) == 0
    return w.pid, r.pid, path


@pytest.mark.root
def test_download_then_run_script(daemon, tree):
    path = tree.dl / "x.sh"
    writer, runner, _ = _writer_and_runner(
        tree, "x.sh", ["/bin/sh", "-c", (f"printf '#!/bin/sh\\necho hi\\n' > {path}; "
                                         f"chmod 755 {path}")])
    evs = wait_events(daemon, "wrote_exec", runner, bool)
    assert len(evs) == 1, evs
    ev, st = evs[0], os.stat(path)
    assert (ev["path"], ev["writer_pid"], ev["writer_comm"]) == (str(path), writer, "sh")
    assert (ev["inode"], ev["dev"]) == (st.st_ino, st.st_dev)
    assert ev["write_time"] <= ev["time"] and ev["writer_start"] > 0


@pytest.mark.root
def test_download_then_run_binary(daemon, tree):
    path = tree.dl / "mytrue"
    writer, runner, _ = _writer_and_runner(tree, "mytrue", ["cp", "/bin/true", str(path)])
    evs = wait_events(daemon, "wrote_exec", runner, bool)
    assert [(e["path"], e["writer_pid"], e["writer_comm"]) for e in evs] == [
        (str(path), writer, "cp")]
    assert evs[0]["inode"] == os.stat(path).st_ino


@pytest.mark.root
def test_exec_of_a_file_not_written_since_start_is_not_linked(daemon, tree):
    r = subprocess.Popen(["/bin/true"])
    assert r.wait(30) == 0
    pid = run_child(f"""
        import os
        try:
            os.unlink({str(tree.w)!r} + "/marker2")
        except FileNotFoundError:
            pass
        print(os.getpid())
    """)
    wait_events(daemon, "file", pid, bool)
    assert events(daemon, "wrote_exec", r.pid) == []


@pytest.mark.root
def test_repeats_are_folded_in_the_kernel_and_counted(daemon, tree):
    def repeats() -> int:
        st = json.loads((daemon.run / "status.json").read_text())
        return st["kernel_counters"].get("file_repeats", 0)

    before = repeats()
    pid = run_child(f"""
        import os
        for _ in range(5):
            os.close(os.open({str(tree.w)!r} + "/again", os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            os.unlink({str(tree.w)!r} + "/marker3")
        except FileNotFoundError:
            pass
        print(os.getpid())
    """)
    evs = wait_events(daemon, "file", pid, lambda e: any("marker3" in x["path"] for x in e))
    # the first open creates the file, the second opens it; the next three are repeats
    assert sorted(e["op"] for e in evs if e["path"] == str(tree.w / "again")) == [
        "create", "open"]
    assert wait_for(lambda: repeats() - before >= 3, 10)
