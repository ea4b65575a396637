"""Terminal names and user/group names, cached.

Names come from the process's own /etc/passwd and /etc/group when it runs in another
mount namespace (a container's uid 33 is not the host's uid 33), else from the host's
name service (pwd/grp, which may ask NSS: LDAP, sssd...). Every answer, including "no such
user", is cached, so a name service is asked at most once per id.
"""

from __future__ import annotations

import grp
import pwd
from collections.abc import Callable


def tty_name(tty_nr: int) -> str:
    """`pts/3`, `tty1`, `ttyS0`, `console`... from /proc/<pid>/stat's tty_nr; "" for none."""
    if tty_nr <= 0:
        return ""
    major = (tty_nr >> 8) & 0xFFF
    minor = (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}" if minor < 64 else f"ttyS{minor - 64}"
    if major == 5:
        return {0: "tty", 1: "console", 2: "ptmx"}.get(minor, f"tty5:{minor}")
    named = {188: "ttyUSB", 166: "ttyACM", 204: "ttyAMA", 229: "hvc", 207: "ttymxc"}
    if major in named:
        return f"{named[major]}{minor}"
    return f"tty{major}:{minor}"


def parse_db(text: str) -> dict[int, str]:
    """id -> name from passwd(5) or group(5) text (name:x:id:...)."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit() and not line.startswith("#"):
            out.setdefault(int(parts[2]), parts[0])
    return out


def _host_user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return ""


def _host_group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return ""


class NameCache:
    """uid/gid -> name, per mount namespace (the host's through pwd/grp)."""

    def __init__(self, host_mntns: int, proc: str = "/proc", max_namespaces: int = 512) -> None:
        self.host_mntns = host_mntns
        self.proc = proc
        self.max_namespaces = max_namespaces
        self._host: dict[tuple[str, int], str] = {}
        self._ns: dict[int, tuple[dict[int, str], dict[int, str]]] = {}

    def user(self, uid: int, pid: int = 0, mntns: int = -1) -> str:
        return self._name("passwd", uid, pid, mntns, _host_user)

    def group(self, gid: int, pid: int = 0, mntns: int = -1) -> str:
        return self._name("group", gid, pid, mntns, _host_group)

    def _name(self, db: str, ident: int, pid: int, mntns: int,
              host: Callable[[int], str]) -> str:
        if ident < 0:
            return ""
        if mntns > 0 and mntns != self.host_mntns and (pid > 0 or mntns in self._ns):
            users, groups = self._container_dbs(pid, mntns)
            table = users if db == "passwd" else groups
            if table:
                return table.get(ident, "")
        key = (db, ident)
        if key not in self._host:
            self._host[key] = host(ident)
        return self._host[key]

    def _container_dbs(self, pid: int, mntns: int) -> tuple[dict[int, str], dict[int, str]]:
        """The namespace's passwd/group, read once through /proc/<pid>/root."""
        dbs = self._ns.get(mntns)
        if dbs is None:
            dbs = (self._read(pid, "passwd"), self._read(pid, "group"))
            if len(self._ns) >= self.max_namespaces:
                self._ns.pop(next(iter(self._ns)))
            self._ns[mntns] = dbs
        return dbs

    def _read(self, pid: int, name: str) -> dict[int, str]:
        try:
            with open(f"{self.proc}/{pid}/root/etc/{name}", errors="replace") as f:
                return parse_db(f.read(1 << 20))
        except OSError:
            return {}
