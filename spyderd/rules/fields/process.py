"""process.* and parent.* fields: the subject's process image and its parent process.

`process.*` read the image's node (graph and enrichment attributes); a few exec facts (cwd,
interpreter, euid, loginuid) fall back to the exec event while the graph has not copied them
to the node. `parent.*` read the same from the parent *process*: the image that forked the
subject's process, past the process's own execs (like `ps` and Falco's `proc.pname`). The
`parent(...)` operator instead tests the image the subject came from.

`process.args` is a list: `contains`/`has` test whole elements (one argument), while
`process.cmdline contains` tests a substring of the joined command line.
"""

from __future__ import annotations

from spyderd.model.events import Event, ExecEvent
from spyderd.model.nodes import Node
from spyderd.rules.context import GraphContext
from spyderd.rules.fields.base import (
    ALL_KINDS,
    Field,
    Getter,
    attr,
    bool_attr,
    exec_attr,
    id_attr,
    node_field,
)

# Initial namespaces have fixed inode numbers (include/linux/proc_ns.h): a process in them
# shares the host's namespace.
HOST_NS = {"pidns": 0xEFFFFFFC, "userns": 0xEFFFFFFD, "utsns": 0xEFFFFFFE}


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


def tty(ev: Event | None, node: Node) -> str | None:
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


def process_fields() -> list[Field]:
    f = node_field
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
        f("process.cwd", "str", "Working directory at exec.", exec_attr("cwd")),
        f(
            "process.interpreter",
            "str",
            "For a script: the interpreter the kernel ran for its #! line.",
            exec_attr("interpreter"),
        ),
        f("process.pid", "int", "Process id.", lambda ev, node: node.pid),
        f("process.ppid", "int", "Parent process id.", lambda ev, node: node.ppid),
        f("process.uid", "int", "Real user id the image runs as.", lambda ev, node: node.uid),
        f("process.gid", "int", "Real group id, when known.", id_attr("gid")),
        f(
            "process.euid",
            "int",
            "Effective uid after exec (differs from uid for setuid programs).",
            exec_attr("euid", -1),
        ),
        f(
            "process.loginuid",
            "int",
            "Audit login uid: the user who logged in, kept across su and sudo.",
            exec_attr("loginuid", -1),
        ),
        f(
            "process.sessionid",
            "int",
            "Audit session id of the login.",
            exec_attr("sessionid", -1),
        ),
        f("process.tty", "str", "Controlling terminal (e.g. pts/0); missing when none.", tty),
        f(
            "process.interactive",
            "bool",
            "True when the image runs in an interactive session (a terminal).",
            bool_attr("interactive"),
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
            attr("container_id"),
        ),
        f(
            "process.session_id",
            "str",
            "Graph id of the image's session node.",
            attr("session_id"),
        ),
        *(
            f(f"process.{ns}", "int", f"Inode of the image's {ns[:-2]} namespace.", attr(ns))
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


def parent_fields(process: list[Field]) -> list[Field]:
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
