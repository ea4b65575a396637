"""Falco's names and spyderd's: fields, event types and priorities, side by side.

The table feeds "did you mean" by meaning, not spelling: `fd.name` is nothing like
`file.path`, but a Falco user who writes it means it. It is also published as
docs/falco-users.md (`python -m spyderd.rules.docs` writes both pages). Each entry gives the
spyderd way to say the same thing, which is a field, an expression or a rule key.
"""

from __future__ import annotations

import difflib
import re

from spyderd.rules.fields.base import Field

# Falco field -> (spyderd equivalent, note). The equivalent is a field name when it is one.
FALCO_FIELDS: dict[str, tuple[str, str]] = {
    "proc.name": ("process.name", ""),
    "proc.exe": ("process.exe", "Falco's proc.exe is argv[0]; process.args has it as element 0"),
    "proc.exepath": ("process.exe", ""),
    "proc.cmdline": ("process.cmdline", "the whole argument vector joined by spaces"),
    "proc.args": ("process.cmdline", "or process.args, the list (contains/has test one element)"),
    "proc.pid": ("process.pid", ""),
    "proc.ppid": ("process.ppid", ""),
    "proc.pname": ("parent.name", ""),
    "proc.pexe": ("parent.exe", ""),
    "proc.pexepath": ("parent.exe", ""),
    "proc.pcmdline": ("parent.cmdline", ""),
    "proc.aname": ("ancestor(process.name = X)", "any ancestor; add depth=N for proc.aname[N]"),
    "proc.apid": ("ancestor(process.pid = X)", "add depth=N for proc.apid[N]"),
    "proc.cwd": ("process.cwd", ""),
    "proc.tty": ("process.tty", "missing when there is no terminal (Falco: 0)"),
    "proc.sid": ("process.session_id", "spyderd's session is the login session node"),
    "proc.loginshellid": ("session(...)", "the login session; session.* fields inside"),
    "proc.is_exe_from_memfd": ("process.memfd", ""),
    "proc.exe_ino": ("file.inode", "on wrote_exec events"),
    "proc.vpid": ("process.pid", "spyderd reports host pids"),
    "proc.is_container_healthcheck": ("process.cmdline", "no equivalent; match the command"),
    "user.name": ("user.name", ""),
    "user.uid": ("user.uid", ""),
    "user.loginuid": ("user.loginuid", "or process.loginuid"),
    "user.loginname": ("session.user", ""),
    "group.gid": ("process.gid", ""),
    "group.name": ("group.name", ""),
    "evt.type": ("evt.kind", "better: the rule's event: key (execve is exec, connect is connect)"),
    "evt.time": ("evt.time", ""),
    "evt.res": ("evt.result", "a number: 0 or more on success, else -errno"),
    "evt.rawres": ("evt.result", ""),
    "evt.failed": ("evt.result < 0", ""),
    "evt.dir": ("", "spyderd has no enter/exit events: each event is one finished call"),
    "evt.is_open_write": ("file.access in (write, rdwr)", ""),
    "evt.is_open_read": ("file.access = read", ""),
    "evt.arg.flags": ("file.flags", "or kernel.flags; test bits with &"),
    "evt.arg.mode": ("file.mode", ""),
    "evt.arg.request": ("kernel.request", "compare with PTRACE_ATTACH, ..."),
    "evt.arg.target": ("file.link_to", "symlink: what the new link points to"),
    "evt.arg.linkpath": ("file.link_path", "symlink: the new link's own path"),
    "evt.arg.name": ("kernel.name", ""),
    "evt.arg.uid": ("cred.new_uid", ""),
    "evt.arg.sig": ("kernel.request", "kill: the signal; compare with SIGKILL, ..."),
    "fd.name": ("file.path", "for sockets: connection.remote_ip and connection.remote_port"),
    "fd.nameraw": ("file.path", ""),
    "fd.directory": ("file.directory", ""),
    "fd.filename": ("file.name", ""),
    "fd.sip": ("connection.remote_ip", "outbound; on accept events connection.local_ip"),
    "fd.cip": ("connection.local_ip", "outbound; on accept events connection.remote_ip"),
    "fd.rip": ("connection.remote_ip", ""),
    "fd.lip": ("connection.local_ip", ""),
    "fd.sport": ("connection.remote_port", "outbound; on accept events connection.local_port"),
    "fd.cport": ("connection.local_port", ""),
    "fd.rport": ("connection.remote_port", ""),
    "fd.lport": ("connection.local_port", ""),
    "fd.l4proto": ("connection.protocol", ""),
    "fd.sockfamily": ("connection.family", "4 or 6"),
    "fd.net": ("connection.remote_ip in (CIDR)", "in (...) takes networks"),
    "fd.snet": ("connection.remote_ip in (CIDR)", ""),
    "fd.rnet": ("connection.remote_ip in (CIDR)", ""),
    "fd.type": ("evt.kind", "file events are kind file, sockets connect/accept/..."),
    "fd.typechar": ("evt.kind", ""),
    "container.id": ("container.id", "missing on the host (Falco: 'host')"),
    "container.name": ("container.name", ""),
    "container.image": ("container.image", ""),
    "container.image.repository": ("container.image", "the full reference: use startswith"),
    "container.image.tag": ("container.image", "the full reference: use endswith ':TAG'"),
    "container.type": ("container.runtime", ""),
    "container.privileged": ("", "not captured"),
    "k8s.ns.name": ("k8s.namespace", ""),
    "k8s.pod.name": ("k8s.pod", ""),
    "k8s.pod.uid": ("k8s.pod_uid", ""),
    "k8s.container.name": ("k8s.container", ""),
}

# Falco event type (syscall) -> (spyderd event kind, the condition that narrows it)
FALCO_EVENTS: dict[str, tuple[str, str]] = {
    "execve": ("exec", ""),
    "execveat": ("exec", ""),
    "clone": ("fork", ""),
    "clone3": ("fork", ""),
    "fork": ("fork", ""),
    "vfork": ("fork", ""),
    "procexit": ("exit", ""),
    "connect": ("connect", ""),
    "accept": ("accept", ""),
    "accept4": ("accept", ""),
    "listen": ("listen", ""),
    "bind": ("bind", ""),
    "sendto": ("udp", "connection.call = sendto"),
    "sendmsg": ("udp", "connection.call = sendmsg"),
    "open": ("file", "file.op = open"),
    "openat": ("file", "file.op = open"),
    "openat2": ("file", "file.op = open"),
    "creat": ("file", "file.op = create"),
    "unlink": ("file", "file.op = unlink"),
    "unlinkat": ("file", "file.op = unlink"),
    "rename": ("file", "file.op = rename"),
    "renameat": ("file", "file.op = rename"),
    "renameat2": ("file", "file.op = rename"),
    "chmod": ("file", "file.op = chmod"),
    "fchmod": ("file", "file.op = chmod"),
    "fchmodat": ("file", "file.op = chmod"),
    "chown": ("file", "file.op = chown"),
    "fchown": ("file", "file.op = chown"),
    "fchownat": ("file", "file.op = chown"),
    "symlink": ("file", "file.op = symlink"),
    "symlinkat": ("file", "file.op = symlink"),
    "link": ("file", "file.op = link"),
    "linkat": ("file", "file.op = link"),
    "truncate": ("file", "file.op = truncate"),
    "ftruncate": ("file", "file.op = truncate"),
    "setxattr": ("file", "file.op = setxattr"),
    "ptrace": ("kernel", "kernel.call = ptrace"),
    "init_module": ("kernel", "kernel.call = init_module"),
    "finit_module": ("kernel", "kernel.call = finit_module"),
    "delete_module": ("kernel", "kernel.call = delete_module"),
    "mount": ("kernel", "kernel.call = mount"),
    "umount": ("kernel", "kernel.call = umount"),
    "umount2": ("kernel", "kernel.call = umount"),
    "memfd_create": ("kernel", "kernel.call = memfd_create"),
    "bpf": ("kernel", "kernel.call = bpf"),
    "kill": ("kernel", "kernel.call = kill"),
    "tgkill": ("kernel", "kernel.call = tgkill"),
    "sethostname": ("kernel", "kernel.call = sethostname"),
    "setuid": ("cred", "cred.call = setuid"),
    "setresuid": ("cred", "cred.call = setresuid"),
    "setreuid": ("cred", "cred.call = setreuid"),
    "setgid": ("cred", "cred.call = setgid"),
    "capset": ("cred", "cred.call = capset"),
    "setsid": ("setsid", ""),
    "prctl": ("prctl", ""),
}

# Falco priority -> spyderd severity
FALCO_PRIORITIES: dict[str, str] = {
    "emergency": "critical",
    "alert": "critical",
    "critical": "critical",
    "error": "high",
    "warning": "medium",
    "notice": "low",
    "informational": "info",
    "info": "info",
    "debug": "info",
}

# Falco rule keys -> spyderd keys
FALCO_KEYS: dict[str, str] = {
    "priority": "severity",
    "desc": "description",
    "source": "event",
    "required_engine_version": "",
    "required_plugin_versions": "",
}

_INDEXED = re.compile(r"([a-z][\w.]*)\[(\w+)\]")


def falco_hint(name: str) -> str:
    """ "Falco's X is ..." for a Falco field name (`proc.aname[2]` included), else ""."""
    indexed = _INDEXED.fullmatch(name)
    base, index = (indexed.group(1), indexed.group(2)) if indexed else (name, "")
    entry = FALCO_FIELDS.get(base)
    if entry is None:
        return ""
    equivalent, note = entry
    if not equivalent:
        return f"this is Falco's {base}: {note}"
    if index and equivalent.startswith("ancestor("):
        equivalent = equivalent[:-1] + f", depth={index})"
    text = f"this is Falco's {name}: write {equivalent}"
    return text + (f" ({note})" if note and not index else "")


def falco_template_name(name: str) -> str | None:
    """The spyderd name an output template can use for a Falco field, if there is one."""
    entry = FALCO_FIELDS.get(name)
    if entry is None or " " in entry[0] or "(" in entry[0] or not entry[0]:
        return None
    return entry[0]


def event_hint(value: str) -> str:
    """ "; Falco's execve is the exec kind" for a Falco event type, else ""."""
    entry = FALCO_EVENTS.get(value)
    if entry is None:
        return ""
    kind, narrow = entry
    return f"; Falco's {value} is spyderd's {kind} kind" + (f" with {narrow}" if narrow else "")


def choice_hint(fld: Field, raw: str) -> str:
    """The nearest values an enumerated field takes, by meaning first, then by spelling."""
    if fld.name == "evt.kind" and raw in FALCO_EVENTS:
        return event_hint(raw)
    if fld.name in ("kernel.call", "cred.call", "file.op") and raw in FALCO_EVENTS:
        _, narrow = FALCO_EVENTS[raw]
        if narrow.startswith(fld.name):
            return f"; Falco's {raw} is {narrow}"
    near = difflib.get_close_matches(raw, sorted(fld.choices), n=2, cutoff=0.6)
    if near:
        return "; did you mean " + " or ".join(repr(n) for n in near) + "?"
    return "; it is one of " + ", ".join(sorted(fld.choices))


def markdown() -> str:
    """The tables of docs/falco-users.md."""
    out = ["| Falco field | spyderd | note |", "|---|---|---|"]
    for name, (equivalent, note) in FALCO_FIELDS.items():
        shown = f"`{equivalent}`" if equivalent else "—"
        out.append(f"| `{name}` | {shown} | {note} |")
    out += ["", "| Falco `evt.type` | spyderd `event:` | narrowed by |", "|---|---|---|"]
    for name, (kind, narrow) in FALCO_EVENTS.items():
        out.append(f"| `{name}` | `{kind}` | {f'`{narrow}`' if narrow else ''} |")
    out += ["", "| Falco `priority:` | spyderd `severity:` |", "|---|---|"]
    for name, severity in FALCO_PRIORITIES.items():
        out.append(f"| `{name.upper()}` | `{severity}` |")
    return "\n".join(out) + "\n"
