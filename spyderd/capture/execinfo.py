"""What an exec record says beyond argv: watched environment variables, fds 0/1/2, the
script an interpreter runs, effective capabilities (probes/process.bpf.c, issue 11).

Decisions:
- The kernel keeps only environment entries whose first bytes match a configured name
  (`capture.env_vars`); this module keeps exactly those names (a longer name sharing
  the first seven bytes, e.g. HISTFILESIZE for HISTFILE, is kept only if configured).
- fds 0-2 are typed from the inode: tty (pts, console, virtual terminals), null
  (/dev/null), chardev, file, fifo (a named pipe), pipe (anonymous), socket, dir, other
  (anonymous inodes: eventfd, epoll ...) and closed.
- The script is derived from argv and cwd for interpreters run by name (`bash x.sh`,
  `python3 -u x.py`), and is the exec'd path itself for `#!` scripts the kernel ran.
  Code given inline (`-c`, `-e`), modules (`python -m`) and stdin have no script.
- The files probe finds the same operand in the kernel (`kernel_interpreters` gives it the
  option letters) to check the script's writer when the interpreter opens it: getopt's
  short options only; a long option is taken as valueless (`bash --rcfile F x.sh` is not
  linked), `busybox sh x.sh` is not linked (`sh` as a link to busybox is).
"""

from __future__ import annotations

import os
import posixpath
import re
import struct
from typing import Any

from spyderd.capture.records import ip_text

DEFAULT_ENV_VARS = ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "HISTFILE", "HISTSIZE",
                    "HISTFILESIZE", "HISTCONTROL", "PROMPT_COMMAND"]
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

STDIO = struct.Struct("<IIQIHHHHHH16s16s256s")
STDIO_NAMES = ("stdin", "stdout", "stderr")
S_IFMT, S_IFSOCK, S_IFLNK, S_IFREG, S_IFBLK, S_IFDIR, S_IFCHR, S_IFIFO = (
    0o170000, 0o140000, 0o120000, 0o100000, 0o60000, 0o40000, 0o20000, 0o10000)
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 1, 2, 10, 16, 17
SOCK_TYPES = {1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket", 10: "packet"}
IPPROTO = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "sctp", 255: "raw"}



def env_name_problem(item: Any) -> str | None:
    """The config loader's check of one capture.env_vars item."""
    if not isinstance(item, str) or not ENV_NAME.match(item):
        return f"items must be environment variable names, got {item!r}"
    return None


def env_keys(names: list[str]) -> tuple[dict[bytes, int], int]:
    """The kernel's env_watch keys and the ENV_SHORT mask (probes/process.bpf.c env_hit).

    A name of 7 bytes or more is keyed by its first 7 bytes; a shorter one by "NAME=" under
    a mask of that length (bit len+1 of the mask)."""
    keys: dict[bytes, int] = {}
    short = 0
    for name in names:
        raw = name.encode()
        if len(raw) >= 7:
            keys[raw[:7].ljust(8, b"\0")] = 1
        else:
            keys[(raw + b"=").ljust(8, b"\0")] = 1
            short |= 1 << (len(raw) + 1)
    return keys, short


def decode_env(raw: bytes, wanted: frozenset[str]) -> dict[str, str]:
    """NAME=value entries the kernel kept, limited to the configured names."""
    out: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        name, eq, value = entry.partition(b"=")
        if not eq:
            continue
        text = name.decode("utf-8", "backslashreplace")
        if text in wanted and text not in out:
            out[text] = value.decode("utf-8", "backslashreplace")
    return out


def _path(raw: bytes, length: int) -> str:
    parts = [p.decode("utf-8", "backslashreplace") for p in raw[:length].split(b"\0") if p]
    return "/" + "/".join(reversed(parts)) if parts else ""


def _tty(major: int, minor: int) -> bool:
    return major == 4 or 136 <= major <= 143 or (major == 5 and minor in (0, 1))


def fd_type(mode: int, rdev: int, path: str) -> str:
    """tty, null, chardev, file, fifo, pipe, socket, dir, other or closed."""
    if not mode:
        return "closed"
    kind = mode & S_IFMT
    if kind == S_IFCHR:
        major, minor = rdev >> 20, rdev & 0xFFFFF
        if (major, minor) == (1, 3):
            return "null"
        return "tty" if _tty(major, minor) else "chardev"
    if kind == S_IFIFO:
        return "fifo" if path else "pipe"
    return {S_IFREG: "file", S_IFSOCK: "socket", S_IFDIR: "dir"}.get(kind, "other")


def _protocol(family: int, sotype: int, protocol: int) -> str:
    if family == AF_UNIX:
        return "unix"
    if family == AF_PACKET:
        return "packet"
    if family == AF_NETLINK:
        return "netlink"
    if sotype == 3:
        return "raw"
    return IPPROTO.get(protocol) or ("tcp" if sotype == 1 else "udp" if sotype == 2 else
                                     str(protocol))


def decode_stdio(buf: bytes, offset: int) -> tuple[dict[str, Any], ...]:
    """The three stdio records at `offset` as dicts (only the keys their type has)."""
    out = []
    for i in range(3):
        (mode, rdev, ino, _dev, family, sotype, protocol, lport, rport, path_len, laddr,
         raddr, path) = STDIO.unpack_from(buf, offset + i * STDIO.size)
        text = _path(path, min(path_len, len(path)))
        kind = fd_type(mode, rdev, text)
        fd: dict[str, Any] = {"type": kind}
        if text:
            fd["path"] = text
        if kind in ("pipe", "fifo"):
            fd["pipe"] = ino
        elif kind == "socket":
            fd["protocol"] = _protocol(family, sotype, protocol)
            fd["inode"] = ino
            if family in (AF_INET, AF_INET6):
                fd.update(local_ip=ip_text(family, laddr), local_port=lport,
                          remote_ip=ip_text(family, raddr), remote_port=rport)
        out.append(fd)
    return tuple(out)


# -- scripts ---------------------------------------------------------------------------------

_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "csh", "tcsh", "fish",
                     "rbash", "busybox"})
# Per interpreter family: options that take the code inline (no script follows), options
# that take a separate value, and whether options may follow the script name.
_FAMILIES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "shell": (frozenset({"-c"}), frozenset({"-o", "+o", "-O", "+O", "--rcfile",
                                             "--init-file"})),
    "python": (frozenset({"-c", "-m"}), frozenset({"-W", "-X", "--check-hash-based-pycs"})),
    "perl": (frozenset({"-e", "-E"}), frozenset({"-I", "-M", "-m"})),
    "ruby": (frozenset({"-e"}), frozenset({"-I", "-r", "-C", "-E"})),
    "node": (frozenset({"-e", "--eval", "-p", "--print"}),
             frozenset({"-r", "--require", "--import", "--loader"})),
    "php": (frozenset({"-r"}), frozenset({"-c", "-d", "-z"})),
    "lua": (frozenset({"-e"}), frozenset({"-l"})),
    "awk": (frozenset(), frozenset({"-v", "-F"})),
}
_NAME_FAMILY = re.compile(
    r"^(?:(?P<python>python[0-9.]*|pypy[0-9.]*)|(?P<perl>perl[0-9.]*)|(?P<ruby>ruby[0-9.]*)"
    r"|(?P<node>node|nodejs|bun|deno)|(?P<php>php[0-9.]*(?:-cli)?)|(?P<lua>lua[0-9.]*|luajit)"
    r"|(?P<awk>awk|gawk|mawk|nawk)|(?P<tcl>tclsh[0-9.]*|wish[0-9.]*)|(?P<r>Rscript))$")


def interpreter_family(exe: str) -> str | None:
    """'shell', 'python', 'perl', ... for an interpreter's executable, else None."""
    name = exe.rsplit("/", 1)[-1]
    if name in _SHELLS:
        return "shell"
    m = _NAME_FAMILY.match(name)
    if m is None:
        return None
    fam = m.lastgroup or ""
    return fam if fam in _FAMILIES else "plain"


def script_arg(family: str, args: list[str]) -> str | None:
    """The script operand of an interpreter's argv, or None (inline code, module, stdin)."""
    inline, valued = _FAMILIES.get(family, (frozenset(), frozenset()))
    rest = args[1:]
    if family == "shell" and args and args[0].rsplit("/", 1)[-1] == "busybox":
        if not rest or rest[0] not in _SHELLS:
            return None
        rest = rest[1:]
    i = 0
    while i < len(rest):
        a = rest[i]
        if a == "--":
            return rest[i + 1] if i + 1 < len(rest) else None
        if a == "-" or not a.startswith(("-", "+") if family == "shell" else "-"):
            break
        if family == "awk" and a == "-f":
            return rest[i + 1] if i + 1 < len(rest) else None
        if family == "awk" and a.startswith("-f") and len(a) > 2:
            return a[2:]
        if a in inline or (family == "shell" and a[:1] == "-" and a[1:2] != "-"
                           and ("c" in a or "s" in a)):
            return None  # inline code (-c, -xc) or commands from stdin (-s)
        if family in ("python", "perl", "ruby", "php") and a[:2] in inline and len(a) > 2:
            return None  # -c'code', -e'code' glued
        i += 2 if a in valued else 1
    if i >= len(rest) or rest[i] == "-" or family == "awk":
        return None
    return rest[i]


def script_path(filename: str, interpreter: str, args: list[str], cwd: str) -> str:
    """The script this image runs ("" for none), absolute where cwd allows it."""
    if interpreter:  # the kernel ran a #! script: filename is the script
        script = filename
    else:
        family = interpreter_family(filename)
        script = (script_arg(family, args) if family else None) or ""
    if script and not script.startswith("/") and cwd and not cwd.startswith("..."):
        script = posixpath.normpath(posixpath.join(cwd, script))
    return script


# -- the same rules for the kernel (probes/files.bpf.c `interpreters`) -------------------------

IF_PLUS, IF_NOPLAIN = 1, 2
INTERP_OPTS = struct.Struct("<QQQII")
# Interpreters looked for by name whatever is installed, and where installed ones are found.
_KNOWN_NAMES = ("python", "python2", "python3", "pypy", "pypy3", "perl", "ruby", "node",
                "nodejs", "bun", "deno", "php", "lua", "luajit", "awk", "gawk", "mawk", "nawk",
                "tclsh", "wish", "Rscript")
BIN_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def _letters(options: frozenset[str] | set[str]) -> int:
    """Bit mask of the single-letter options (a-z: bits 0-25, A-Z: 26-51)."""
    mask = 0
    for opt in options:
        if len(opt) == 2 and opt[0] in "-+" and opt[1].isascii() and opt[1].isalpha():
            c = opt[1]
            mask |= 1 << (ord(c) - ord("a") if c.islower() else 26 + ord(c) - ord("A"))
    return mask


def interpreter_options(family: str) -> bytes:
    """`struct interp_opts` for one family: inline, valued and script option letters."""
    inline, valued = _FAMILIES.get(family, (frozenset(), frozenset()))
    flags, script = 0, set()
    if family == "shell":
        inline, flags = inline | {"-s"}, IF_PLUS  # -s: commands from stdin
    if family == "awk":
        script, flags = {"-f"}, IF_NOPLAIN
    return INTERP_OPTS.pack(_letters(inline), _letters(valued), _letters(script), flags, 0)


def kernel_interpreters(dirs: tuple[str, ...] = BIN_DIRS) -> dict[bytes, bytes]:
    """{comm key: interp_opts} for the known interpreter names and those installed in
    `dirs` (python3.11, perl5.36 ...): an exec gets its file name, cut to 15 bytes, as comm."""
    names = set(_SHELLS - {"busybox"}) | set(_KNOWN_NAMES)
    for d in dirs:
        try:
            names.update(n for n in os.listdir(d) if interpreter_family(n))
        except OSError:
            continue
    out: dict[bytes, bytes] = {}
    for name in sorted(names):
        family = interpreter_family(name)
        if family and name != "busybox":
            out[name.encode()[:15].ljust(16, b"\0")] = interpreter_options(family)
    return out
