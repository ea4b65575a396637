"""The bcc loader: the fallback for kernels without BTF (or `capture.loader: bcc`).

It compiles the same probe sources as the CO-RE build, after three rewrites of the text
(probes/compat.h has the dialect): libbpf's map helper calls become bcc's method calls
(bcc rewrites only those, and not inside macros), KOFF()/KFIELD_EXISTS() become numbers
(from the running kernel's BTF where it has one, else the kernel headers' offsetof), and
CFG() values arrive as -DCFG_<name> macros. All probes are compiled as one program; if it
fails, the probe at fault is found from the compiler's or loader's message (or by trying
each probe alone), reported `failed`, and the rest is compiled again.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from spyderd.capture.btf import BTF
from spyderd.capture.integrity import Attachment, BpfSys
from spyderd.capture.libbpf import Libbpf, MapView
from spyderd.capture.progstats import bpf_programs
from spyderd.capture.registry import AttachPoint, Probe

log = logging.getLogger("spyderd.capture")
TRACEFS = Path("/sys/kernel/tracing")

_KOFF = re.compile(r"(?<!define )\bKOFF\(\s*(\w+)\s*,\s*([\w.]+)\s*\)")
_KEXISTS = re.compile(r"(?<!define )\bKFIELD_EXISTS\(\s*(\w+)\s*,\s*([\w.]+)\s*\)")
_CONFIG = re.compile(r"^SPY_CONFIG\(\s*(\w+)\s*,\s*([^)]+?)\s*\)", re.MULTILINE)
_INCLUDE_COMMON = re.compile(r'^#include "common.h"[ \t]*$', re.MULTILINE)
_CALL = re.compile(r"\b(bpf_map_lookup_elem|bpf_map_delete_elem|bpf_map_update_elem|"
                   r"bpf_ringbuf_reserve|bpf_ringbuf_output|bpf_tail_call)\(")


def split_args(text: str, open_at: int) -> tuple[list[tuple[int, int]], int]:
    """(start, end) spans of the top-level arguments of the call whose '(' is at
    `open_at`, and the index of its ')'."""
    depth, start, spans = 0, open_at + 1, []
    for i in range(open_at, len(text)):
        c = text[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                spans.append((start, i))
                return spans, i
        elif c == "," and depth == 1:
            spans.append((start, i))
            start = i + 1
    raise ValueError(f"unbalanced call at offset {open_at}")


_METHODS = {  # libbpf helper -> (bcc method, arguments kept after the map)
    "bpf_map_lookup_elem": ("lookup", 1), "bpf_map_delete_elem": ("delete", 1),
    "bpf_map_update_elem": ("update", 2),  # bcc's update() is BPF_ANY
    "bpf_ringbuf_reserve": ("ringbuf_reserve", 1), "bpf_ringbuf_output": ("ringbuf_output", 3),
}


def _method(text: str, fn: str, spans: list[tuple[int, int]]) -> str:
    """bcc's spelling of one libbpf map helper call; argument text (and its line breaks)
    kept as written."""
    def arg(i: int) -> str:
        return text[spans[i][0]:spans[i][1]]

    if fn == "bpf_tail_call":  # bpf_tail_call(ctx, &m, i) -> m.call(ctx, i)
        return f"{arg(1).strip().lstrip('&')}.call({arg(0)},{arg(2)})"
    method, keep = _METHODS[fn]
    rest = text[spans[1][0]:spans[keep][1]].lstrip()
    return f"{arg(0).strip().lstrip('&')}.{method}({rest})"


def map_calls_to_bcc(text: str) -> str:
    """`bpf_map_lookup_elem(&m, k)` -> `m.lookup(k)` and the like (line count unchanged)."""
    out, pos = [], 0
    while m := _CALL.search(text, pos):
        spans, close = split_args(text, m.end() - 1)
        out.append(text[pos:m.start()])
        out.append(_method(text, m.group(1), spans))
        pos = close + 1
    out.append(text[pos:])
    return "".join(out)


def config_defaults(text: str) -> dict[str, str]:
    """SPY_CONFIG(name, default) declarations of a source text."""
    return {n: v for n, v in _CONFIG.findall(text)}


def kernel_fields(text: str) -> set[tuple[str, str]]:
    """(struct, field path) of every KOFF/KFIELD_EXISTS use."""
    return set(_KOFF.findall(text)) | set(_KEXISTS.findall(text))


def required_fields(text: str) -> set[tuple[str, str]]:
    """Fields read with KOFF outside a KFIELD_EXISTS check (approximation: those never
    tested for existence anywhere in the text)."""
    return set(_KOFF.findall(text)) - set(_KEXISTS.findall(text))


def resolve_fields(text: str, btf: BTF | None) -> str:
    """KOFF -> byte offset, KFIELD_EXISTS -> 0/1 (BTF), or header offsetof without BTF."""
    def off(m: re.Match) -> str:
        if btf is None:
            return f"offsetof(struct {m.group(1)}, {m.group(2)})"
        try:
            return str(btf.offsetof(m.group(1), m.group(2)))
        except (KeyError, ValueError):
            return "0"

    def exists(m: re.Match) -> str:
        if btf is None:
            return "0"  # without BTF optional fields are treated as absent
        try:
            btf.offsetof(m.group(1), m.group(2))
            return "1"
        except (KeyError, ValueError):
            return "0"

    return _KEXISTS.sub(exists, _KOFF.sub(off, text))


def missing_fields(text: str, btf: BTF | None) -> list[str]:
    """Required kernel fields this kernel's BTF does not have (empty without BTF)."""
    if btf is None:
        return []
    out = []
    for struct_name, path in sorted(required_fields(text)):
        try:
            btf.offsetof(struct_name, path)
        except (KeyError, ValueError) as exc:
            out.append(str(exc.args[0]) if exc.args else f"{struct_name}.{path}")
    return out


def hook_of(fn: str) -> tuple[str, str] | None:
    """(kind, hook) of a program from its bcc function name (probes/compat.h names them):
    sc__<event> -> syscalls:<event>, raw_tp__<event>[__<name>] -> raw tracepoint <event>."""
    if fn.startswith("sc__"):
        return "tracepoint", "syscalls:" + fn.removeprefix("sc__")
    if fn.startswith("raw_tp__"):
        return "raw_tracepoint", fn.removeprefix("raw_tp__").split("__")[0]
    return None


@dataclass(slots=True)
class LoadError:
    """bcc's exception text and what the compiler/verifier printed on stderr."""

    text: str
    detail: str

    def reason(self) -> str:
        """The most telling line: the first compiler error, else the exception."""
        m = _CLANG_ERR.search(self.detail)
        if m:
            return f"{self.text}: {m.group(2).strip()}"
        return self.text


_CLANG_ERR = re.compile(r"^/virtual/main\.c:(\d+):\d+: error: (.*)$", re.MULTILINE)
_PROG = re.compile(r"Failed to (?:load|attach) BPF program b?'?([A-Za-z0-9_]+)")


def blame(err: LoadError, chosen: list[Probe], texts: dict[str, str],
          head_lines: int = 0) -> Probe | None:
    """Which probe's source a failure points at: the line of the first compiler error in
    the combined text, or the probe whose source defines the program that failed to load."""
    m = _CLANG_ERR.search(err.detail)
    if m:
        line = int(m.group(1))
        for p, (first, last) in zip(chosen, source_spans(chosen, texts, head_lines),
                                    strict=True):
            if first <= line <= last:
                return p
        return None
    m = _PROG.search(err.text)
    if m:
        fn = m.group(1)
        event = fn.split("__")[-1]
        owners = [p for p in chosen if event in texts[p.name] or fn in texts[p.name]]
        if len(owners) == 1:
            return owners[0]
    return None


def source_spans(chosen: list[Probe], texts: dict[str, str],
                 head_lines: int = 0) -> list[tuple[int, int]]:
    """1-based (first, last) line of each probe's text in `combined()`'s output."""
    line = head_lines + 1
    out = []
    for p in chosen:
        n = texts[p.name].count("\n") + 1
        line += 1  # the "/* ---- x ---- */" marker
        out.append((line + 1, line + n))
        line += n
    return out


def combined(common: str, chosen: list[Probe], texts: dict[str, str]) -> str:
    """common.h, then each probe's source (its own #include "common.h" removed)."""
    text = common
    for p in chosen:
        text += f"\n/* ---- {p.source} ---- */\n" + _INCLUDE_COMMON.sub("", texts[p.name])
    return text


class StderrCapture:
    """Collects what bcc, clang, libbpf and the verifier write to fd 2 (logged on failure)."""

    def __enter__(self) -> Self:
        self._tmp = tempfile.TemporaryFile()
        sys.stderr.flush()
        self._saved = os.dup(2)
        os.dup2(self._tmp.fileno(), 2)
        self.text = ""
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode("utf-8", "replace")
        self._tmp.close()


def tracepoint_field(cat_event: str, field: str) -> bool:
    fmt = TRACEFS / "events" / cat_event.replace(":", "/") / "format"
    return fmt.exists() and f" {field};" in fmt.read_text()


class BccLoader:
    """Compiles the chosen probes with bcc into one program and attaches their hooks."""

    name = "bcc"

    def __init__(self, source_dir: Path, btf: BTF | None, *, ring_pages: int,
                 max_args: int, arg_bytes: int) -> None:
        self.source_dir = source_dir
        self.btf = btf
        self.ring_pages = ring_pages
        self.max_args = max_args
        self.arg_bytes = arg_bytes
        self.bpf: Any = None
        self._lib = Libbpf()

    def check(self, probe: Probe, text: str) -> str:
        """Why this probe cannot be compiled here ("" if it can)."""
        absent = missing_fields(text, self.btf)
        return "missing kernel fields: " + "; ".join(absent) if absent else ""

    def cflags(self, values: dict[str, int], texts: list[str]) -> list[str]:
        defaults: dict[str, str] = {}
        for t in texts:
            defaults.update(config_defaults(t))
        merged = {**defaults, **{k: str(v) for k, v in values.items()}}
        flags = [f"-DCFG_{k}=({v})" for k, v in sorted(merged.items())]
        flags += [f"-DRINGBUF_PAGES={self.ring_pages}", f"-DMAX_ARGS={self.max_args}",
                  f"-DARGBUF={self.arg_bytes}", "-DSPYDER_BCC=1",
                  f"-I{self.source_dir}", "-Wno-macro-redefined"]
        if tracepoint_field("sched:sched_process_exit", "group_dead"):
            flags.append("-DHAVE_GROUP_DEAD=1")
        return flags

    def text(self, chosen: list[Probe], texts: dict[str, str]) -> str:
        common = (self.source_dir / "common.h").read_text()
        raw = combined(common, chosen, texts)
        return resolve_fields(map_calls_to_bcc(raw), self.btf)

    def try_load(self, chosen: list[Probe], texts: dict[str, str],
                 values: dict[str, int]) -> LoadError | None:
        from bcc import BPF  # heavy (libclang, LLVM): imported only when bcc is the loader

        cflags = self.cflags(values, [(self.source_dir / "common.h").read_text(),
                                      *texts.values()])
        with StderrCapture() as cap:
            try:
                self.bpf = BPF(text=self.text(chosen, texts), cflags=cflags)
                return None
            except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception
                self.bpf = None
                failure = exc
        return LoadError(str(failure), cap.text)

    def head_lines(self) -> int:
        return (self.source_dir / "common.h").read_text().count("\n")

    def functions(self) -> list[str]:
        """Every function of the compiled program (bcc's module table)."""
        from bcc import lib

        n = lib.bpf_num_functions(self.bpf.module)
        return [lib.bpf_function_name(self.bpf.module, i).decode() for i in range(n)]

    def attach(self, hooks: list[AttachPoint]) -> dict[str, str]:
        """Attach every program whose hook is in `hooks` (tracepoints other than syscalls
        were attached by bcc when it loaded). Returns hook -> error for failures."""
        from bcc import BPF, lib

        want = {a.name.partition(":")[2] if a.type == "raw_tracepoint" else a.name
                for a in hooks}
        errors: dict[str, str] = {}
        for fn in self.functions():
            kind_hook = hook_of(fn)
            if kind_hook is None or kind_hook[1] not in want:
                continue
            kind, hook = kind_hook
            try:
                if kind == "tracepoint":
                    self.bpf.attach_tracepoint(tp=hook, fn_name=fn)
                    continue
                prog = self.bpf.load_func(fn, BPF.RAW_TRACEPOINT)
                fd = lib.bpf_attach_raw_tracepoint(prog.fd, hook.encode())
                if fd < 0:
                    raise OSError(f"cannot attach {fn} to raw tracepoint {hook}")
                self.bpf.raw_tracepoint_fds[f"{hook}#{fn}".encode()] = fd
            except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception
                errors[hook] = f"{fn}: {exc}"
        return errors

    def attachments(self, sys: BpfSys) -> list[Attachment]:
        """bcc's attachments for the integrity check: tracepoints are perf events running
        a program (no link), raw tracepoints are links."""
        ours = {sys.info(fd)[1]: name for name, fd in self.programs().items()
                if sys.info(fd) is not None}
        out = []
        for tp, fd in getattr(self.bpf, "tracepoint_fds", {}).items():
            hook = tp.decode() if isinstance(tp, bytes) else str(tp)
            ids = [i for i in sys.perf_programs(fd) or [] if i in ours]
            if ids:
                out.append(Attachment(probe="", program=ours[ids[0]], hook=hook, kind="perf",
                                      fd=fd, prog_id=ids[0]))
        for key, fd in getattr(self.bpf, "raw_tracepoint_fds", {}).items():
            hook = (key.decode() if isinstance(key, bytes) else str(key)).partition("#")[0]
            info = sys.info(fd)
            if info is not None:
                out.append(Attachment(probe="", program=ours.get(info[2], "?"), hook=hook,
                                      kind="link", fd=fd, link_id=info[1], prog_id=info[2]))
        return out

    def map(self, name: str) -> MapView:
        table = self.bpf.get_table(name)
        return MapView(self._lib, table.map_fd, ctypes_size(table.Key),
                       ctypes_size(table.Leaf), getattr(table, "max_entries", 0))

    def prog_fd(self, name: str) -> int:
        from bcc import BPF

        return self.bpf.load_func(name, BPF.TRACEPOINT).fd

    def programs(self) -> dict[str, int]:
        return bpf_programs(self.bpf)

    def ring(self) -> tuple[int, int]:
        """fd and data size of the `events` ring buffer."""
        table = self.bpf["events"]
        return table.map_fd, self.ring_pages * 4096

    def close(self) -> None:
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None


def ctypes_size(t: Any) -> int:
    import ctypes

    return ctypes.sizeof(t)
