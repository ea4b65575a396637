"""file.* and wrote_exec.* fields: changes to watched files, and files executed after a write.

Paths: `file.path` is the first path of the call; `file.path2` the second (the new name of a
rename or link, the new link of a symlink). `file.changed_path` is the path the change lands
on whatever the call. For links the names say which end is which, because "target" reads
both ways: `file.link_path` is the new link's own path and `file.link_to` what it points to
(symlink(2) writes `file.link_to` into the new link at `file.link_path`). The old name
`file.target` still works, with a deprecation warning (it meant `file.changed_path`).
"""

from __future__ import annotations

from spyderd.model.events import Event
from spyderd.model.nodes import Node
from spyderd.rules.fields.base import Field, Getter, ev_attr, event_attr, event_field

FILE = frozenset({"file"})
FILE_PATH = frozenset({"file", "wrote_exec"})
WROTE_EXEC = frozenset({"wrote_exec"})
# what capture reports in file.op (capture.watch.OPS, plus the ops of issue 11's capture:
# read, utimes, setflags); a test checks that every op capture knows is here
FILE_OPS = frozenset({
    "open", "open_failed", "create", "unlink", "rename", "chmod", "chown", "setxattr",
    "removexattr", "truncate", "link", "symlink", "read", "utimes", "setflags",
})  # fmt: skip
_MODE_OPS = frozenset({"chmod", "create", "open"})
_ACCESS = {0: "read", 1: "write", 2: "rdwr"}
_RENAMING = frozenset({"rename", "link", "symlink"})
_LINKING = frozenset({"link", "symlink"})
O_TRUNC = 0o1000


def _file_name(ev: Event | None, node: Node) -> str | None:
    path = ev_attr("path", FILE_PATH)(ev, node)
    return path.rsplit("/", 1)[-1] if path else None


def _file_dir(ev: Event | None, node: Node) -> str | None:
    path = ev_attr("path", FILE_PATH)(ev, node)
    if not path or "/" not in path:
        return None
    return path.rsplit("/", 1)[0] or "/"


def changed_path(ev: Event | None, node: Node) -> str | None:
    """The path a change lands on: the new name for rename/link/symlink, else the path."""
    if ev is None or ev.kind not in FILE_PATH:
        return None
    if ev.kind == "file" and ev.op in _RENAMING and ev.path2:  # type: ignore[attr-defined]
        return ev.path2  # type: ignore[attr-defined]
    return ev.path  # type: ignore[attr-defined]


def _link_end(new: bool) -> Getter:
    """link/symlink only: the new link's path (`new`), else what it points to."""

    def get(ev: Event | None, node: Node) -> str | None:
        if ev is None or ev.kind != "file" or ev.op not in _LINKING:  # type: ignore[attr-defined]
            return None
        return (ev.path2 if new else ev.path) or None  # type: ignore[attr-defined]

    return get


def _truncating(ev: Event | None, node: Node) -> bool | None:
    if ev is None or ev.kind != "file":
        return None
    op = ev.op  # type: ignore[attr-defined]
    return op == "truncate" or (op == "open" and bool(ev.flags & O_TRUNC))  # type: ignore[attr-defined]


def _access(ev: Event | None, node: Node) -> str | None:
    if ev is None or ev.kind != "file" or ev.op not in ("open", "open_failed"):  # type: ignore[attr-defined]
        return None
    return _ACCESS.get(ev.flags & 3)  # type: ignore[attr-defined]


def _mode_bit(bit: int) -> Getter:
    def get(ev: Event | None, node: Node) -> bool | None:
        if ev is None or ev.kind != "file" or ev.op not in _MODE_OPS:  # type: ignore[attr-defined]
            return None
        return bool(ev.mode & bit)  # type: ignore[attr-defined]

    return get


def _write_delay(ev: Event | None, node: Node) -> int | None:
    if ev is None or ev.kind != "wrote_exec" or not ev.write_time:  # type: ignore[attr-defined]
        return None
    return ev.time - ev.write_time  # type: ignore[attr-defined]


_CHANGED_DOC = "The path the change lands on: the new name for rename, link and symlink, else path."


def file_fields() -> list[Field]:
    f, ev = event_field, event_attr
    return [
        f("file.path", "str", FILE_PATH, "First path of the call (wrote_exec: the executed "
          "file; symlink: what the new link points to).", ev_attr("path", FILE_PATH)),
        f("file.name", "str", FILE_PATH, "Basename of file.path.", _file_name),
        f("file.directory", "str", FILE_PATH, "Directory of file.path.", _file_dir),
        ev("file.path2", "str", FILE, "Second path: the new name for rename and link, the new "
           "link for symlink.", ""),
        f("file.changed_path", "str", FILE_PATH, _CHANGED_DOC, changed_path),
        f("file.target", "str", FILE_PATH, "Deprecated name of file.changed_path.",
          changed_path, deprecated="file.changed_path"),
        f("file.link_path", "str", FILE, "link and symlink: the path of the new link itself.",
          _link_end(True)),
        f("file.link_to", "str", FILE, "link and symlink: the path the new link points to "
          "(symlink: its content, as written).", _link_end(False)),
        f("file.truncating", "bool", FILE,
          "truncate, or open with O_TRUNC: the file's content is being thrown away.",
          _truncating),
        ev("file.op", "str", FILE, ", ".join(sorted(FILE_OPS)) + " (open: for write).",
           choices=FILE_OPS),
        ev("file.flags", "int", FILE, "open(2) flags (test bits with `&`: "
           "`file.flags & O_TRUNC`)."),
        ev("file.mode", "int", FILE, "Mode for chmod and create (e.g. 0o4755)."),
        f("file.setuid", "bool", FILE, "chmod/create/open with the set-user-id bit (0o4000).",
          _mode_bit(0o4000)),
        f("file.setgid", "bool", FILE, "chmod/create/open with the set-group-id bit (0o2000).",
          _mode_bit(0o2000)),
        f("file.access", "str", FILE, "open and open_failed: read, write or rdwr.", _access,
          choices=frozenset(_ACCESS.values())),
        ev("file.owner", "int", FILE, "chown: new owner uid (-1 unchanged).", -1),
        ev("file.group", "int", FILE, "chown: new group gid (-1 unchanged).", -1),
        ev("file.result", "int", FILE, "0 on success, else -errno."),
        ev("file.inode", "int", FILE_PATH, "Inode number, when known.", 0),
        f("wrote_exec.writer_pid", "int", WROTE_EXEC,
          "Pid of the process that wrote the executed file.", ev_attr("writer_pid", WROTE_EXEC)),
        f("wrote_exec.writer_comm", "str", WROTE_EXEC, "comm of the writer.",
          ev_attr("writer_comm", WROTE_EXEC, "")),
        f("wrote_exec.delay", "duration", WROTE_EXEC,
          "Time from the write to the execution (e.g. `< 60s`).", _write_delay),
        f("wrote_exec.script", "bool", WROTE_EXEC,
          "The executed file is a script its interpreter read (a #! script, or `bash x.sh`, "
          "`python3 x.py`), not a binary the kernel loaded.",
          ev_attr("script", WROTE_EXEC, False)),
    ]  # fmt: skip
