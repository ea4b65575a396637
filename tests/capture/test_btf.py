"""Tests of the pure-Python BTF reader: a hand-built blob and the running kernel's BTF."""

from __future__ import annotations

import os
import struct
import time

import pytest

from spyderd.capture.btf import BTF, VMLINUX_BTF, cflags, kernel_offsets

# --- a tiny hand-built BTF blob -----------------------------------------------------------


class _Blob:
    """Assemble raw BTF: types and strings, in either byte order."""

    def __init__(self, bo: str) -> None:
        self.bo = bo
        self.types = b""
        self.strings = b"\0"
        self.count = 0

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def t(
        self, name: str, kind: int, vlen: int, size_type: int, tail: bytes = b"", *, kflag: int = 0
    ) -> int:
        info = (kflag << 31) | (kind << 24) | vlen
        self.types += struct.pack(self.bo + "III", self.s(name), info, size_type) + tail
        self.count += 1
        return self.count

    def members(self, *members: tuple[str, int, int]) -> bytes:
        return b"".join(struct.pack(self.bo + "III", self.s(n), t, o) for n, t, o in members)

    def u32(self, *vals: int) -> bytes:
        return struct.pack(self.bo + "I" * len(vals), *vals)

    def build(self) -> bytes:
        hdr = struct.pack(
            self.bo + "HBBIIIII",
            0xEB9F,
            1,
            0,
            24,
            0,
            len(self.types),
            len(self.types),
            len(self.strings),
        )
        return hdr + self.types + self.strings


def _tiny(bo: str) -> tuple[bytes, dict[str, int]]:
    b = _Blob(bo)
    ids = {}
    ids["int"] = b.t("int", 1, 0, 4, b.u32((1 << 24) | 32))  # INT, signed, 32 bits
    ids["ptr"] = b.t("", 2, 0, ids["int"])  # PTR
    ids["arr"] = b.t("", 3, 0, 0, b.u32(ids["int"], ids["int"], 5))  # ARRAY int[5]
    ids["enum"] = b.t("e", 6, 2, 4, b.u32(b.s("A"), 0, b.s("B"), 1))  # ENUM
    ids["fwd"] = b.t("foo", 7, 0, 0)  # FWD struct foo
    ids["empty_foo"] = b.t("foo", 4, 0, 0)  # incomplete duplicate
    ids["union"] = b.t("", 5, 2, 4, b.members(("ua", ids["int"], 0), ("ub", ids["int"], 0)))
    ids["foo"] = b.t(
        "foo",
        4,
        5,
        20,
        b.members(
            ("x", ids["int"], 0),
            ("", ids["union"], 32),  # anonymous union holding ua/ub
            ("flags", ids["int"], (3 << 24) | 64),  # int flags:3 at bit 64
            ("more", ids["int"], (5 << 24) | 67),  # int more:5 at bit 67
            ("y", ids["arr"], 96),
        ),
        kflag=1,
    )
    ids["typedef"] = b.t("foo_t", 8, 0, ids["foo"])  # TYPEDEF
    ids["volatile"] = b.t("", 9, 0, ids["typedef"])  # VOLATILE
    ids["const"] = b.t("", 10, 0, ids["volatile"])  # CONST
    ids["restrict"] = b.t("", 11, 0, ids["ptr"])  # RESTRICT
    ids["proto"] = b.t("", 13, 2, ids["int"], b.u32(b.s("p"), ids["int"], 0, ids["ptr"]))
    ids["func"] = b.t("fn", 12, 1, ids["proto"])  # FUNC
    ids["var"] = b.t("v", 14, 0, ids["int"], b.u32(1))  # VAR
    ids["datasec"] = b.t(".data", 15, 1, 4, b.u32(ids["var"], 0, 4))  # DATASEC
    ids["float"] = b.t("double", 16, 0, 8)  # FLOAT
    ids["decl_tag"] = b.t("tag", 17, 0, ids["foo"], b.u32(0xFFFFFFFF))  # DECL_TAG
    ids["type_tag"] = b.t("rcu", 18, 0, ids["const"])  # TYPE_TAG
    ids["enum64"] = b.t("e64", 19, 1, 8, b.u32(b.s("C"), 1, 2))  # ENUM64
    ids["u3"] = b.t("u3", 1, 0, 4, b.u32(3))  # INT of 3 bits
    ids["legacy"] = b.t(  # kind_flag == 0
        "legacy", 4, 2, 8, b.members(("bits", ids["u3"], 5), ("z", ids["int"], 32))
    )
    ids["outer"] = b.t(
        "outer",
        4,
        3,
        40,
        b.members(
            ("head", ids["ptr"], 0), ("inner", ids["type_tag"], 64), ("w", ids["float"], 256)
        ),
    )
    return b.build(), ids


@pytest.fixture(params=["<", ">"], ids=["little", "big"])
def tiny(request: pytest.FixtureRequest) -> tuple[BTF, dict[str, int]]:
    blob, ids = _tiny(request.param)
    return BTF(blob), ids


def test_tiny_walks_every_kind(tiny: tuple[BTF, dict[str, int]]) -> None:
    btf, ids = tiny
    assert btf.type_count == len(ids)
    kinds = {"int": 1, "ptr": 2, "arr": 3, "empty_foo": 4, "foo": 4, "union": 5, "enum": 6}
    kinds |= {"fwd": 7, "typedef": 8, "volatile": 9, "const": 10, "restrict": 11, "func": 12}
    kinds |= {"proto": 13, "var": 14, "datasec": 15, "float": 16, "decl_tag": 17}
    kinds |= {"type_tag": 18, "enum64": 19, "u3": 1, "legacy": 4, "outer": 4}
    assert {name: btf.kind(tid) for name, tid in ids.items()} == kinds
    assert btf.type_name(ids["outer"]) == "outer"
    assert btf.type_name(0) == ""


def test_tiny_plain_and_anonymous_members(tiny: tuple[BTF, dict[str, int]]) -> None:
    btf, ids = tiny
    assert btf.offsetof("foo", "x") == 0
    assert btf.offsetof("foo", "ua") == 4
    assert btf.offsetof("foo", "ub") == 4
    assert btf.offsetof("foo", "y") == 12
    assert btf.offsetof("legacy", "z") == 4
    # the complete definition wins over the FWD and the empty duplicate
    assert btf.struct_id("foo") == ids["foo"]
    assert btf.has_struct("foo") and btf.has_struct("legacy")
    assert not btf.has_struct("int") and not btf.has_struct("nope")


def test_tiny_dotted_path_through_modifiers(tiny: tuple[BTF, dict[str, int]]) -> None:
    btf, _ = tiny
    # outer.inner is type_tag -> const -> volatile -> typedef foo_t -> struct foo
    assert btf.offsetof("outer", "inner") == 8
    assert btf.offsetof("outer", "inner.ub") == 12
    assert btf.offsetof("outer", "inner.y") == 20
    assert btf.offsetof("outer", "w") == 32
    assert btf.offsetof("foo_t", "y") == 12  # a typedef of a struct is accepted
    with pytest.raises(ValueError, match="not a struct"):
        btf.offsetof("outer", "head.x")  # pointers are not descended into
    with pytest.raises(KeyError, match="no member 'nope'"):
        btf.offsetof("outer", "inner.nope")


def test_tiny_bitfields(tiny: tuple[BTF, dict[str, int]]) -> None:
    btf, _ = tiny
    m = btf.member("foo", "flags")
    assert (m.bit_offset, m.bitfield_size, m.is_bitfield) == (64, 3, True)
    m = btf.member("outer", "inner.more")
    assert (m.bit_offset, m.bitfield_size) == (64 + 67, 5)
    with pytest.raises(ValueError, match="bitfield"):
        btf.offsetof("foo", "flags")
    with pytest.raises(ValueError, match="bitfield"):
        btf.offsetof("foo", "more")
    # kind_flag == 0: the width comes from the member's INT encoding
    m = btf.member("legacy", "bits")
    assert (m.bit_offset, m.bitfield_size) == (5, 3)
    with pytest.raises(ValueError, match="bitfield"):
        btf.offsetof("legacy", "bits")


def test_tiny_sizeof(tiny: tuple[BTF, dict[str, int]]) -> None:
    btf, _ = tiny
    assert btf.sizeof("int") == 4
    assert btf.sizeof("foo") == 20
    assert btf.sizeof("foo_t") == 20
    assert btf.sizeof("double") == 8
    assert btf.sizeof("e") == 4
    with pytest.raises(KeyError):
        btf.sizeof("nope")


def test_tiny_kernel_offsets(tiny: tuple[BTF, dict[str, int]]) -> None:
    btf, _ = tiny
    found, missing = kernel_offsets(
        btf,
        {
            "OFF_Y": ("foo", "y"),
            "OFF_INNER_UA": ("outer", "inner.ua"),
            "OFF_GONE": ("gone", "x"),
            "OFF_NOMEMBER": ("foo", "q"),
            "OFF_BITS": ("foo", "flags"),
        },
    )
    assert found == {"OFF_Y": 12, "OFF_INNER_UA": 12}
    assert set(missing) == {"OFF_GONE", "OFF_NOMEMBER", "OFF_BITS"}
    assert "gone" in missing["OFF_GONE"] and "bitfield" in missing["OFF_BITS"]
    assert cflags(found) == ["-DOFF_INNER_UA=12", "-DOFF_Y=12"]


def test_malformed_blobs() -> None:
    blob, _ = _tiny("<")
    with pytest.raises(ValueError, match="magic"):
        BTF(b"\0\0" + blob[2:])
    with pytest.raises(ValueError):
        BTF(blob[:10])
    with pytest.raises(ValueError):
        BTF(blob[:40])  # type section truncated
    bad_kind = bytearray(blob)
    bad_kind[24 + 7] = 30  # kind byte of the first type's info (little-endian)
    with pytest.raises(ValueError, match="unknown BTF kind"):
        BTF(bytes(bad_kind))


# --- the running kernel -------------------------------------------------------------------

needs_vmlinux = pytest.mark.skipif(
    not os.access(VMLINUX_BTF, os.R_OK), reason=f"{VMLINUX_BTF} not readable"
)

WANTED = {
    "OFF_TASK_PID": ("task_struct", "pid"),
    "OFF_TASK_TGID": ("task_struct", "tgid"),
    "OFF_TASK_START_BOOTTIME": ("task_struct", "start_boottime"),
    "OFF_TASK_EXIT_CODE": ("task_struct", "exit_code"),
    "OFF_TASK_FILES": ("task_struct", "files"),
    "OFF_TASK_LOGINUID": ("task_struct", "loginuid"),
    "OFF_TASK_SESSIONID": ("task_struct", "sessionid"),
    "OFF_TASK_REAL_PARENT": ("task_struct", "real_parent"),
    "OFF_FILES_FDT": ("files_struct", "fdt"),
    "OFF_FDTABLE_FD": ("fdtable", "fd"),
    "OFF_FILE_PRIVATE_DATA": ("file", "private_data"),
    "OFF_SOCKET_SK": ("socket", "sk"),
    "OFF_SKC_DADDR": ("sock_common", "skc_daddr"),
    "OFF_SKC_RCV_SADDR": ("sock_common", "skc_rcv_saddr"),
    "OFF_SKC_DPORT": ("sock_common", "skc_dport"),
    "OFF_SKC_NUM": ("sock_common", "skc_num"),
    "OFF_SKC_FAMILY": ("sock_common", "skc_family"),
    "OFF_SKC_V6_DADDR": ("sock_common", "skc_v6_daddr"),
    "OFF_SKC_V6_RCV_SADDR": ("sock_common", "skc_v6_rcv_saddr"),
}


@pytest.fixture(scope="module")
def vmlinux() -> BTF:
    if not os.access(VMLINUX_BTF, os.R_OK):
        pytest.skip(f"{VMLINUX_BTF} not readable")
    return BTF.load()


@needs_vmlinux
def test_vmlinux_loads_fast() -> None:
    start = time.perf_counter()
    btf = BTF.load()
    elapsed = time.perf_counter() - start
    assert btf.type_count > 10_000
    assert elapsed < 2.0, f"BTF load took {elapsed:.2f}s"


@needs_vmlinux
def test_vmlinux_offsets_resolve(vmlinux: BTF) -> None:
    found, missing = kernel_offsets(vmlinux, WANTED)
    assert missing == {}
    task = vmlinux.sizeof("task_struct")
    skc = vmlinux.sizeof("sock_common")
    for macro, (struct_name, _) in WANTED.items():
        limit = {"task_struct": task, "sock_common": skc}.get(struct_name)
        assert found[macro] >= 0
        if limit is not None:
            assert found[macro] < limit, macro


@needs_vmlinux
def test_vmlinux_known_layout(vmlinux: BTF) -> None:
    off = vmlinux.offsetof
    assert off("task_struct", "pid") + 4 == off("task_struct", "tgid")
    assert off("task_struct", "loginuid") + 4 == off("task_struct", "sessionid")
    # skc_addrpair / skc_portpair sit at the head of sock_common (x86_64 is little-endian)
    assert off("sock_common", "skc_daddr") == 0
    assert off("sock_common", "skc_rcv_saddr") == 4
    assert off("sock_common", "skc_num") == off("sock_common", "skc_dport") + 2
    assert off("sock_common", "skc_v6_rcv_saddr") == off("sock_common", "skc_v6_daddr") + 16
    # struct sock embeds sock_common first, as __sk_common
    assert off("sock", "__sk_common") == 0
    assert off("sock", "__sk_common.skc_family") == off("sock_common", "skc_family")
    assert vmlinux.sizeof("int") == 4
    assert vmlinux.sizeof("pid_t") == 4
    assert vmlinux.has_struct("task_struct")
    assert not vmlinux.has_struct("no_such_struct_spyderd")


@needs_vmlinux
def test_vmlinux_errors(vmlinux: BTF) -> None:
    with pytest.raises(KeyError, match="no_such_struct_spyderd"):
        vmlinux.offsetof("no_such_struct_spyderd", "x")
    with pytest.raises(KeyError, match="no_such_member"):
        vmlinux.offsetof("task_struct", "no_such_member")
    with pytest.raises(KeyError):
        vmlinux.sizeof("no_such_type_spyderd")
    # a long-standing one-bit flag of task_struct ("unsigned sched_reset_on_fork:1")
    assert vmlinux.member("task_struct", "sched_reset_on_fork").bitfield_size == 1
    with pytest.raises(ValueError, match="bitfield"):
        vmlinux.offsetof("task_struct", "sched_reset_on_fork")
