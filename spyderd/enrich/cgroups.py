"""cgroup paths: /proc/<pid>/cgroup lines, cgroup mounts, and cgroup v2 ids to paths.

Hosts run cgroup v1 (one hierarchy per controller), v2 (one unified hierarchy) or both
("hybrid": v1 controllers plus a v2 tree, e.g. at /sys/fs/cgroup/unified). The kernel
stamps every event with the v2 cgroup id (`bpf_get_current_cgroup_id`), which on v2 is
the inode number of the cgroup's directory; on a v1-only host it is meaningless (0 or 1).
"""

from __future__ import annotations

import ctypes
import os
import struct
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CgroupLine:
    """One line of /proc/<pid>/cgroup: `hierarchy-id:controllers:path`."""

    hierarchy: int
    controllers: str  # "" for the v2 unified hierarchy, "memory", "cpu,cpuacct", "name=systemd"
    path: str


def parse_cgroup(text: str) -> list[CgroupLine]:
    """Lines of /proc/<pid>/cgroup text; malformed lines are skipped."""
    out = []
    for line in text.splitlines():
        hid, sep, rest = line.partition(":")
        ctrl, sep2, path = rest.partition(":")
        if not sep or not sep2 or not hid.isdigit():
            continue
        out.append(CgroupLine(int(hid), ctrl, path))
    return out


def distinct_paths(text: str) -> list[str]:
    """The different non-root cgroup paths of a process, unified (v2) first."""
    lines = sorted(parse_cgroup(text), key=lambda c: c.hierarchy)
    out: list[str] = []
    for c in lines:
        if c.path not in ("", "/") and c.path not in out:
            out.append(c.path)
    return out


@dataclass(frozen=True, slots=True)
class CgroupMount:
    mountpoint: str
    root: str  # the cgroup path mounted there ("/" unless the mount is a subtree)
    version: int
    controllers: frozenset[str]


def cgroup_mounts(mountinfo: str) -> list[CgroupMount]:
    """cgroup and cgroup2 mounts from /proc/self/mountinfo text."""
    out = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
            continue
        root, mnt = _unescape(fields[3]), _unescape(fields[4])
        if rfields[0] == "cgroup2":
            out.append(CgroupMount(mnt, root, 2, frozenset()))
        else:
            opts = {o for o in rfields[2].split(",") if o not in _MOUNT_OPTS}
            out.append(CgroupMount(mnt, root, 1, frozenset(opts)))
    return out


_MOUNT_OPTS = {"rw", "ro", "nosuid", "nodev", "noexec", "relatime", "noatime", "xattr",
               "clone_children", "nsdelegate", "memory_recursiveprot", "favordynmods"}


def _unescape(s: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return (s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def relative_path(abs_path: str, mounts: list[CgroupMount]) -> str:
    """Turn /sys/fs/cgroup/<ctrl>/a/b into the cgroup path /a/b (as /proc/<pid>/cgroup shows)."""
    best = None
    for m in mounts:
        mp = m.mountpoint.rstrip("/")
        if (abs_path == mp or abs_path.startswith(mp + "/")) and (
                best is None or len(mp) > len(best.mountpoint.rstrip("/"))):
            best = m
    if best is None:
        return abs_path
    rel = abs_path[len(best.mountpoint.rstrip("/")):] or "/"
    root = best.root.rstrip("/")
    return (root + rel) if root else rel


FILEID_KERNFS = 0xFE


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * 8)]


def path_by_handle(mountpoint: str, cgroup_id: int) -> str:
    """The cgroup's directory through open_by_handle_at(2): a cgroup2 file handle *is* the
    cgroup id, so this is exact and O(1) (needs CAP_DAC_READ_SEARCH); "" if it fails."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        raw = (ctypes.c_ubyte * 8)(*struct.pack("<Q", cgroup_id))
        fh = _FileHandle(8, FILEID_KERNFS, raw)
        mfd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return ""
    try:
        fd = libc.open_by_handle_at(mfd, ctypes.byref(fh), os.O_RDONLY | os.O_CLOEXEC)
        if fd < 0:
            return ""
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
    finally:
        os.close(mfd)


class CgroupIdIndex:
    """cgroup v2 id -> path (the inode number of a cgroup2 directory is the cgroup id).

    Only used when a process is gone before spyderd reads /proc/<pid>/cgroup. First by
    file handle (exact, even for a cgroup made a moment ago); else by walking the tree,
    at most once per `min_interval` seconds, so a storm of unknown ids costs one walk.
    """

    def __init__(self, mounts: list[CgroupMount], min_interval: float = 1.0,
                 max_entries: int = 100_000) -> None:
        self.mounts = [m for m in mounts if m.version == 2]
        self.min_interval = min_interval
        self.max_entries = max_entries
        self._paths: dict[int, str] = {}
        self._scanned = -1e9
        self.scans = 0

    def path(self, cgroup_id: int) -> str:
        """The v2 path of `cgroup_id`, or "" if unknown (or there is no v2 hierarchy)."""
        if cgroup_id <= 1 or not self.mounts:
            return ""
        p = self._paths.get(cgroup_id)
        if p is None:
            p = self._by_handle(cgroup_id)
        if p is None and time.monotonic() - self._scanned >= self.min_interval:
            self.rescan()
            p = self._paths.get(cgroup_id)
        return p or ""

    def _by_handle(self, cgroup_id: int) -> str | None:
        for m in self.mounts:
            full = path_by_handle(m.mountpoint, cgroup_id)
            if full:
                rel = relative_path(full, [m])
                if len(self._paths) >= self.max_entries:
                    self._paths.clear()
                self._paths[cgroup_id] = rel
                return rel
        return None

    def rescan(self) -> None:
        self._scanned = time.monotonic()
        self.scans += 1
        paths: dict[int, str] = {}
        for m in self.mounts:
            self._walk(m.mountpoint, m.root.rstrip("/"), paths)
        self._paths = paths

    def _walk(self, top: str, prefix: str, out: dict[int, str]) -> None:
        stack = [(top, prefix or "/")]
        while stack and len(out) < self.max_entries:
            d, rel = stack.pop()
            try:
                out[os.stat(d).st_ino] = rel
                with os.scandir(d) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            stack.append((e.path, rel.rstrip("/") + "/" + e.name))
            except OSError:
                continue
