"""Minimal pure-Python reader of the kernel's raw BTF, for struct member offsets.

bcc compiles spyderd's BPF programs against whatever kernel headers are installed,
which need not match the running kernel. The programs therefore read kernel struct
fields with ``bpf_probe_read_kernel`` at offsets resolved here from
``/sys/kernel/btf/vmlinux`` and passed to the compiler as ``-D`` macros.

Loading walks the type section once, recording where each type record starts and
indexing the names of structs, unions, typedefs and base types; members are decoded
only when a lookup needs them.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BTF", "Member", "cflags", "kernel_offsets"]

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
BTF_MAGIC = 0xEB9F

# BTF_KIND_* values from include/uapi/linux/btf.h.
KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19

# Trailing bytes after the 12-byte btf_type record: (fixed, per vlen entry), by kind.
_TRAILER: dict[int, tuple[int, int]] = {
    KIND_INT: (4, 0),
    KIND_PTR: (0, 0),
    KIND_ARRAY: (12, 0),
    KIND_STRUCT: (0, 12),
    KIND_UNION: (0, 12),
    KIND_ENUM: (0, 8),
    KIND_FWD: (0, 0),
    KIND_TYPEDEF: (0, 0),
    KIND_VOLATILE: (0, 0),
    KIND_CONST: (0, 0),
    KIND_RESTRICT: (0, 0),
    KIND_FUNC: (0, 0),
    KIND_FUNC_PROTO: (0, 8),
    KIND_VAR: (4, 0),
    KIND_DATASEC: (0, 12),
    KIND_FLOAT: (0, 0),
    KIND_DECL_TAG: (4, 0),
    KIND_TYPE_TAG: (0, 0),
    KIND_ENUM64: (0, 12),
}
_MODIFIERS = frozenset({KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG})
_COMPOSITE = (KIND_STRUCT, KIND_UNION)
_SIZED = frozenset({KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64, KIND_FLOAT})
_HEADER_LEN = 24


@dataclass(frozen=True, slots=True)
class Member:
    """A resolved struct/union member: offsets are from the start of the outer struct."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int  # 0 when the member is not a bitfield

    @property
    def is_bitfield(self) -> bool:
        """True when the member does not start and end on byte boundaries."""
        return self.bitfield_size != 0 or self.bit_offset % 8 != 0


class BTF:
    """Parsed raw BTF blob (the format of ``/sys/kernel/btf/vmlinux``)."""

    def __init__(self, data: bytes) -> None:
        """Parse ``data``, a raw BTF blob; raises ValueError if it is malformed."""
        if len(data) < _HEADER_LEN:
            raise ValueError("BTF blob shorter than its header")
        magic = int.from_bytes(data[:2], "little")
        if magic == BTF_MAGIC:
            self._bo = "<"
        elif magic == 0x9FEB:
            self._bo = ">"
        else:
            raise ValueError(f"bad BTF magic {magic:#06x}")
        bo = self._bo
        (_m, self.version, self.flags, hdr_len, type_off, type_len, str_off, str_len) = (
            struct.unpack_from(bo + "HBBIIIII", data, 0)
        )
        type_start = hdr_len + type_off
        type_end = type_start + type_len
        str_start = hdr_len + str_off
        if hdr_len < _HEADER_LEN or type_end > len(data) or str_start + str_len > len(data):
            raise ValueError("BTF section bounds exceed the blob")
        self._data = data
        self._str_start = str_start
        self._str_end = str_start + str_len
        self._name_cache: dict[int, str] = {}
        self._ptr_size: int | None = None
        # _offsets[tid] is the byte position of type tid's record; id 0 (void) is a dummy.
        self._offsets = array("I", [0])
        self._composites: dict[str, list[int]] = {}
        self._typedefs: dict[str, list[int]] = {}
        self._scalars: dict[str, list[int]] = {}
        self._index(type_start, type_end)

    @classmethod
    def load(cls, path: str | Path = VMLINUX_BTF) -> BTF:
        """Read and parse a raw BTF file, by default the running kernel's."""
        return cls(Path(path).read_bytes())

    def _index(self, pos: int, end: int) -> None:
        data = self._data
        unpack = struct.Struct(self._bo + "II").unpack_from
        trailer = _TRAILER
        offsets = self._offsets
        append = offsets.append
        # Names are decoded after the walk, only for the kinds worth indexing.
        named: list[tuple[int, int, int]] = []
        tid = 0
        while pos < end:
            name_off, info = unpack(data, pos)
            kind = (info >> 24) & 0x1F
            try:
                fixed, per = trailer[kind]
            except KeyError:
                raise ValueError(f"unknown BTF kind {kind} at type id {tid + 1}") from None
            tid += 1
            append(pos)
            if name_off and (kind in _COMPOSITE or kind == KIND_TYPEDEF or kind in _SIZED):
                named.append((tid, kind, name_off))
            pos += 12 + fixed + per * (info & 0xFFFF)
        if pos != end:
            raise ValueError("BTF type section ends inside a type record")
        for tid, kind, name_off in named:
            name = self._str(name_off)
            if kind in _COMPOSITE:
                table = self._composites
            elif kind == KIND_TYPEDEF:
                table = self._typedefs
            else:
                table = self._scalars
            table.setdefault(name, []).append(tid)

    # -- low-level accessors -------------------------------------------------------------

    @property
    def type_count(self) -> int:
        """Number of types, not counting void (id 0)."""
        return len(self._offsets) - 1

    def _str(self, off: int) -> str:
        cached = self._name_cache.get(off)
        if cached is not None:
            return cached
        start = self._str_start + off
        if start >= self._str_end:
            raise ValueError(f"BTF string offset {off} out of range")
        stop = self._data.find(b"\0", start, self._str_end)
        if stop < 0:
            stop = self._str_end
        name = self._data[start:stop].decode("utf-8", "replace")
        self._name_cache[off] = name
        return name

    def _type(self, tid: int) -> tuple[int, int, int, int, int]:
        """Return (name_off, kind, vlen, kind_flag, size_or_type) of type ``tid``."""
        if tid <= 0 or tid >= len(self._offsets):
            raise KeyError(f"BTF type id {tid} out of range")
        name_off, info, size_type = struct.unpack_from(
            self._bo + "III", self._data, self._offsets[tid]
        )
        return name_off, (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, size_type

    def type_name(self, tid: int) -> str:
        """Name of type ``tid`` ("" for anonymous types and void)."""
        return self._str(self._type(tid)[0]) if tid else ""

    def kind(self, tid: int) -> int:
        """BTF_KIND_* of type ``tid``."""
        return self._type(tid)[1]

    def _resolve(self, tid: int) -> int:
        """Skip typedef/const/volatile/restrict/type-tag wrappers."""
        for _ in range(64):
            if tid == 0:
                return 0
            _n, kind, _v, _k, ref = self._type(tid)
            if kind not in _MODIFIERS:
                return tid
            tid = ref
        raise ValueError("BTF modifier chain too long (loop?)")

    def _members(self, tid: int) -> list[tuple[str, int, int, int]]:
        """(name, type_id, bit_offset, bitfield_size) of each member of struct/union ``tid``."""
        _n, kind, vlen, kflag, _s = self._type(tid)
        if kind not in _COMPOSITE:
            raise ValueError(f"BTF type {tid} is not a struct or union")
        base = self._offsets[tid] + 12
        out = []
        for name_off, mtype, moff in struct.iter_unpack(
            self._bo + "III", self._data[base : base + 12 * vlen]
        ):
            if kflag:
                bit_off, bf_size = moff & 0xFFFFFF, moff >> 24
            else:
                bit_off, bf_size = moff, self._int_bitfield_size(mtype)
            out.append((self._str(name_off) if name_off else "", mtype, bit_off, bf_size))
        return out

    def _int_bitfield_size(self, tid: int) -> int:
        """Bitfield width encoded in an INT type (kind_flag == 0 structs), else 0."""
        tid = self._resolve(tid)
        if tid == 0:
            return 0
        _n, kind, _v, _k, size = self._type(tid)
        if kind != KIND_INT:
            return 0
        enc = struct.unpack_from(self._bo + "I", self._data, self._offsets[tid] + 12)[0]
        bits, bit_off = enc & 0xFF, (enc >> 16) & 0xFF
        return bits if bits != size * 8 or bit_off else 0

    def _find_composite(self, name: str) -> int:
        """Type id of the struct/union ``name``, preferring a complete definition."""
        cands = self._composites.get(name)
        if not cands:
            for td in self._typedefs.get(name, ()):
                tid = self._resolve(td)
                if tid and self._type(tid)[1] in _COMPOSITE:
                    return tid
            raise KeyError(f"struct/union {name!r} not found in BTF")
        if len(cands) == 1:
            return cands[0]
        # Several definitions share the name: prefer one with members, then the largest.
        return max(cands, key=lambda t: (self._type(t)[2] > 0, self._type(t)[4] > 0))

    # -- public lookups ------------------------------------------------------------------

    def has_struct(self, name: str) -> bool:
        """True if a struct or union called ``name`` is defined."""
        return name in self._composites

    def struct_id(self, name: str) -> int:
        """Type id of struct/union ``name``; KeyError if missing."""
        return self._find_composite(name)

    def member(self, struct_name: str, member_path: str) -> Member:
        """Resolve a dotted member path, looking through anonymous struct/union members."""
        tid = self._find_composite(struct_name)
        bit_base = 0
        parts = member_path.split(".")
        if not member_path or any(not p for p in parts):
            raise KeyError(f"bad member path {member_path!r}")
        where = f"struct {struct_name}"
        found: tuple[str, int, int, int] | None = None
        for i, part in enumerate(parts):
            if i:
                assert found is not None
                tid = self._resolve(found[1])
                if tid == 0 or self._type(tid)[1] not in _COMPOSITE:
                    raise ValueError(
                        f"{where}.{found[0]} is not a struct or union; cannot take .{part}"
                    )
                where = f"{where}.{found[0]}"
            hit = self._lookup(tid, part)
            if hit is None:
                raise KeyError(f"{where} has no member {part!r}")
            found = hit
            if found[3] and i != len(parts) - 1:
                raise ValueError(f"{where}.{part} is a bitfield; cannot descend into it")
            bit_base += found[2]
        assert found is not None
        return Member(found[0], found[1], bit_base, found[3])

    def _lookup(self, tid: int, name: str) -> tuple[str, int, int, int] | None:
        """Find ``name`` in struct ``tid`` or, recursively, in its anonymous members."""
        for mname, mtype, bit_off, bf_size in self._members(tid):
            if mname == name:
                return mname, mtype, bit_off, bf_size
            if not mname:
                inner = self._resolve(mtype)
                if inner and self._type(inner)[1] in _COMPOSITE:
                    hit = self._lookup(inner, name)
                    if hit is not None:
                        return hit[0], hit[1], hit[2] + bit_off, hit[3]
        return None

    def offsetof(self, struct_name: str, member_path: str) -> int:
        """Byte offset of ``member_path`` (dotted allowed) within ``struct_name``.

        Raises KeyError if the struct or a member is missing, ValueError for bitfields.
        """
        m = self.member(struct_name, member_path)
        if m.is_bitfield:
            raise ValueError(
                f"struct {struct_name}.{member_path} is a bitfield "
                f"(bit offset {m.bit_offset}, {m.bitfield_size} bits); no byte offset"
            )
        return m.bit_offset // 8

    def type_size(self, tid: int) -> int:
        """Size in bytes of type ``tid``, following modifiers and arrays."""
        tid = self._resolve(tid)
        if tid == 0:
            raise ValueError("void has no size")
        _n, kind, _v, _k, size_type = self._type(tid)
        if kind in _SIZED:
            return size_type
        if kind == KIND_PTR:
            return self._pointer_size()
        if kind == KIND_ARRAY:
            elem, _idx, nelems = struct.unpack_from(
                self._bo + "III", self._data, self._offsets[tid] + 12
            )
            return nelems * self.type_size(elem) if nelems else 0
        raise ValueError(f"BTF type {tid} (kind {kind}) has no size")

    def _pointer_size(self) -> int:
        if self._ptr_size is None:
            self._ptr_size = 8
            for name in ("long unsigned int", "long int"):
                for tid in self._scalars.get(name, ()):
                    self._ptr_size = self._type(tid)[4]
                    return self._ptr_size
        return self._ptr_size

    def sizeof(self, name: str) -> int:
        """Size in bytes of a named struct/union, typedef or base type (int, enum, float)."""
        if name in self._composites:
            return self.type_size(self._find_composite(name))
        for table in (self._typedefs, self._scalars):
            if name in table:
                return self.type_size(table[name][0])
        raise KeyError(f"type {name!r} not found in BTF")


def kernel_offsets(
    btf: BTF, wanted: dict[str, tuple[str, str]]
) -> tuple[dict[str, int], dict[str, str]]:
    """Resolve ``{macro: (struct, member_path)}``; return (found offsets, missing reasons)."""
    found: dict[str, int] = {}
    missing: dict[str, str] = {}
    for macro, (struct_name, member_path) in wanted.items():
        try:
            found[macro] = btf.offsetof(struct_name, member_path)
        except KeyError as exc:
            missing[macro] = str(exc.args[0]) if exc.args else repr(exc)
        except ValueError as exc:
            missing[macro] = str(exc)
    return found, missing


def cflags(offsets: dict[str, int]) -> list[str]:
    """``-DNAME=VALUE`` compiler flags for resolved offsets, e.g. for bcc's ``cflags``."""
    return [f"-D{name}={value}" for name, value in sorted(offsets.items())]
