"""The field catalogue: every name a condition or an output template may use.

A field reads one value from the subject of a rule: the event (`ev`) and the process image it
belongs to (`node`). Inside a causal operator (`parent(...)`, `ancestor(...)`, ...) the subject
is another node and there is no event, so event fields (`connection.*`, `file.*`, `exit.*`,
`evt.kind`, ...) read as missing there. A missing value (None) makes every comparison false,
`!=` included; `exists` tests for it.

Where a value comes from:

- `process.*`, `user.*`, `container.*`, `k8s.*`: the image's node (graph and enrichment
  attributes). A few exec facts (cwd, interpreter, euid, loginuid) fall back to the exec event
  itself while the graph has not copied them to the node.
- `parent.*`: the same as `process.*`, read from the parent *process*: the image that
  forked the subject's process, past the execs of the process itself (like `ps`'s parent and
  Falco's `proc.pname`). The `parent(...)` operator instead tests the image the subject came
  from, which after an exec is the same process's previous image.
- `session.*`: the session node (`ctx.session(node)`), else the image's own copy of the
  attribute; `machine.*`: the machine node (`ctx.machine(node)`).
- everything else: the event, only for the kinds listed with the field.

`mutable_on` names the event kinds after which a field's value on an existing node may change
(`process.listening` after `listen`). Cached ancestry results that read such a field are
dropped when an event of that kind arrives (see `combinators.AncestorCache`).

Types: str, int, bool, list[str], duration (ns; literals like 30s), ip (a str holding an
IPv4/IPv6 address; compares as an address and accepts CIDR networks in `in (...)`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from spyderd.model.events import EVENT_TYPES, Event, ExecEvent
from spyderd.model.nodes import Node
from spyderd.rules.context import GraphContext, parent_process

FIELD_TYPES = ("str", "int", "bool", "list[str]", "duration", "ip")
ALL_KINDS = frozenset(EVENT_TYPES)
_TCP = frozenset({"connect", "accept"})
_LOCAL = frozenset({"connect", "accept", "listen", "bind"})
_REMOTE = frozenset({"connect", "accept", "udp"})
_SOCK = frozenset({"connect", "accept", "listen", "bind", "udp"})
_RESULT = frozenset(
    {
        "connect",
        "accept",
        "bind",
        "udp",
        "unix_connect",
        "file",
        "cred",
        "setsid",
        "prctl",
        "kernel",
    }
)
_FILE = frozenset({"file"})
_FILE_PATH = frozenset({"file", "wrote_exec"})
_MODE_OPS = frozenset({"chmod", "create", "open"})
# Initial namespaces have fixed inode numbers (include/linux/proc_ns.h): a process in them
# shares the host's namespace.
HOST_NS = {"pidns": 0xEFFFFFFC, "userns": 0xEFFFFFFD, "utsns": 0xEFFFFFFE}

Getter = Callable[[Event | None, Node], Any]
CtxGetter = Callable[[Event | None, Node, GraphContext], Any]
Reader = Callable[[Event | None, Node, GraphContext], Any]


@dataclass(frozen=True, slots=True)
class Field:
    """One field: its type, the event kinds that provide it, and how to read it."""

    name: str
    type: str
    kinds: frozenset[str]
    doc: str
    get: Getter
    from_event: bool = False  # read from the event only: missing inside causal operators
    of_parent: bool = False  # read from ctx.parent(node) instead of node
    hop: str = ""  # "session" or "machine": read from that context node
    ctx_get: CtxGetter | None = None  # reads the graph itself (connections, ...)
    mutable_on: frozenset[str] = frozenset()


# -- getters ---------------------------------------------------------------------------------


def _exe(ev: Event | None, node: Node) -> str | None:
    exe = node.attrs.get("exe")
    if not exe and isinstance(ev, ExecEvent):
        exe = ev.filename
    return exe or None


def _args(ev: Event | None, node: Node) -> list[str] | None:
    args = node.attrs.get("args")
    if args is None and isinstance(ev, ExecEvent):
        args = ev.args
    return None if args is None else list(args)


def _cmdline(ev: Event | None, node: Node) -> str | None:
    args = node.attrs.get("args")
    if args is None and isinstance(ev, ExecEvent):
        args = ev.args
    return None if args is None else " ".join(args)


_BASENAMES: dict[str, str] = {}


def process_name(ev: Event | None, node: Node) -> str | None:
    """Basename of the executable (memoised: it is read by most rules on every event)."""
    exe = node.attrs.get("exe")
    if not exe and isinstance(ev, ExecEvent):
        exe = ev.filename
    if exe:
        name = _BASENAMES.get(exe)
        if name is None:
            if len(_BASENAMES) > 65536:
                _BASENAMES.clear()
            name = _BASENAMES[exe] = exe.rsplit("/", 1)[-1]
        return name
    return node.attrs.get("comm") or (ev.comm if ev is not None else None) or None


def _comm(ev: Event | None, node: Node) -> str | None:
    return node.attrs.get("comm") or (ev.comm if ev is not None else None) or None


def _attr(key: str) -> Getter:
    """A node attribute; "" and None read as missing."""

    def get(ev: Event | None, node: Node) -> Any:
        value = node.attrs.get(key)
        return None if value is None or value == "" else value

    return get


def _id_attr(key: str) -> Getter:
    """A numeric id attribute where -1 (and absence) mean unknown."""

    def get(ev: Event | None, node: Node) -> Any:
        value = node.attrs.get(key)
        return None if value is None or value == -1 or value == "" else value

    return get


def _exec_attr(key: str, unset: Any = "") -> Getter:
    """A node attribute the exec event also carries: the node first, then the event."""

    def get(ev: Event | None, node: Node) -> Any:
        value = node.attrs.get(key)
        if (value is None or value == unset) and isinstance(ev, ExecEvent):
            value = getattr(ev, key)
        return None if value is None or value == unset else value

    return get


def _bool_attr(key: str) -> Getter:
    def get(ev: Event | None, node: Node) -> Any:
        value = node.attrs.get(key)
        return None if value is None else bool(value)

    return get


def _tty(ev: Event | None, node: Node) -> str | None:
    value = node.attrs.get("tty")
    return str(value) if value not in (None, "", 0) else None


def _host_ns(key: str) -> Getter:
    def get(ev: Event | None, node: Node) -> bool | None:
        value = node.attrs.get(key)
        return None if not value else value == HOST_NS[key]

    return get


def _memfd(ev: Event | None, node: Node) -> bool:
    exe = _exe(ev, node) or ""
    if exe.startswith("/memfd:"):
        return True
    return isinstance(ev, ExecEvent) and ev.execveat and exe.startswith(("/dev/fd/", "/proc/"))


def _connections_out(ev: Event | None, node: Node, ctx: GraphContext) -> int:
    return sum(
        1
        for c in ctx.connections(node)
        if c.attrs.get("direction") == "out" and not c.attrs.get("result")
    )


def _ev(attr: str, kinds: frozenset[str], missing: Any = None) -> Getter:
    """An event attribute, only on events of `kinds`; `missing` values read as None."""

    def get(ev: Event | None, node: Node) -> Any:
        if ev is None or ev.kind not in kinds:
            return None
        value = getattr(ev, attr, None)
        return None if value == missing and missing is not None else value

    return get


def _protocol(ev: Event | None, node: Node) -> str | None:
    if ev is None or ev.kind not in _SOCK:
        return None
    if ev.kind == "bind":
        return ev.protocol  # type: ignore[attr-defined]
    return "udp" if ev.kind == "udp" else "tcp"


_DIRECTION = {"connect": "out", "accept": "in", "listen": "listen", "bind": "bind", "udp": "out"}


def _direction(ev: Event | None, node: Node) -> str | None:
    return _DIRECTION.get(ev.kind) if ev is not None else None


def _file_name(ev: Event | None, node: Node) -> str | None:
    path = _ev("path", _FILE_PATH)(ev, node)
    return path.rsplit("/", 1)[-1] if path else None


def _file_dir(ev: Event | None, node: Node) -> str | None:
    path = _ev("path", _FILE_PATH)(ev, node)
    if not path or "/" not in path:
        return None
    return path.rsplit("/", 1)[0] or "/"


_ACCESS = {0: "read", 1: "write", 2: "rdwr"}
_RENAMING = frozenset({"rename", "link", "symlink"})
O_TRUNC = 0o1000


def _target(ev: Event | None, node: Node) -> str | None:
    """The path a change lands on: the new name for rename/link/symlink, else the path."""
    if ev is None or ev.kind not in _FILE_PATH:
        return None
    if ev.kind == "file" and ev.op in _RENAMING and ev.path2:  # type: ignore[attr-defined]
        return ev.path2  # type: ignore[attr-defined]
    return ev.path  # type: ignore[attr-defined]


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


def _cred_args(ev: Event | None, node: Node) -> list[str] | None:
    if ev is None or ev.kind != "cred":
        return None
    return [str(a) for a in ev.args]  # type: ignore[attr-defined]


_UID_ARG = {"setuid": 0, "setfsuid": 0, "setreuid": 1, "setresuid": 1}


def _cred_new_uid(ev: Event | None, node: Node) -> int | None:
    """The effective (or fs) uid the call asks for; the real uid when euid is unchanged."""
    if ev is None or ev.kind != "cred" or ev.call not in _UID_ARG:  # type: ignore[attr-defined]
        return None
    args = ev.args  # type: ignore[attr-defined]
    i = _UID_ARG[ev.call]  # type: ignore[attr-defined]
    if i < len(args) and args[i] != -1:
        return args[i]
    return args[0] if args and args[0] != -1 else None


def _result(ev: Event | None, node: Node) -> int | None:
    return getattr(ev, "result", None) if ev is not None and ev.kind in _RESULT else None


# -- the catalogue ---------------------------------------------------------------------------


def _process_fields() -> list[Field]:
    def f(name: str, type_: str, doc: str, get: Getter, **kw: Any) -> Field:
        return Field(name, type_, ALL_KINDS, doc, get, **kw)

    return [
        f(
            "process.name",
            "str",
            "Program name: basename of the executable, else comm.",
            process_name,
        ),
        f("process.exe", "str", "Path of the executable the image runs.", _exe),
        f("process.args", "list[str]", "Argument vector; `contains` tests for one element.", _args),
        f("process.cmdline", "str", "The arguments joined by spaces.", _cmdline),
        f("process.comm", "str", "The kernel's 16-byte task name.", _comm),
        f("process.cwd", "str", "Working directory at exec.", _exec_attr("cwd")),
        f(
            "process.interpreter",
            "str",
            "For a script: the interpreter the kernel ran for its #! line.",
            _exec_attr("interpreter"),
        ),
        f("process.pid", "int", "Process id.", lambda ev, node: node.pid),
        f("process.ppid", "int", "Parent process id.", lambda ev, node: node.ppid),
        f("process.uid", "int", "Real user id the image runs as.", lambda ev, node: node.uid),
        f("process.gid", "int", "Real group id, when known.", _id_attr("gid")),
        f(
            "process.euid",
            "int",
            "Effective uid after exec (differs from uid for setuid programs).",
            _exec_attr("euid", -1),
        ),
        f(
            "process.loginuid",
            "int",
            "Audit login uid: the user who logged in, kept across su and sudo.",
            _exec_attr("loginuid", -1),
        ),
        f(
            "process.sessionid",
            "int",
            "Audit session id of the login.",
            _exec_attr("sessionid", -1),
        ),
        f("process.tty", "str", "Controlling terminal (e.g. pts/0); missing when none.", _tty),
        f(
            "process.interactive",
            "bool",
            "True when the image runs in an interactive session (a terminal).",
            _bool_attr("interactive"),
        ),
        f("process.id", "str", "Graph id of the process image.", lambda ev, node: node.id),
        f("process.start", "int", "Wall-clock ns the image started.", lambda ev, node: node.start),
        f(
            "process.args_truncated",
            "bool",
            "True when capture cut the argument vector.",
            lambda ev, node: bool(node.attrs.get("args_truncated")),
        ),
        f(
            "process.memfd",
            "bool",
            "True when the image runs from a memfd or an fd path (fileless execution).",
            _memfd,
        ),
        f(
            "process.listening",
            "bool",
            "True once the image listened on a TCP port.",
            lambda ev, node: bool(node.attrs.get("listen_ports")),
            mutable_on=frozenset({"listen"}),
        ),
        f(
            "process.accepts",
            "int",
            "Inbound connections the image accepted so far.",
            lambda ev, node: int(node.attrs.get("accepts", 0)),
            mutable_on=frozenset({"accept"}),
        ),
        f(
            "process.connections_out",
            "int",
            "Established outbound TCP connections the image made so far.",
            lambda ev, node: None,
            ctx_get=_connections_out,
            mutable_on=frozenset({"connect"}),
        ),
        f(
            "process.container_id",
            "str",
            "Container id; missing on the host.",
            _attr("container_id"),
        ),
        f(
            "process.session_id",
            "str",
            "Graph id of the image's session node.",
            _attr("session_id"),
        ),
        *(
            f(f"process.{ns}", "int", f"Inode of the image's {ns[:-2]} namespace.", _attr(ns))
            for ns in ("netns", "pidns", "mntns", "userns", "utsns")
        ),
        *(
            f(
                f"process.host_{ns}",
                "bool",
                f"True when the image is in the host's (initial) {ns[:-2]} namespace.",
                _host_ns(ns),
            )
            for ns in HOST_NS
        ),
    ]


def _context_fields() -> list[Field]:
    def f(name: str, type_: str, doc: str, get: Getter, **kw: Any) -> Field:
        return Field(name, type_, ALL_KINDS, doc, get, **kw)

    return [
        Field(
            "user.uid",
            "int",
            ALL_KINDS,
            "Uid of the event, else of the image.",
            lambda ev, node: ev.uid if ev is not None else node.uid,
        ),
        f("user.name", "str", "User name of the image's uid.", _attr("user")),
        f(
            "user.loginuid",
            "int",
            "Audit login uid (same as process.loginuid).",
            _exec_attr("loginuid", -1),
        ),
        f("group.name", "str", "Group name of the image's gid.", _attr("group")),
        f("container.id", "str", "Container id; missing on the host.", _attr("container_id")),
        f("container.name", "str", "Container name.", _attr("container_name")),
        f("container.image", "str", "Container image reference.", _attr("container_image")),
        f(
            "container.runtime",
            "str",
            "Container runtime: docker, containerd, cri-o, podman, lxc, nspawn, runc ...",
            _attr("container_runtime"),
        ),
        f("k8s.pod", "str", "Kubernetes pod name.", _attr("k8s_pod")),
        f("k8s.namespace", "str", "Kubernetes namespace.", _attr("k8s_namespace")),
        f("k8s.pod_uid", "str", "Kubernetes pod uid.", _attr("k8s_pod_uid")),
        f("k8s.container", "str", "Kubernetes container name.", _attr("k8s_container")),
        f(
            "session.id",
            "str",
            "Graph id of the session node.",
            lambda ev, node: node.id if node.kind == "session" else None,
            hop="session",
        ),
        f(
            "session.interactive",
            "bool",
            "True for a session with a terminal (a login).",
            _bool_attr("interactive"),
            hop="session",
        ),
        f("session.tty", "str", "The session's terminal.", _tty, hop="session"),
        f("session.user", "str", "User name of the session's login.", _attr("user"), hop="session"),
        f(
            "session.loginuid",
            "int",
            "Audit login uid of the session.",
            _id_attr("loginuid"),
            hop="session",
        ),
        f("machine.id", "str", "Machine id (/etc/machine-id).", _attr("machine_id")),
        f("machine.hostname", "str", "Host name.", _attr("hostname"), hop="machine"),
        f(
            "machine.virt",
            "str",
            "Virtualization: kvm, xen, vmware, none ...",
            _attr("virt"),
            hop="machine",
        ),
        f("machine.vm", "bool", "True on a virtual machine.", _bool_attr("vm"), hop="machine"),
        f(
            "machine.container",
            "str",
            "Container spyderd itself runs in; missing on a host.",
            _attr("container"),
            hop="machine",
        ),
        f("machine.kernel", "str", "Kernel release.", _attr("kernel"), hop="machine"),
    ]


def _parent_fields(process: list[Field]) -> list[Field]:
    wanted = (
        "name",
        "exe",
        "args",
        "cmdline",
        "comm",
        "cwd",
        "pid",
        "uid",
        "euid",
        "loginuid",
        "tty",
        "id",
        "listening",
        "container_id",
    )
    by_name = {fld.name: fld for fld in process}
    out = []
    for key in wanted:
        src = by_name["process." + key]
        out.append(
            Field(
                "parent." + key,
                src.type,
                ALL_KINDS,
                f"Parent process's {key} (see process.{key}).",
                src.get,
                of_parent=True,
                mutable_on=src.mutable_on,
            )
        )
    return out


def _event_fields() -> list[Field]:
    def f(name: str, type_: str, kinds: frozenset[str], doc: str, get: Getter) -> Field:
        return Field(name, type_, kinds, doc, get, from_event=True)

    def ev(name: str, type_: str, kinds: frozenset[str], doc: str, missing: Any = None) -> Field:
        return f(name, type_, kinds, doc, _ev(name.split(".", 1)[1], kinds, missing))

    one = frozenset
    return [
        f(
            "evt.kind",
            "str",
            ALL_KINDS,
            "Event kind: " + ", ".join(EVENT_TYPES) + ".",
            lambda ev, node: ev.kind if ev is not None else None,
        ),
        f(
            "evt.time",
            "int",
            ALL_KINDS,
            "Event wall-clock time, ns.",
            lambda ev, node: ev.time if ev is not None else None,
        ),
        f("evt.result", "int", _RESULT, "0 or a positive value on success, else -errno.", _result),
        ev("connection.family", "int", _SOCK, "Address family: 4 or 6."),
        f("connection.protocol", "str", _SOCK, "tcp or udp.", _protocol),
        f(
            "connection.direction",
            "str",
            _SOCK,
            "out (connect, udp), in (accept), listen, bind.",
            _direction,
        ),
        ev("connection.local_ip", "ip", _LOCAL, "Local address."),
        ev("connection.local_port", "int", _LOCAL, "Local port."),
        ev("connection.remote_ip", "ip", _REMOTE, "Remote address."),
        ev("connection.remote_port", "int", _REMOTE, "Remote port."),
        ev("connection.result", "int", _TCP | {"bind", "udp"}, "0 when it worked, else -errno."),
        ev("connection.netns", "int", _SOCK, "Network namespace inode of the socket.", 0),
        f(
            "connection.call",
            "str",
            one({"udp"}),
            "udp: sendto, sendmsg or connect.",
            _ev("call", one({"udp"})),
        ),
        f(
            "unix.path",
            "str",
            one({"unix_connect"}),
            "Unix socket path ('@' for abstract).",
            _ev("path", one({"unix_connect"})),
        ),
        f(
            "file.path",
            "str",
            _FILE_PATH,
            "Path of the file (wrote_exec: the executed file).",
            _ev("path", _FILE_PATH),
        ),
        f("file.name", "str", _FILE_PATH, "Basename of file.path.", _file_name),
        f("file.directory", "str", _FILE_PATH, "Directory of file.path.", _file_dir),
        ev("file.path2", "str", _FILE, "New name for rename, link and symlink.", ""),
        f(
            "file.target",
            "str",
            _FILE_PATH,
            "The path the change lands on: path2 for rename, link and symlink, else path.",
            _target,
        ),
        f(
            "file.truncating",
            "bool",
            _FILE,
            "truncate, or open with O_TRUNC: the file's content is being thrown away.",
            _truncating,
        ),
        ev(
            "file.op",
            "str",
            _FILE,
            "open (for write), open_failed, create, unlink, rename, chmod, chown, setxattr, "
            "removexattr, truncate, link, symlink.",
        ),
        ev("file.flags", "int", _FILE, "open(2) flags (e.g. 0o100 O_CREAT)."),
        ev("file.mode", "int", _FILE, "Mode for chmod and create (e.g. 0o4755)."),
        f(
            "file.setuid",
            "bool",
            _FILE,
            "chmod/create/open with the set-user-id bit (0o4000).",
            _mode_bit(0o4000),
        ),
        f(
            "file.setgid",
            "bool",
            _FILE,
            "chmod/create/open with the set-group-id bit (0o2000).",
            _mode_bit(0o2000),
        ),
        f("file.access", "str", _FILE, "open and open_failed: read, write or rdwr.", _access),
        ev("file.owner", "int", _FILE, "chown: new owner uid (-1 unchanged).", -1),
        ev("file.group", "int", _FILE, "chown: new group gid (-1 unchanged).", -1),
        ev("file.result", "int", _FILE, "0 on success, else -errno."),
        ev("file.inode", "int", _FILE_PATH, "Inode number, when known.", 0),
        f(
            "wrote_exec.writer_pid",
            "int",
            one({"wrote_exec"}),
            "Pid of the process that wrote the executed file.",
            _ev("writer_pid", one({"wrote_exec"})),
        ),
        f(
            "wrote_exec.writer_comm",
            "str",
            one({"wrote_exec"}),
            "comm of the writer.",
            _ev("writer_comm", one({"wrote_exec"}), ""),
        ),
        f(
            "wrote_exec.delay",
            "duration",
            one({"wrote_exec"}),
            "Time from the write to the execution (e.g. `< 60s`).",
            _write_delay,
        ),
        f(
            "cred.call",
            "str",
            one({"cred"}),
            "setuid, setreuid, setresuid, setgid, setregid, setresgid, setfsuid, setfsgid, capset.",
            _ev("call", one({"cred"})),
        ),
        f(
            "cred.args",
            "list[str]",
            one({"cred"}),
            "The call's numeric arguments (-1 unchanged).",
            _cred_args,
        ),
        f(
            "cred.new_uid",
            "int",
            one({"cred"}),
            "uid calls: the effective uid asked for.",
            _cred_new_uid,
        ),
        f(
            "cred.old_uid",
            "int",
            one({"cred"}),
            "Real uid before the call.",
            _ev("old_uid", one({"cred"}), -1),
        ),
        f(
            "cred.old_euid",
            "int",
            one({"cred"}),
            "Effective uid before the call.",
            _ev("old_euid", one({"cred"}), -1),
        ),
        f(
            "prctl.option",
            "int",
            one({"prctl"}),
            "prctl option (15 = PR_SET_NAME).",
            _ev("option", one({"prctl"})),
        ),
        f(
            "prctl.name",
            "str",
            one({"prctl"}),
            "PR_SET_NAME: the new thread name.",
            _ev("name", one({"prctl"}), ""),
        ),
        *(
            f(f"kernel.{key}", type_, one({"kernel"}), doc, _ev(key, one({"kernel"}), missing))
            for key, type_, doc, missing in (
                ("call", "str", _KERNEL_CALLS, None),
                ("target_pid", "int", "ptrace and kill: the target pid.", 0),
                (
                    "request",
                    "int",
                    "ptrace request (16 ATTACH, 0x4206 SEIZE) or signal number.",
                    None,
                ),
                ("name", "str", "Module, memfd or host name, or mount target.", ""),
                ("source", "str", "mount: the source.", ""),
                ("fstype", "str", "mount: the file system type.", ""),
                ("flags", "int", "The call's flags.", None),
                ("nr", "int", "Syscall number, for calls seen only through raw_syscalls.", -1),
            )
        ),
        f(
            "alert.message",
            "str",
            one({"alert"}),
            "The journald message of another service.",
            _ev("message", one({"alert"})),
        ),
        f(
            "alert.unit",
            "str",
            one({"alert"}),
            "systemd unit that logged it.",
            _ev("unit", one({"alert"}), ""),
        ),
        f(
            "alert.priority",
            "int",
            one({"alert"}),
            "syslog priority (3 err, 4 warning).",
            _ev("priority", one({"alert"})),
        ),
        f(
            "alert.identifier",
            "str",
            one({"alert"}),
            "SYSLOG_IDENTIFIER of the message.",
            _ev("identifier", one({"alert"}), ""),
        ),
        f("exit.code", "int", one({"exit"}), "Exit status.", _ev("code", one({"exit"}))),
        f(
            "exit.signal",
            "int",
            one({"exit"}),
            "Signal that ended the process, or 0.",
            _ev("signal", one({"exit"})),
        ),
        f(
            "fork.thread",
            "bool",
            one({"fork"}),
            "True for a new thread rather than a process.",
            _ev("thread", one({"fork"})),
        ),
        f(
            "fork.clone_flags",
            "int",
            one({"fork"}),
            "clone(2) flags.",
            _ev("clone_flags", one({"fork"})),
        ),
    ]


_KERNEL_CALLS = (
    "init_module, finit_module, delete_module, kexec_load, mount, umount, ptrace, "
    "memfd_create, bpf, settimeofday, sethostname, kill, ... or syscall (an attempt seen "
    "only by number: kernel.nr)."
)


def _catalogue() -> MappingProxyType[str, Field]:
    process = _process_fields()
    fields = [*_event_fields(), *process, *_parent_fields(process), *_context_fields()]
    return MappingProxyType({fld.name: fld for fld in fields})


FIELDS: MappingProxyType[str, Field] = _catalogue()


def field_reader(fld: Field) -> Reader:
    """How to read `fld` from a subject: from the node, its parent or a context node."""
    get = fld.get
    if fld.ctx_get is not None:
        return fld.ctx_get
    if fld.of_parent:

        def read_parent(ev: Event | None, node: Node, ctx: GraphContext) -> Any:
            up = parent_process(ctx, node)
            return None if up is None else get(None, up)

        return read_parent
    if fld.hop == "session":

        def read_session(ev: Event | None, node: Node, ctx: GraphContext) -> Any:
            if node.kind == "session":
                return get(None, node)
            sess = ctx.session(node)
            return get(None, sess) if sess is not None else get(None, node)

        return read_session
    if fld.hop == "machine":

        def read_machine(ev: Event | None, node: Node, ctx: GraphContext) -> Any:
            mach = node if node.kind == "machine" else ctx.machine(node)
            return None if mach is None else get(None, mach)

        return read_machine
    return lambda ev, node, ctx: get(ev, node)


def suggest(name: str, names: list[str] | None = None) -> list[str]:
    """The nearest valid names to a misspelt one, best first."""
    return difflib.get_close_matches(
        name, names if names is not None else list(FIELDS), n=3, cutoff=0.6
    )


def kinds_text(fld: Field) -> str:
    return "all" if fld.kinds == ALL_KINDS else ", ".join(sorted(fld.kinds))


def describe() -> str:
    """The catalogue as text, for `spyderctl rules fields` and the docs."""
    rows = []
    for fld in sorted(FIELDS.values(), key=lambda f: f.name):
        kinds = "all" if fld.kinds == ALL_KINDS else ",".join(sorted(fld.kinds))
        rows.append(f"{fld.name:24} {fld.type:10} {kinds:22} {fld.doc}")
    return "\n".join(rows)


def markdown() -> str:
    """The catalogue as Markdown tables grouped by prefix (docs/rules.md is built from it)."""
    groups: dict[str, list[Field]] = {}
    for fld in FIELDS.values():
        groups.setdefault(fld.name.split(".", 1)[0], []).append(fld)
    out = []
    for prefix in sorted(groups, key=_group_order):
        out += [f"### {prefix}.*", "", "| field | type | events | meaning |", "|---|---|---|---|"]
        for fld in sorted(groups[prefix], key=lambda f: f.name):
            doc = fld.doc.replace("|", "\\|")
            out.append(f"| `{fld.name}` | {fld.type} | {kinds_text(fld)} | {doc} |")
        out.append("")
    return "\n".join(out)


_ORDER = ("process", "parent", "user", "group", "session", "container", "k8s", "machine", "evt")


def _group_order(prefix: str) -> tuple[int, str]:
    return (_ORDER.index(prefix) if prefix in _ORDER else len(_ORDER), prefix)
