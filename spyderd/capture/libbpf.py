"""A small ctypes binding to libbpf (Debian's libbpf1): open, configure, load and attach
the probes' CO-RE objects, and read or write maps by file descriptor.

Only the calls spyderd needs are bound. libbpf >= 1.0 returns NULL or a negative errno
and sets errno on failure; both are turned into `LibbpfError`. What libbpf prints (the
verifier log on a failed load) goes to stderr, where the loader collects it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

BTF_KIND_STRUCT = 4
BTF_KIND_DATASEC = 15
BPF_ANY = 0
_c = ctypes
_P = ctypes.c_void_p


class LibbpfError(OSError):
    """A libbpf call failed; `errno` is set from libbpf's return value."""


class _BtfType(ctypes.Structure):
    _fields_ = [("name_off", _c.c_uint32), ("info", _c.c_uint32), ("size", _c.c_uint32)]


class _Member(ctypes.Structure):
    _fields_ = [("name_off", _c.c_uint32), ("type", _c.c_uint32), ("offset", _c.c_uint32)]


class _VarSecinfo(ctypes.Structure):
    _fields_ = [("type", _c.c_uint32), ("offset", _c.c_uint32), ("size", _c.c_uint32)]


_PROTOS: dict[str, tuple[object, list[object]]] = {
    "bpf_object__open": (_P, [_c.c_char_p]),
    "bpf_object__load": (_c.c_int, [_P]),
    "bpf_object__close": (None, [_P]),
    "bpf_object__next_program": (_P, [_P, _P]),
    "bpf_object__next_map": (_P, [_P, _P]),
    "bpf_object__btf": (_P, [_P]),
    "bpf_program__name": (_c.c_char_p, [_P]),
    "bpf_program__section_name": (_c.c_char_p, [_P]),
    "bpf_program__set_autoload": (_c.c_int, [_P, _c.c_bool]),
    "bpf_program__autoload": (_c.c_bool, [_P]),
    "bpf_program__fd": (_c.c_int, [_P]),
    "bpf_program__attach": (_P, [_P]),
    "bpf_link__destroy": (_c.c_int, [_P]),
    "bpf_link__fd": (_c.c_int, [_P]),
    "bpf_link__disconnect": (None, [_P]),
    "bpf_map__name": (_c.c_char_p, [_P]),
    "bpf_map__fd": (_c.c_int, [_P]),
    "bpf_map__reuse_fd": (_c.c_int, [_P, _c.c_int]),
    "bpf_map__set_max_entries": (_c.c_int, [_P, _c.c_uint32]),
    "bpf_map__max_entries": (_c.c_uint32, [_P]),
    "bpf_map__key_size": (_c.c_uint32, [_P]),
    "bpf_map__value_size": (_c.c_uint32, [_P]),
    "bpf_map__initial_value": (_P, [_P, _c.POINTER(_c.c_size_t)]),
    "btf__find_by_name_kind": (_c.c_int, [_P, _c.c_char_p, _c.c_uint32]),
    "btf__load_vmlinux_btf": (_P, []),
    "btf__free": (None, [_P]),
    "btf__type_by_id": (_P, [_P, _c.c_uint32]),
    "btf__name_by_offset": (_c.c_char_p, [_P, _c.c_uint32]),
    "bpf_map_update_elem": (_c.c_int, [_c.c_int, _P, _P, _c.c_uint64]),
    "bpf_map_lookup_elem": (_c.c_int, [_c.c_int, _P, _P]),
    "bpf_map_delete_elem": (_c.c_int, [_c.c_int, _P]),
    "bpf_map_get_next_key": (_c.c_int, [_c.c_int, _P, _P]),
    "bpf_obj_pin": (_c.c_int, [_c.c_int, _c.c_char_p]),
    "bpf_obj_get": (_c.c_int, [_c.c_char_p]),
    "ring_buffer__new": (_P, [_c.c_int, _P, _P, _P]),
    "ring_buffer__poll": (_c.c_int, [_P, _c.c_int]),
    "ring_buffer__consume": (_c.c_int, [_P]),
    "ring_buffer__free": (None, [_P]),
    "libbpf_major_version": (_c.c_uint32, []),
    "libbpf_minor_version": (_c.c_uint32, []),
}


class Libbpf:
    """The shared library with prototypes set; one per loader (no module-level state)."""

    def __init__(self, path: str | None = None) -> None:
        name = path or ctypes.util.find_library("bpf") or "libbpf.so.1"
        self.lib = ctypes.CDLL(name, use_errno=True)
        for fn, (res, args) in _PROTOS.items():
            f = getattr(self.lib, fn)
            f.restype = res
            f.argtypes = args

    def version(self) -> str:
        return f"{self.lib.libbpf_major_version()}.{self.lib.libbpf_minor_version()}"

    def check(self, rc: int, what: str) -> int:
        """Raise LibbpfError for a negative return (libbpf returns -errno)."""
        if rc < 0:
            raise LibbpfError(-rc, f"{what}: {os.strerror(-rc)}")
        return rc

    def ptr(self, p: int | None, what: str) -> int:
        """Raise LibbpfError for a NULL pointer result (errno set by libbpf)."""
        if not p:
            err = ctypes.get_errno() or 22
            raise LibbpfError(err, f"{what}: {os.strerror(err)}")
        return p


class KernelBtf:
    """The running kernel's BTF parsed by libbpf (C, a few ms), for the few struct
    layouts the CO-RE loader itself needs (sizeof / offsetof of a struct member)."""

    def __init__(self, lib: Libbpf) -> None:
        self._lib = lib
        self._btf = lib.ptr(lib.lib.btf__load_vmlinux_btf(), "vmlinux BTF")

    def _struct(self, name: str) -> tuple[_BtfType, int]:
        lib = self._lib.lib
        tid = lib.btf__find_by_name_kind(self._btf, name.encode(), BTF_KIND_STRUCT)
        if tid < 0:
            raise KeyError(f"struct {name!r} not in BTF")
        addr = lib.btf__type_by_id(self._btf, tid)
        return _BtfType.from_address(addr), addr + ctypes.sizeof(_BtfType)

    def sizeof(self, name: str) -> int:
        return self._struct(name)[0].size

    def offsetof(self, name: str, member: str) -> int:
        """Byte offset of a direct member (nested paths are not needed here)."""
        t, base = self._struct(name)
        kflag = t.info >> 31
        for i in range(t.info & 0xFFFF):
            m = _Member.from_address(base + i * ctypes.sizeof(_Member))
            if self._lib.lib.btf__name_by_offset(self._btf, m.name_off) == member.encode():
                bits = m.offset & 0xFFFFFF if kflag else m.offset
                return bits // 8
        raise KeyError(f"{name}.{member} not in BTF")

    def close(self) -> None:
        if self._btf:
            self._lib.lib.btf__free(self._btf)
            self._btf = None


@dataclass(slots=True)
class Program:
    """A program of an opened object: its name, ELF section and libbpf handle."""

    name: str
    section: str
    handle: int


class MapView:
    """A BPF map by file descriptor: bytes keys and values, or ints packed to their size."""

    def __init__(self, lib: Libbpf, fd: int, key_size: int, value_size: int,
                 max_entries: int = 0) -> None:
        self._lib = lib
        self.fd = fd
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries

    def _buf(self, v: bytes | int, size: int) -> ctypes.Array:
        raw = v.to_bytes(size, "little") if isinstance(v, int) else v[:size].ljust(size, b"\0")
        return ctypes.create_string_buffer(raw, size)

    def update(self, key: bytes | int, value: bytes | int) -> None:
        k, v = self._buf(key, self.key_size), self._buf(value, self.value_size)
        rc = self._lib.lib.bpf_map_update_elem(self.fd, k, v, BPF_ANY)
        self._lib.check(rc, "map update")

    def delete(self, key: bytes | int) -> None:
        """Remove a key; a key already gone is no error."""
        self._lib.lib.bpf_map_delete_elem(self.fd, self._buf(key, self.key_size))

    def lookup(self, key: bytes | int) -> bytes | None:
        k = self._buf(key, self.key_size)
        v = ctypes.create_string_buffer(self.value_size)
        if self._lib.lib.bpf_map_lookup_elem(self.fd, k, v) < 0:
            return None
        return v.raw

    def keys(self) -> Iterator[bytes]:
        prev = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while self._lib.lib.bpf_map_get_next_key(self.fd, prev, nxt) == 0:
            yield nxt.raw
            prev = ctypes.create_string_buffer(nxt.raw, self.key_size)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for k in list(self.keys()):
            v = self.lookup(k)
            if v is not None:
                yield k, v

    def int_items(self) -> Iterator[tuple[int, int]]:
        """(key, value) as little-endian integers, e.g. of a u32 -> u64 array."""
        for k, v in self.items():
            yield int.from_bytes(k, "little"), int.from_bytes(v, "little")


class BpfObject:
    """One opened CO-RE object (`probes/build/<name>.bpf.o`)."""

    def __init__(self, lib: Libbpf, path: str) -> None:
        self._lib = lib
        self.path = path
        self._obj = lib.ptr(lib.lib.bpf_object__open(path.encode()), f"open {path}")
        self._links: list[int] = []
        self._link_progs: list[Program] = []

    def programs(self) -> list[Program]:
        out, p = [], None
        while p := self._lib.lib.bpf_object__next_program(self._obj, p):
            out.append(Program(self._lib.lib.bpf_program__name(p).decode(),
                               self._lib.lib.bpf_program__section_name(p).decode(), p))
        return out

    def _maps(self) -> dict[str, int]:
        out, m = {}, None
        while m := self._lib.lib.bpf_object__next_map(self._obj, m):
            out[self._lib.lib.bpf_map__name(m).decode()] = m
        return out

    def _map(self, name: str) -> int:
        for n, m in self._maps().items():
            if n == name or n.endswith("." + name.lstrip(".")) and name.startswith("."):
                return m
        raise KeyError(name)

    def has_map(self, name: str) -> bool:
        try:
            self._map(name)
            return True
        except KeyError:
            return False

    def set_autoload(self, prog: Program, on: bool) -> None:
        self._lib.check(self._lib.lib.bpf_program__set_autoload(prog.handle, on), "autoload")

    def set_max_entries(self, name: str, n: int) -> None:
        self._lib.check(self._lib.lib.bpf_map__set_max_entries(self._map(name), n),
                        f"max_entries of {name}")

    def reuse_map(self, name: str, fd: int) -> None:
        """Share another object's map (the ring buffer, loss counters) with this one."""
        self._lib.check(self._lib.lib.bpf_map__reuse_fd(self._map(name), fd), f"reuse {name}")

    def rodata_vars(self) -> dict[str, tuple[int, int]]:
        """Name -> (offset, size) of the `.rodata` variables, from the object's BTF."""
        lib = self._lib.lib
        btf = lib.bpf_object__btf(self._obj)
        tid = lib.btf__find_by_name_kind(btf, b".rodata", BTF_KIND_DATASEC) if btf else -1
        if tid < 0:
            return {}
        t = _BtfType.from_address(lib.btf__type_by_id(btf, tid))
        base = lib.btf__type_by_id(btf, tid) + ctypes.sizeof(_BtfType)
        out = {}
        for i in range(t.info & 0xFFFF):
            sec = _VarSecinfo.from_address(base + i * ctypes.sizeof(_VarSecinfo))
            var = _BtfType.from_address(lib.btf__type_by_id(btf, sec.type))
            out[lib.btf__name_by_offset(btf, var.name_off).decode()] = (sec.offset, sec.size)
        return out

    def set_rodata(self, values: dict[str, int]) -> list[str]:
        """Write `.rodata` variables (SPY_CONFIG(name) is `cfg_<name>`) before the load;
        returns the names this object does not declare."""
        layout = {k.removeprefix("cfg_"): v for k, v in self.rodata_vars().items()}
        missing = [n for n in values if n not in layout]
        if len(missing) == len(values):
            return missing
        size = ctypes.c_size_t()
        addr = self._lib.ptr(self._lib.lib.bpf_map__initial_value(self._map(".rodata"),
                                                                 ctypes.byref(size)), "rodata")
        for name, value in values.items():
            if name in layout:
                off, width = layout[name]
                raw = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
                ctypes.memmove(addr + off, raw, width)
        return missing

    def load(self) -> None:
        self._lib.check(self._lib.lib.bpf_object__load(self._obj), f"load {self.path}")

    def attach(self, prog: Program) -> None:
        link = self._lib.lib.bpf_program__attach(prog.handle)
        self._links.append(self._lib.ptr(link, f"attach {prog.name} ({prog.section})"))
        self._link_progs.append(prog)

    def links(self) -> list[tuple[Program, int, int]]:
        """(program, link handle, link fd) of each attachment."""
        return [(p, link, self._lib.lib.bpf_link__fd(link))
                for p, link in zip(self._link_progs, self._links, strict=True)]

    def reattach(self, old: int, *, ours: bool) -> tuple[int, int]:
        """Attach the program of link `old` again; (new handle, its fd). `ours`: the old
        descriptor is still our link (it runs another program) and is closed; otherwise
        someone closed it and the number may now be another file, so it is forgotten."""
        i = self._links.index(old)
        prog = self._link_progs[i]
        if not ours:
            self._lib.lib.bpf_link__disconnect(old)
        self._lib.lib.bpf_link__destroy(old)
        self._links.pop(i)
        self._link_progs.pop(i)
        self.attach(prog)
        return self._links[-1], self._lib.lib.bpf_link__fd(self._links[-1])

    def prog_fd(self, name: str) -> int:
        for p in self.programs():
            if p.name == name:
                return self._lib.check(self._lib.lib.bpf_program__fd(p.handle), name)
        raise KeyError(name)

    def map(self, name: str) -> MapView:
        m = self._map(name)
        lib = self._lib.lib
        return MapView(self._lib, self._lib.check(lib.bpf_map__fd(m), name),
                       lib.bpf_map__key_size(m), lib.bpf_map__value_size(m),
                       lib.bpf_map__max_entries(m))

    def loaded_programs(self) -> dict[str, int]:
        """Name -> fd of the programs that were loaded (autoload on)."""
        out = {}
        for p in self.programs():
            fd = self._lib.lib.bpf_program__fd(p.handle)
            if fd >= 0:
                out[p.name] = fd
        return out

    def take_links(self) -> list[int]:
        """The attach links, now the caller's to destroy."""
        links, self._links, self._link_progs = self._links, [], []
        return links

    def close(self) -> None:
        for link in self._links:
            self._lib.lib.bpf_link__destroy(link)
        self._links, self._link_progs = [], []
        if self._obj:
            self._lib.lib.bpf_object__close(self._obj)
            self._obj = None


_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class CallbackRing:
    """libbpf's own ring buffer reader (one ctypes callback per record): used where
    reading the memory map from Python is not known to be safe (weakly ordered CPUs)."""

    def __init__(self, lib: Libbpf, map_fd: int, on_record: Callable[[bytes], None]) -> None:
        self._lib = lib
        self._cb = _SAMPLE_FN(lambda _ctx, data, size: on_record(ctypes.string_at(data, size))
                              or 0)
        self._rb = lib.ptr(lib.lib.ring_buffer__new(map_fd, ctypes.cast(self._cb, _P), None,
                                                    None), "ring_buffer__new")

    def poll(self, timeout_ms: int) -> None:
        self._lib.lib.ring_buffer__poll(self._rb, timeout_ms)

    def consume(self) -> None:
        self._lib.lib.ring_buffer__consume(self._rb)

    def close(self) -> None:
        if self._rb:
            self._lib.lib.ring_buffer__free(self._rb)
            self._rb = None
