"""The watch list of the files probe: which path prefixes, for which operations.

One entry per watched prefix, from `capture.watch_paths`:

    - /etc/shadow                       # a byte prefix: also /etc/shadow-, /etc/shadow.lock
    - /etc/cron*                        # a trailing * is the same byte prefix (/etc/cron)
    - /home/*/.ssh/                     # one whole-component * : any one directory name
    - {path: /var/log/, ops: [unlink, rename, truncate]}   # only these operations

The same list is compiled twice: into the kernel's LPM tries (`compile_maps`, what the
probe filters on) and into `WatchSet.match` (what user space re-applies after normalising a
path the kernel flagged for "." / ".." / "//" components). Both follow one semantics:

- a plain entry matches every path that starts with its bytes;
- `H*/T` matches paths that start with H, then one component, then "/" and T's bytes;
- the operations an entry allows also apply to the longer entries under it (the kernel
  answers with the longest prefix only, so each longer entry inherits the shorter ones'
  operations and wildcard).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from spyderd.errors import ConfigError

OPS = {"open": 1, "open_failed": 2, "create": 3, "unlink": 4, "rename": 5, "chmod": 6,
       "chown": 7, "setxattr": 8, "removexattr": 9, "truncate": 10, "link": 11, "symlink": 12}
# Operations not chosen per watch_paths entry: `read` comes from capture.watch_reads;
# `utimes` (explicit timestamps) and `setflags` (immutable / append-only) are recorded
# wherever they happen.
OTHER_OPS = {"read": 13, "utimes": 14, "setflags": 15}
OP_NAMES = {v: k for k, v in {**OPS, **OTHER_OPS}.items()}
ALL_OPS = sum(1 << v for v in OPS.values())
READ = 1 << OTHER_OPS["read"]
PATHB = 256  # bytes of path data in an LPM key (the kernel's LPM_DATA_SIZE_MAX)
_KEY = struct.Struct(f"<I{PATHB}s")

# The community best-practice audit.rules categories (docs/audit-coverage.md).
DEFAULT_WATCH_PATHS: list[Any] = [
    # accounts, groups, passwords, sudo, login configuration
    "/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/sudoers",
    "/etc/login.defs", "/etc/securetty", "/etc/pam.d/", "/etc/security/",
    # scheduled jobs
    "/etc/cron*", "/var/spool/cron/",
    # services and boot persistence
    "/etc/systemd/", "/lib/systemd/system/", "/usr/lib/systemd/", "/etc/init.d/",
    "/etc/rc.local", "/etc/inittab", "/etc/init/",
    # shell start-up files
    "/etc/profile", "/etc/bash.bashrc", "/root/.bashrc", "/root/.profile",
    "/home/*/.bashrc", "/home/*/.profile",
    # library injection
    "/etc/ld.so.preload", "/etc/ld.so.conf",
    # ssh
    "/etc/ssh/sshd_config", "/root/.ssh/", "/home/*/.ssh/",
    # host and network identity
    "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/etc/network/",
    # kernel parameters and modules, time zone, MAC policy, login shells, mail aliases
    # (a pipe to a command), container engine
    "/etc/sysctl.conf", "/etc/sysctl.d/", "/etc/modprobe.d/", "/etc/modules",
    "/etc/localtime", "/etc/selinux/", "/etc/apparmor", "/etc/shells", "/etc/aliases",
    "/etc/docker/",
    # audit and spyderd's own configuration, rules, state, code and binaries
    "/etc/audit/", "/etc/spyderd/", "/usr/share/spyderd/", "/var/lib/spyderd/",
    "/opt/spyderd/", "/usr/local/sbin/spyderd", "/usr/local/sbin/spyderctl",
    "/usr/sbin/spyderd", "/usr/bin/spyderctl", "/sbin/auditctl", "/sbin/auditd",
    "/usr/sbin/auditctl", "/usr/sbin/auditd",
    # log tampering: removal, renaming, truncation only
    {"path": "/var/log/", "ops": ["unlink", "rename", "truncate"]},
]


@dataclass(frozen=True, slots=True)
class Entry:
    """One parsed watch_paths item: `head` + (one component + `tail` if `wild`)."""

    head: bytes
    ops: int
    wild: bool = False
    tail: bytes = b""


@dataclass(slots=True)
class WatchSet:
    """Parsed and compiled watch list. `match` answers exactly as the kernel's two LPM
    lookups do (it walks the same compiled tables), so user space and kernel agree."""

    entries: list[Entry] = field(default_factory=list)
    watch: dict[bytes, int] = field(default_factory=dict)  # prefix bytes -> value
    tails: dict[bytes, int] = field(default_factory=dict)  # wildcard id + tail -> ops

    def __post_init__(self) -> None:
        if self.entries and not self.watch:
            self.watch, self.tails = _compile(self.entries)

    def ops(self, path: str | bytes) -> int:
        """Operation bits the list allows on `path` (0: not watched)."""
        p = path.encode("utf-8", "surrogateescape") if isinstance(path, str) else path
        p = p[: PATHB - 1]
        val = _longest(self.watch, p)
        if val is None:
            return 0
        ops, wid, wplen = val & 0xFFFF, (val >> 16) & 0xFF, (val >> 32) & 0xFFFF
        if wid:
            slash = p.find(b"/", wplen, wplen + 128)
            if slash >= 0:
                tail = _longest(self.tails, bytes([wid]) + p[slash + 1:][: PATHB - 2])
                ops |= tail or 0
        return ops

    def match(self, path: str | bytes, want: int) -> bool:
        """True if `path` is watched for any operation bit in `want`."""
        return bool(self.ops(path) & want)

    def kernel_maps(self) -> tuple[dict[bytes, int], dict[bytes, int]]:
        """(watch trie, tail trie) as {packed `struct lpm_key`: u64 value}."""
        return ({lpm_key(k): v for k, v in self.watch.items()},
                {lpm_key(k): v for k, v in self.tails.items()})


_SSH_NAMES = ["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk",
              "authorized_keys", "authorized_keys2", "known_hosts"]
DEFAULT_WATCH_READS: list[Any] = [
    # accounts and sudo
    "/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/security/opasswd",
    # ssh keys, authorized_keys, known_hosts (by name: a directory entry such as
    # /root/.ssh/ would add a check of the directory's name to every read-only open)
    {"path": "/root/.ssh/", "names": _SSH_NAMES}, {"path": "/home/*/.ssh/", "names": _SSH_NAMES},
    # cloud and cluster credentials
    "/root/.aws/credentials", "/home/*/.aws/credentials",
    "/root/.kube/config", "/home/*/.kube/config",
    "/etc/kubernetes/admin.conf", "/etc/kubernetes/kubelet.conf",
    "/root/.docker/config.json", "/home/*/.docker/config.json",
    {"path": "/root/.config/gcloud/", "names": ["credentials.db", "access_tokens.db"]},
    {"path": "/home/*/.config/gcloud/", "names": ["credentials.db", "access_tokens.db"]},
    {"path": "/root/.azure/", "names": ["accessTokens.json", "msal_token_cache.json"]},
    {"path": "/home/*/.azure/", "names": ["accessTokens.json", "msal_token_cache.json"]},
    # memory and environment of other processes
    "/proc/*/mem", "/proc/*/environ",
    # browser credential stores
    {"path": "/root/.mozilla/firefox/", "names": ["logins.json", "key4.db", "cookies.sqlite"]},
    {"path": "/home/*/.mozilla/firefox/", "names": ["logins.json", "key4.db",
                                                     "cookies.sqlite"]},
    {"path": "/root/.config/google-chrome/", "names": ["Login Data", "Cookies", "Web Data"]},
    {"path": "/home/*/.config/google-chrome/", "names": ["Login Data", "Cookies",
                                                          "Web Data"]},
    {"path": "/home/*/.config/chromium/", "names": ["Login Data", "Cookies", "Web Data"]},
]


@dataclass(frozen=True, slots=True)
class ReadNames:
    """What a read-only open's names must be for the kernel to check its path: the file's
    own name (`files`) or its directory's name (`dirs`)."""

    files: frozenset[bytes]
    dirs: frozenset[bytes]

    def kernel_maps(self) -> tuple[dict[bytes, int], dict[int, int], int, int]:
        """(read_names entries, read_first entries, file name length mask, directory name
        length mask)."""
        keys: dict[bytes, int] = {}
        first: dict[int, int] = {}
        masks = [0, 0]
        for where, names in ((0, self.files), (1, self.dirs)):
            for n in names:
                keys[_NKEY.pack(len(n), where, n[:16].ljust(16, b"\0"))] = 1
                first[where << 13 | min(len(n), 31) << 8 | n[0]] = 1
                masks[where] |= 1 << min(len(n), 31)
        return keys, first, masks[0], masks[1]

    def wanted(self, path: str) -> bool:
        """Whether the kernel would have checked `path` (its name or directory's name)."""
        parts = path.encode("utf-8", "surrogateescape").rsplit(b"/", 2)
        return parts[-1] in self.files or (len(parts) > 2 and parts[-2] in self.dirs)


_NKEY = struct.Struct("<II16s")


def parse_watch_reads(items: list[Any]) -> tuple[list[Entry], ReadNames]:
    """Parse `capture.watch_reads`: watch-list entries for the `read` operation and the
    names the kernel checks first. Raises ConfigError naming the bad item."""
    entries, files, dirs = [], set(), set()
    for i, item in enumerate(items):
        try:
            entry, f, d = _read_entry(item)
        except _BadEntry as exc:
            raise ConfigError(f"capture.watch_reads[{i}]: {exc}") from None
        entries.append(entry)
        files |= f
        dirs |= d
    return entries, ReadNames(frozenset(files), frozenset(dirs))


def watch_read_problem(item: Any) -> str | None:
    """What is wrong with one watch_reads item, or None (the config loader's item check)."""
    try:
        _read_entry(item)
    except _BadEntry as exc:
        return str(exc)
    return None


def _read_entry(item: Any) -> tuple[Entry, set[bytes], set[bytes]]:
    names: list[Any] = []
    if isinstance(item, dict):
        extra = set(item) - {"path", "names"}
        if extra:
            raise _BadEntry(f"unknown key(s) {', '.join(sorted(map(str, extra)))}; "
                             "expected 'path' and optional 'names'")
        path, names = item.get("path"), item.get("names") or []
        if not isinstance(names, list) or not all(isinstance(n, str) and n and "/" not in n
                                                  for n in names):
            raise _BadEntry("'names' must be a list of file names")
    else:
        path = item
    if not isinstance(path, str):
        raise _BadEntry(f"expected a path or {{path: ..., names: [...]}}, got {item!r}")
    e = _entry(path)
    entry = Entry(e.head, READ, e.wild, e.tail)
    last = path.rstrip("/").rsplit("/", 1)[-1].encode("utf-8", "surrogateescape")
    if names:
        return entry, {n.encode("utf-8", "surrogateescape") for n in names}, set()
    if not last or b"*" in last or path.endswith("*"):
        raise _BadEntry(f"{path!r}: the last component must be a name, or the entry a "
                         "directory ending in '/', or give 'names'")
    return (entry, set(), {last}) if path.endswith("/") else (entry, {last}, set())


def _longest(table: dict[bytes, int], p: bytes) -> int | None:
    best = None
    for k in table:
        if p.startswith(k) and (best is None or len(k) > len(best)):
            best = k
    return None if best is None else table[best]


def parse_watch_paths(items: list[Any]) -> WatchSet:
    """Parse `capture.watch_paths`; raises ConfigError naming the bad item."""
    problems = check_watch_paths(items)
    if problems:
        raise ConfigError("\n".join(f"capture.watch_paths[{i}]: {m}" for i, m in problems))
    return WatchSet([_entry(item) for item in items])


def check_watch_paths(items: Any) -> list[tuple[int | None, str]]:
    """Problems as (item index, message); used by the config loader to locate them."""
    if not isinstance(items, list):
        return [(None, "must be a list of paths")]
    out: list[tuple[int | None, str]] = []
    heads: set[bytes] = set()
    for i, item in enumerate(items):
        try:
            e = _entry(item)
        except _BadEntry as exc:
            out.append((i, str(exc)))
            continue
        if e.wild:
            heads.add(e.head)
    if len(heads) > 255:
        out.append((None, "more than 255 distinct prefixes before a '*'"))
    return out


def watch_path_problem(item: Any) -> str | None:
    """What is wrong with one watch_paths item, or None (the config loader's item check)."""
    try:
        _entry(item)
    except _BadEntry as exc:
        return str(exc)
    return None


class _BadEntry(ValueError):
    """One watch_paths item is malformed (message says how)."""


def _entry(item: Any) -> Entry:
    if isinstance(item, str):
        path, ops = item, ALL_OPS
    elif isinstance(item, dict):
        extra = set(item) - {"path", "ops"}
        if extra:
            raise _BadEntry(f"unknown key(s) {', '.join(sorted(map(str, extra)))}; "
                             "expected 'path' and optional 'ops'")
        path = item.get("path")
        if not isinstance(path, str):
            raise _BadEntry("'path' must be a string")
        ops = _ops(item.get("ops", list(OPS)))
    else:
        raise _BadEntry(f"expected a path or {{path: ..., ops: [...]}}, got {item!r}")
    if not path.startswith("/"):
        raise _BadEntry(f"{path!r} is not an absolute path")
    if path.endswith("*") and "*" not in path[:-1]:
        path = path[:-1]
    raw = path.encode("utf-8", "surrogateescape")
    if b"*" not in raw:
        if len(raw) > PATHB - 1:
            raise _BadEntry(f"{path!r} is longer than {PATHB - 1} bytes")
        return Entry(raw, ops)
    head, _, rest = raw.partition(b"*")
    if not head.endswith(b"/") or not (rest == b"" or rest.startswith(b"/")) or b"*" in rest:
        raise _BadEntry(f"{path!r}: '*' must be one whole path component (/home/*/.ssh/) "
                         "or the last character (/etc/cron*), and appear once")
    tail = rest[1:]
    if len(head) > PATHB - 1 or len(tail) > PATHB - 2:
        raise _BadEntry(f"{path!r} is too long")
    return Entry(head, ops, wild=True, tail=tail)


def _ops(names: Any) -> int:
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names:
        raise _BadEntry("'ops' must be a non-empty list of operations")
    mask = 0
    for n in names:
        if n not in OPS:
            raise _BadEntry(f"unknown operation {n!r}; expected one of: "
                             f"{', '.join(OPS)}")
        mask |= 1 << OPS[n]
    return mask


def lpm_key(data: bytes) -> bytes:
    """The kernel's `struct lpm_key`: bit length, then the bytes (zero padded)."""
    return _KEY.pack(len(data) * 8, data)


def _compile(entries: list[Entry]) -> tuple[dict[bytes, int], dict[bytes, int]]:
    """(watch, tails): {prefix: ops | wildcard id << 16 | wildcard prefix length << 32} and
    {wildcard id byte + tail: ops}. The kernel answers with the longest prefix only, so
    each key inherits the operations of the shorter keys it lies under, and the wildcard
    of the longest wildcard prefix it lies under (nested wildcard prefixes: the longer
    one's tails apply below it)."""
    wild_ids: dict[bytes, int] = {}
    for e in entries:
        if e.wild and e.head not in wild_ids:
            wild_ids[e.head] = len(wild_ids) + 1
    direct: dict[bytes, int] = {h: 0 for h in wild_ids}
    for e in entries:
        if not e.wild:
            direct[e.head] = direct.get(e.head, 0) | e.ops
    watch: dict[bytes, int] = {}
    for key in direct:
        ops = 0
        for other, o in direct.items():
            if key.startswith(other):
                ops |= o
        heads = [h for h in wild_ids if key.startswith(h)]
        head = max(heads, key=len) if heads else b""
        watch[key] = ops | wild_ids.get(head, 0) << 16 | len(head) << 32
    tails: dict[bytes, int] = {}
    for e in entries:
        if e.wild:
            k = bytes([wild_ids[e.head]]) + e.tail
            tails[k] = tails.get(k, 0) | e.ops
    for k in list(tails):
        for other, o in list(tails.items()):
            if k.startswith(other):
                tails[k] |= o
    return watch, tails


def normalize(path: str) -> str:
    """Absolute path with ".", ".." and empty components resolved (lexically, like the
    kernel would for a path without symlinks). Relative paths are returned unchanged."""
    if not path.startswith("/"):
        return path
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
            continue
        out.append(part)
    return "/" + "/".join(out)
