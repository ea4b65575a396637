"""The machine node: identity, and the virtualization it runs under, from kernel evidence.

`systemd-detect-virt` looks for container hints first and trusts files like /.dockerenv,
so on a Firecracker VM whose root filesystem came from a Docker image it answers
`docker`. spyderd instead asks the hardware and the kernel, most specific first:

1. ACPI table OEM ids (/sys/firmware/acpi/tables): Firecracker writes `FIRECK`,
   cloud-hypervisor `CLOUDH`, QEMU `BOCHS`/`BXPC`, VirtualBox `VBOX`...
2. DMI (/sys/class/dmi/id): sys_vendor, product_name, bios_vendor, when present.
3. The cpuid hypervisor leaf 0x40000000 (/dev/cpu/0/cpuid, root only): `KVMKVMKVM`,
   `Microsoft Hv`, `VMwareVMware`, `XenVMMXenVMM`, `TCGTCGTCGTCG`...
4. /proc/cpuinfo's `hypervisor` flag, /sys/hypervisor/type, virtio devices in
   /sys/bus/virtio: a VM of unnamed kind ("vm").

Whether spyderd itself runs in a container is a separate question (attribute
`container`): only if PID 1 is outside the kernel's initial pid namespace (its
inode is fixed, 0xEFFFFFFC) do container hints (/.dockerenv, /run/.containerenv,
PID 1's `container=` environment) count.
"""

from __future__ import annotations

import os
import platform
import socket
import struct
from dataclasses import dataclass, field

from spyderd.model import Node

PROC_PID_INIT_INO = 0xEFFFFFFC

ACPI_OEM = {"FIRECK": "firecracker", "CLOUDH": "cloud-hypervisor", "BOCHS": "qemu",
            "BXPC": "qemu", "VBOX": "oracle", "AMAZON": "amazon", "XEN": "xen",
            "VRTUAL": "microsoft", "MSFTVM": "microsoft", "PRLS": "parallels",
            "BHYVE": "bhyve", "CRSVM": "crosvm", "ACRN": "acrn"}
CPUID_VENDORS = {"KVMKVMKVM": "kvm", "Microsoft Hv": "microsoft", "VMwareVMware": "vmware",
                 "XenVMMXenVMM": "xen", "TCGTCGTCGTCG": "qemu", " lrpepyh  vr": "parallels",
                 "prl hyperv": "parallels", "ACRNACRNACRN": "acrn", "bhyve bhyve": "bhyve",
                 "QNXQVMBSQG": "qnx", "Linux KVM Hv": "kvm", "SRESRESRESRE": "sre",
                 "VBoxVBoxVBox": "oracle"}
DMI_VENDORS = (("firecracker", "firecracker"), ("qemu", "qemu"), ("kvm", "kvm"),
               ("amazon ec2", "amazon"), ("vmware", "vmware"), ("innotek", "oracle"),
               ("virtualbox", "oracle"), ("xen", "xen"), ("bochs", "bochs"),
               ("parallels", "parallels"), ("bhyve", "bhyve"), ("google", "google"),
               ("openstack", "kvm"), ("microsoft corporation", "microsoft"),
               ("hetzner", "kvm"), ("cloud hypervisor", "cloud-hypervisor"))
CONTAINER_HINTS = (("/.dockerenv", "docker"), ("/run/.containerenv", "podman"))


@dataclass(slots=True)
class VirtInfo:
    virt: str = "none"  # most specific: firecracker, kvm, qemu, xen, microsoft, ..., vm
    hypervisor: str = ""  # from cpuid: kvm, microsoft, vmware, xen, ...
    container: str = ""  # only when spyderd itself is in a container
    evidence: list[str] = field(default_factory=list)

    @property
    def is_vm(self) -> bool:
        return self.virt != "none"


def _read(root: str, path: str, limit: int = 4096) -> bytes:
    try:
        with open(os.path.join(root, path.lstrip("/")), "rb") as f:
            return f.read(limit)
    except OSError:
        return b""


def acpi_vendor(root: str = "/") -> str:
    """Virtualization named by an ACPI table's OEM id (bytes 10..16 of the header)."""
    tdir = os.path.join(root, "sys/firmware/acpi/tables")
    try:
        names = sorted(n for n in os.listdir(tdir) if n.isupper() and len(n) == 4)
    except OSError:
        return ""
    for name in names:
        head = _read(root, f"/sys/firmware/acpi/tables/{name}", 36)
        oem = head[10:16].decode("ascii", "replace").strip().upper()
        for key, virt in ACPI_OEM.items():
            if oem.startswith(key):
                return virt
    return ""


def dmi_vendor(root: str = "/") -> str:
    for f in ("sys_vendor", "product_name", "bios_vendor", "board_vendor"):
        text = _read(root, f"/sys/class/dmi/id/{f}").decode("utf-8", "replace").strip().lower()
        for key, virt in DMI_VENDORS:
            if text and key in text:
                return virt
    return ""


def cpuid_vendor(root: str = "/") -> str:
    """The hypervisor's cpuid signature (leaf 0x40000000), if the cpuid device is readable."""
    try:
        fd = os.open(os.path.join(root, "dev/cpu/0/cpuid"), os.O_RDONLY)
    except OSError:
        return ""
    try:
        raw = os.pread(fd, 16, 0x40000000)
    except OSError:
        return ""
    finally:
        os.close(fd)
    if len(raw) < 16:
        return ""
    _, b, c, d = struct.unpack("<4I", raw)
    sig = struct.pack("<3I", b, c, d).rstrip(b"\0").decode("ascii", "replace")
    for key, name in CPUID_VENDORS.items():
        if sig.startswith(key.strip()) or sig == key:
            return name
    return ""


def hypervisor_flag(root: str = "/") -> bool:
    text = _read(root, "/proc/cpuinfo", 1 << 16).decode("ascii", "replace")
    for line in text.splitlines():
        if line.startswith("flags"):
            return " hypervisor" in line + " "
    return False


def detect_virt(root: str = "/") -> VirtInfo:
    info = VirtInfo()
    acpi, dmi, cpuid = acpi_vendor(root), dmi_vendor(root), cpuid_vendor(root)
    for src, val in (("acpi", acpi), ("dmi", dmi), ("cpuid", cpuid)):
        if val:
            info.evidence.append(f"{src}:{val}")
    xen = _read(root, "/sys/hypervisor/type").decode("ascii", "replace").strip()
    if xen:
        info.evidence.append(f"sys/hypervisor:{xen}")
    if hypervisor_flag(root):
        info.evidence.append("cpuinfo:hypervisor")
    try:
        if os.listdir(os.path.join(root, "sys/bus/virtio/devices")):
            info.evidence.append("virtio")
    except OSError:
        pass
    info.hypervisor = cpuid
    info.virt = acpi or dmi or cpuid or xen or ("vm" if info.evidence else "none")
    info.container = own_container(root)
    return info


def own_container(root: str = "/") -> str:
    """The container spyderd itself runs in, "" on a host or VM (see module docstring)."""
    try:
        if os.stat(os.path.join(root, "proc/1/ns/pid")).st_ino == PROC_PID_INIT_INO:
            return ""
    except OSError:
        return ""
    env = _read(root, "/proc/1/environ", 1 << 16).split(b"\0")
    for var in env:
        if var.startswith(b"container="):
            return var[10:].decode("ascii", "replace") or "container"
    for path, name in CONTAINER_HINTS:
        if os.path.exists(os.path.join(root, path.lstrip("/"))):
            return name
    return "container"


def machine_node(machine_id: str, boot_id: str, boot_wall_ns: int,
                 virt: VirtInfo) -> Node:
    """`machine:<machine-id or boot id>` with identity and virtualization attributes."""
    uname = platform.uname()
    return Node(
        id=f"machine:{machine_id or boot_id}", kind="machine", start=boot_wall_ns,
        attrs={"machine_id": machine_id, "boot_id": boot_id, "hostname": socket.gethostname(),
               "kernel": uname.release, "arch": uname.machine, "virt": virt.virt,
               "hypervisor": virt.hypervisor, "vm": virt.is_vm, "container": virt.container,
               "virt_evidence": list(virt.evidence)})
