"""Fields over issue 11's capture: what an exec carries beyond argv (script, watched
environment, fds 0-2 and the processes at the other end of their pipes, capabilities), the
file changes recorded anywhere (file capabilities, timestamps, inode flags, spyderd's own
files), raw/packet sockets, sockets dup'ed onto stdio, and signals aimed at spyderd.

`process.env.NAME` exists for every NAME (see `env_field`); only the names of
`capture.env_vars` are ever captured, so others always read as missing.
"""

from __future__ import annotations

from typing import Any

from spyderd.model.events import Event, ExecEvent, cap_names
from spyderd.model.nodes import Node
from spyderd.rules.context import GraphContext
from spyderd.rules.fields.base import (
    ALL_KINDS,
    CtxGetter,
    Field,
    Getter,
    ev_attr,
    event_field,
    exec_attr,
    id_attr,
    node_field,
)
from spyderd.rules.fields.files import FILE, FILE_PATH, changed_path
from spyderd.rules.fields.process import process_name

STDIO = ("stdin", "stdout", "stderr")
# spyderd's own configuration, rules, state, code and binaries (default install and .deb).
SPYDERD_PATHS = ("/etc/spyderd/", "/usr/share/spyderd/", "/var/lib/spyderd/", "/opt/spyderd/",
                 "/usr/local/sbin/spyderd", "/usr/local/sbin/spyderctl", "/usr/sbin/spyderd",
                 "/usr/bin/spyderctl", "/lib/systemd/system/spyderd.service",
                 "/etc/systemd/system/spyderd.service")
SOCKET, DUP, KERNEL = frozenset({"socket"}), frozenset({"dup"}), frozenset({"kernel"})


# -- the image -------------------------------------------------------------------------------


def _exec_value(node: Node, ev: Event | None, key: str) -> Any:
    """A node attribute set at exec, else the exec event's own field (before the graph)."""
    value = node.attrs.get(key)
    if value is None and isinstance(ev, ExecEvent):
        value = getattr(ev, key, None)
    return value


def _env(name: str) -> Getter:
    def get(ev: Event | None, node: Node) -> str | None:
        env = _exec_value(node, ev, "env")
        return env.get(name) if env else None

    return get


def _env_list(ev: Event | None, node: Node) -> list[str] | None:
    env = _exec_value(node, ev, "env")
    return None if env is None else [f"{k}={v}" for k, v in env.items()]


def _stdio(index: int, key: str) -> Getter:
    name = STDIO[index]

    def get(ev: Event | None, node: Node) -> Any:
        fd = node.attrs.get(name)
        if fd is None and isinstance(ev, ExecEvent) and len(ev.stdio) > index:
            fd = ev.stdio[index]
        value = fd.get(key) if fd else None
        return None if value == "" else value

    return get


def _stdio_peer(index: int) -> CtxGetter:
    side = "writers" if index == 0 else "readers"
    key = STDIO[index]

    def get(ev: Event | None, node: Node, ctx: GraphContext) -> str | None:
        fd = node.attrs.get(key) or {}
        if fd.get("type") != "pipe":
            return None
        peers = ctx.pipe_peers(node, side)
        return process_name(None, peers[0]) if peers else None

    return get


def _caps(ev: Event | None, node: Node) -> list[str] | None:
    mask = _exec_value(node, ev, "cap_effective")
    return None if mask is None or mask < 0 else cap_names(mask)


def env_field(name: str, parent: bool = False) -> Field:
    """`process.env.NAME` (`parent.env.NAME`) for any variable name."""
    prefix = "parent" if parent else "process"
    return Field(f"{prefix}.env.{name}", "str", ALL_KINDS,
                 f"Value of {name} in the image's environment at exec (capture.env_vars only; "
                 "missing when unset).", _env(name), of_parent=parent)


def _stdio_fields(i: int, fd: str) -> list[Field]:
    f = node_field
    return [
        f(f"process.{fd}.type", "str", f"What fd {i} is at exec: tty, null, chardev, file, "
          "fifo, pipe, socket, dir, other or closed.", _stdio(i, "type"),
          choices=frozenset({"tty", "null", "chardev", "file", "fifo", "pipe", "socket", "dir",
                             "other", "closed"})),
        f(f"process.{fd}.path", "str", f"fd {i}'s path: file, fifo, tty device, /dev/null.",
          _stdio(i, "path")),
        f(f"process.{fd}.protocol", "str", f"fd {i} a socket: tcp, udp, unix, raw, packet.",
          _stdio(i, "protocol")),
        f(f"process.{fd}.remote_ip", "ip", f"fd {i} an inet socket: remote address.",
          _stdio(i, "remote_ip")),
        f(f"process.{fd}.remote_port", "int", f"fd {i} an inet socket: remote port.",
          _stdio(i, "remote_port")),
        f(f"process.{fd}.local_ip", "ip", f"fd {i} an inet socket: local address.",
          _stdio(i, "local_ip")),
        f(f"process.{fd}.local_port", "int", f"fd {i} an inet socket: local port.",
          _stdio(i, "local_port")),
        f(f"process.{fd}.pipe", "int", f"fd {i} a pipe: its inode (the same at both ends).",
          _stdio(i, "pipe")),
        f(f"process.{fd}.peer", "str", f"fd {i} a pipe: name of the process at the other end "
          "(the writer for stdin, the reader for stdout/stderr), once both ends exec'd.",
          lambda ev, node: None, ctx_get=_stdio_peer(i), mutable_on=frozenset({"exec"})),
    ]


def image_fields() -> list[Field]:
    f = node_field
    out = [
        f("process.script", "str", "Script an interpreter runs (bash x.sh, python3 x.py, a #! "
          "script), absolute; missing for inline code (-c, -e) and stdin.",
          exec_attr("script")),
        Field("parent.script", "str", ALL_KINDS, "Parent process's script (see process.script).",
              exec_attr("script"), of_parent=True),
        f("process.env", "list[str]", "The watched environment variables (capture.env_vars) "
          "set in the image, as NAME=value.", _env_list),
        f("process.cap_effective", "int", "Effective capability mask after exec.",
          id_attr("cap_effective")),
        f("process.caps", "list[str]", "Names of the effective capabilities after exec, "
          "e.g. CAP_SYS_ADMIN.", _caps),
    ]
    for i, fd in enumerate(STDIO):
        out += _stdio_fields(i, fd)
    return out


# -- events ----------------------------------------------------------------------------------


def _file_op_value(op: str, attr: str, missing: Any = None) -> Getter:
    def get(ev: Event | None, node: Node) -> Any:
        if ev is None or ev.kind != "file" or ev.op != op:  # type: ignore[attr-defined]
            return None
        value = getattr(ev, attr)
        return None if value == missing and missing is not None else value

    return get


def _fsflag(bit: int) -> Getter:
    def get(ev: Event | None, node: Node) -> bool | None:
        if ev is None or ev.kind != "file" or ev.op != "setflags":  # type: ignore[attr-defined]
            return None
        return bool(ev.fsflags & bit)  # type: ignore[attr-defined]

    return get


def _spyderd_file(ev: Event | None, node: Node) -> bool | None:
    path = changed_path(ev, node)
    return None if path is None else path.startswith(SPYDERD_PATHS)


def event_fields() -> list[Field]:
    f = event_field
    return [
        f("file.xattr", "str", FILE, "setxattr/removexattr: the attribute name "
          "(security.capability: file capabilities).", ev_attr("xattr", FILE, "")),
        f("file.atime", "int", FILE, "utimes: access time set explicitly (wall ns); missing "
          "when kept or set to now.", _file_op_value("utimes", "atime", -1)),
        f("file.mtime", "int", FILE, "utimes: modification time set explicitly (wall ns); "
          "missing when kept or set to now.", _file_op_value("utimes", "mtime", -1)),
        f("file.fsflags", "int", FILE, "setflags: the new inode flags (chattr; 0x10 "
          "immutable, 0x20 append-only).", _file_op_value("setflags", "fsflags")),
        f("file.old_fsflags", "int", FILE, "setflags: immutable/append-only flags before.",
          _file_op_value("setflags", "old_fsflags")),
        f("file.immutable", "bool", FILE, "setflags: the file is made (or stays) immutable.",
          _fsflag(0x10)),
        f("file.append_only", "bool", FILE, "setflags: the file is made (or stays) "
          "append-only.", _fsflag(0x20)),
        f("file.spyderd", "bool", FILE_PATH, "The path is spyderd's own configuration, rules, "
          "state, code or binary.", _spyderd_file),
        f("socket.family", "str", SOCKET, "packet, inet, inet6, ... (raw and packet sockets "
          "only).", ev_attr("family", SOCKET)),
        f("socket.type", "str", SOCKET, "raw, dgram, ...", ev_attr("type", SOCKET)),
        f("socket.protocol", "int", SOCKET, "Protocol number (ETH_P_* for packet sockets, "
          "in network order).", ev_attr("protocol", SOCKET)),
        f("dup.oldfd", "int", DUP, "The socket's fd duplicated.", ev_attr("oldfd", DUP)),
        f("dup.newfd", "int", DUP, "The fd it was duplicated onto: 0, 1 or 2.",
          ev_attr("newfd", DUP)),
        f("dup.protocol", "str", DUP, "tcp, udp, unix, raw, packet ...",
          ev_attr("protocol", DUP, "")),
        f("dup.remote_ip", "ip", DUP, "Remote address of the socket.",
          ev_attr("remote_ip", DUP, "")),
        f("dup.remote_port", "int", DUP, "Remote port of the socket.",
          ev_attr("remote_port", DUP, 0)),
        f("dup.local_ip", "ip", DUP, "Local address of the socket.",
          ev_attr("local_ip", DUP, "")),
        f("dup.local_port", "int", DUP, "Local port of the socket.",
          ev_attr("local_port", DUP, 0)),
        f("kernel.target_spyderd", "bool", KERNEL, "kill/tkill/tgkill: the signal is aimed at "
          "this spyderd (its pid, one of its threads, its process group, or -1: every "
          "process).", ev_attr("target_spyderd", KERNEL)),
        f("kernel.target_name", "str", KERNEL, "kill/tkill/tgkill/ptrace: name of the target "
          "process, when it could be read.", ev_attr("target_name", KERNEL, "")),
    ]


def capture_fields() -> list[Field]:
    return [*image_fields(), *event_fields()]
