"""One table of event kinds: the probe registry (kind number -> name, decoder, layout).

The C side is checked against it: every `#define K_*` of probes/ is a registered kind of
the same number and name, every counter index has a name, every decoder returns the
event class of its kind, and every record layout a decoder unpacks matches the struct
the compiled CO-RE object carries in its BTF (offsets and sizes, member by member). A
new event kind that disagrees anywhere fails here, before any kernel is involved.
"""

from __future__ import annotations

import re
import struct
import typing
from pathlib import Path

import pytest

from spyderd.capture.btf import BTF, KIND_ARRAY, KIND_INT, KIND_STRUCT, KIND_UNION
from spyderd.capture.records import COUNTER_NAMES, HDR
from spyderd.capture.registry import kind_names, probes

REPO = Path(__file__).resolve().parents[2]
PROBES = REPO / "probes"
OBJECTS = PROBES / "build"
C_KIND = re.compile(r"^#define (K_\w+)\s+(\d+)\b", re.MULTILINE)
C_COUNTER = re.compile(r"^#define (C_\w+)\s+(\d+)\b", re.MULTILINE)


def c_defines(pattern: re.Pattern) -> dict[str, int]:
    out: dict[str, int] = {}
    for path in sorted(PROBES.glob("*.bpf.c")) + [PROBES / "common.h"]:
        for name, value in pattern.findall(path.read_text()):
            assert out.get(name, int(value)) == int(value), f"{path.name}: {name} redefined"
            out[name] = int(value)
    return out


def test_c_kinds_are_the_registered_kinds():
    registered = kind_names()
    c = {value: name.removeprefix("K_").lower() for name, value in c_defines(C_KIND).items()}
    assert c == registered


def test_kind_numbers_unique_across_probes():
    seen: dict[int, str] = {}
    for p in probes():
        for k in p.decoders:
            assert k not in seen, f"kind {k} decoded by both {seen[k]} and {p.name}"
            seen[k] = p.name


def test_counters_named():
    assert set(c_defines(C_COUNTER).values()) == set(COUNTER_NAMES)


def test_decoders_return_their_kind():
    for p in probes():
        for name, decode in p.decoders.values():
            ret = typing.get_type_hints(decode)["return"]
            kinds = {a.kind for a in typing.get_args(ret) if a is not type(None)} or {ret.kind}
            assert kinds == {name}, f"{p.name}: decoder for {name} returns {ret}"


# ---------------------------------------------------------------- layouts against BTF


def elf_section(path: Path, wanted: str) -> bytes:
    """The bytes of one section of a 64-bit little-endian ELF file."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, f"{path}: not ELF64 LE"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i: int) -> tuple[int, int, int]:
        name, _t, _f, _a, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, off, size

    _n, str_off, _s = header(shstrndx)
    for i in range(shnum):
        name, off, size = header(i)
        end = data.index(b"\0", str_off + name)
        if data[str_off + name:end].decode() == wanted:
            return data[off:off + size]
    raise KeyError(f"{path}: no {wanted} section")


def c_leaves(btf: BTF, tid: int, base: int = 0) -> list[tuple[int, int]]:
    """(byte offset, size) of each scalar member of a struct, nested structs and arrays
    flattened; a char array is one leaf (a string, as struct's `Ns` reads it)."""
    tid = btf._resolve(tid)
    _n, kind, _v, _k, _s = btf._type(tid)
    if kind in (KIND_STRUCT, KIND_UNION):
        out: list[tuple[int, int]] = []
        for _name, mtype, bit_off, bits in btf._members(tid):
            assert not bits and bit_off % 8 == 0, "records have no bitfields"
            out += c_leaves(btf, mtype, base + bit_off // 8)
        return out
    if kind == KIND_ARRAY:
        elem, _idx, n = struct.unpack_from("<III", btf._data, btf._offsets[tid] + 12)
        esize = btf.type_size(elem)
        if btf._type(btf._resolve(elem))[1] == KIND_INT and esize == 1:
            return [(base, n)]
        return [leaf for i in range(n) for leaf in c_leaves(btf, elem, base + i * esize)]
    return [(base, btf.type_size(tid))]


def py_leaves(fmt: struct.Struct) -> list[tuple[int, int]]:
    """(offset, size) of each item a struct format unpacks ('16s' is one item)."""
    out, off = [], 0
    assert fmt.format[0] in "<=", "record formats are little-endian without padding"
    for count, code in re.findall(r"(\d*)([a-zA-Z?])", fmt.format[1:]):
        n = int(count or 1)
        size = struct.calcsize("<" + code)
        if code in "sp":
            out.append((off, n))
            off += n
        elif code != "x":
            out += [(off + i * size, size) for i in range(n)]
            off += n * size
        else:
            off += n
    return out


LAYOUTS = [(p.name, c_name, fmt) for p in probes() for c_name, fmt in p.layouts.items()]


@pytest.mark.parametrize(("probe", "c_name", "fmt"), LAYOUTS,
                         ids=[f"{p}:{c}" for p, c, _ in LAYOUTS])
def test_record_layout_matches_compiled_object(probe, c_name, fmt):
    obj = OBJECTS / f"{probe}.bpf.o"
    assert obj.exists(), f"{obj} not built: run `make probes`"
    btf = BTF(elf_section(obj, ".BTF"))
    c = c_leaves(btf, btf.struct_id(c_name))
    py = py_leaves(fmt)
    assert c[:len(py)] == py, f"{c_name}: C {c[:len(py)]} != decoder {py}"
    # the decoder reads up to the next member (the rest is read by offset), or to the end
    # of the last one (tail padding aside)
    following = c[len(py)][0] if len(c) > len(py) else c[-1][0] + c[-1][1]
    assert fmt.size == following, f"{c_name}: decoder reads {fmt.size} bytes, C has {following}"


def test_every_record_struct_has_a_layout():
    """Each kind's decoder is covered by a layout (records start with struct hdr)."""
    for p in probes():
        if p.decoders:
            assert p.layouts, f"probe {p.name} registers no record layouts"
        for fmt in p.layouts.values():
            assert fmt.format.lstrip("<").startswith(HDR.format.lstrip("<"))
