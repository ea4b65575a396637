"""Terminals, user databases, VM monitor command lines, virtualization evidence, veth pairs."""

from __future__ import annotations

import os
import struct

import pytest

from spyderd.enrich.machine import VirtInfo, acpi_vendor, detect_virt, machine_node
from spyderd.enrich.netns import Iface, NetnsView, link_veth_peers
from spyderd.enrich.procfs import parse_stat
from spyderd.enrich.users import NameCache, parse_db, tty_name
from spyderd.enrich.vm import firecracker_taps, parse_monitor


def _dev(major: int, minor: int) -> int:
    """The kernel's new_encode_dev, as /proc/<pid>/stat prints tty_nr."""
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


@pytest.mark.parametrize("major,minor,name", [
    (136, 3, "pts/3"), (136, 300, "pts/300"), (137, 1, "pts/257"), (4, 1, "tty1"),
    (4, 64, "ttyS0"), (5, 1, "console"), (188, 0, "ttyUSB0"), (229, 0, "hvc0"),
])
def test_tty_names(major, minor, name):
    assert tty_name(_dev(major, minor)) == name


def test_no_tty():
    assert tty_name(0) == "" and tty_name(-1) == ""


def test_parse_stat_with_hostile_comm():
    comm, rest = parse_stat("42 (a) b (c)) S 1 42 42 34816 42 4194560 0 0 0 0 0 0 0 0 20 0 1 0"
                            " 1234 0 0")
    assert comm == "a) b (c)" and rest[0] == "S" and int(rest[4]) == 34816
    assert tty_name(int(rest[4])) == "pts/0"


def test_passwd_group_parsing_and_container_names(tmp_path):
    text = "root:x:0:0:root:/root:/bin/sh\n# comment\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n"
    assert parse_db(text) == {0: "root", 33: "www-data"}
    proc = tmp_path / "proc"
    (proc / "77/root/etc").mkdir(parents=True)
    (proc / "77/root/etc/passwd").write_text("root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n")
    (proc / "77/root/etc/group").write_text("root:x:0:\napp:x:1000:\n")
    names = NameCache(host_mntns=1, proc=str(proc))
    assert names.user(1000, 77, mntns=2) == "app" and names.group(1000, 77, mntns=2) == "app"
    assert names.user(1000, 0, mntns=2) == "app"  # cached per namespace, pid no longer needed
    assert names.user(0) == "root"  # the host's own database
    assert names.user(-1) == ""


@pytest.mark.parametrize("args,monitor,name,uuid,taps", [
    (["/usr/bin/qemu-system-x86_64", "-name", "guest=web01,debug-threads=on", "-uuid",
      "4a1b7c3e-2d5f-4e6a-8b9c-0d1e2f3a4b5c", "-netdev", ("tap,id=hostnet0,ifname=vnet3,"
                                                         "vhost=on"), "-m", "2048"], "qemu", "web01", "4a1b7c3e-2d5f-4e6a-8b9c-0d1e2f3a4b5c",
     ["vnet3"]),
    (["qemu-system-aarch64", "-name", "builder", "-nic", "tap,ifname=tap7"], "qemu", "builder",
     "", ["tap7"]),
    (["/usr/bin/firecracker", "--id", "fc-7f9", "--api-sock", "/run/fc.sock"], "firecracker",
     "fc-7f9", "", []),
    (["cloud-hypervisor", "--kernel", "vmlinux", "--net", "tap=chtap0,mac=12:34:56:78:9a:bc",
      "--api-socket", "path=/run/ch-db1.sock"], "cloud-hypervisor", "ch-db1.sock", "",
     ["chtap0"]),
    (["crosvm", "run", "--tap-name", "crosvm_tap", "--socket", "/run/crosvm/vm1.sock",
      "bzImage"], "crosvm", "vm1.sock", "", ["crosvm_tap"]),
    (["/usr/lib/virtualbox/VBoxHeadless", "--comment", "win", "--startvm",
      "0f3c9b1e-1111-2222-3333-444455556666"], "virtualbox",
     "0f3c9b1e-1111-2222-3333-444455556666", "0f3c9b1e-1111-2222-3333-444455556666", []),
    (["lkvm", "run", "--name", "guest-1", "--network", "mode=tap,tapif=ktap0"], "kvmtool",
     "guest-1", "", ["ktap0"]),
])
def test_vm_monitor_command_lines(args, monitor, name, uuid, taps):
    vm = parse_monitor(args[0], args)
    assert vm is not None
    assert (vm.monitor, vm.name, vm.uuid, vm.taps) == (monitor, name, uuid, taps)


def test_not_a_vm_monitor():
    assert parse_monitor("/usr/bin/python3", ["python3", "-name", "x"]) is None


def test_firecracker_config_taps():
    cfg = ('{"boot-source": {"kernel_image_path": "vmlinux"}, "network-interfaces": '
           '[{"iface_id": "eth0", "guest_mac": "AA:FC:00:00:00:01", "host_dev_name": "fctap0"}]}')
    assert firecracker_taps(cfg) == ["fctap0"]
    assert firecracker_taps("nope") == []


def _acpi_table(oem: bytes) -> bytes:
    return b"DSDT" + struct.pack("<I", 36) + b"\x02\x00" + oem.ljust(6) + b"FCVMDSDT" + \
        b"\0" * 12


def test_firecracker_from_acpi_oem_id(tmp_path):
    tables = tmp_path / "sys/firmware/acpi/tables"
    tables.mkdir(parents=True)
    (tables / "DSDT").write_bytes(_acpi_table(b"FIRECK"))
    (tmp_path / "sys/bus/virtio/devices/virtio0").mkdir(parents=True)
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu vme hypervisor lm\n")
    (tmp_path / ".dockerenv").write_text("")  # image leftovers must not make it a container
    info = detect_virt(str(tmp_path))
    assert info.virt == "firecracker" and info.is_vm and info.container == ""
    assert {"acpi:firecracker", "cpuinfo:hypervisor", "virtio"} <= set(info.evidence)


def test_qemu_from_dmi(tmp_path):
    dmi = tmp_path / "sys/class/dmi/id"
    dmi.mkdir(parents=True)
    (dmi / "sys_vendor").write_text("QEMU\n")
    (dmi / "product_name").write_text("Standard PC (Q35 + ICH9, 2009)\n")
    assert detect_virt(str(tmp_path)).virt == "qemu"


def test_aws_from_dmi(tmp_path):
    dmi = tmp_path / "sys/class/dmi/id"
    dmi.mkdir(parents=True)
    (dmi / "sys_vendor").write_text("Amazon EC2\n")
    assert detect_virt(str(tmp_path)).virt == "amazon"


def test_bare_metal(tmp_path):
    dmi = tmp_path / "sys/class/dmi/id"
    dmi.mkdir(parents=True)
    (dmi / "sys_vendor").write_text("Dell Inc.\n")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("flags\t\t: fpu vme lm\n")
    info = detect_virt(str(tmp_path))
    assert info.virt == "none" and not info.is_vm and info.evidence == []


def test_acpi_without_tables(tmp_path):
    assert acpi_vendor(str(tmp_path)) == ""


def test_machine_node_shape():
    n = machine_node("3d12", "a54c-boot", 123, VirtInfo(virt="kvm", hypervisor="kvm",
                                                        evidence=["cpuid:kvm"]))
    assert n.id == "machine:3d12" and n.kind == "machine" and n.start == 123
    assert n.attrs["virt"] == "kvm" and n.attrs["vm"] is True
    assert n.attrs["kernel"] == os.uname().release and n.attrs["boot_id"] == "a54c-boot"
    assert machine_node("", "bootid", 0, VirtInfo()).id == "machine:bootid"


def test_veth_pairs_across_namespaces():
    host = NetnsView(netns=100, pid=1, ifaces=[
        Iface("lo", 1), Iface("eth0", 2),
        Iface("veth1a2b", 7, kind="veth", link=2, addresses=["10.199.0.1/30"]),
        Iface("veth9z", 8, kind="veth", link=2)])
    ctr = NetnsView(netns=200, pid=5, container_id="web1", ifaces=[
        Iface("lo", 1), Iface("eth0", 2, kind="veth", link=7, addresses=["10.199.0.2/30"])])
    other = NetnsView(netns=300, pid=6, ifaces=[Iface("eth0", 2, kind="veth", link=8)])
    views = {100: host, 200: ctr, 300: other}
    link_veth_peers(views)
    assert ctr.ifaces[1].peer == (100, "veth1a2b") and host.ifaces[2].peer == (200, "eth0")
    assert host.ifaces[3].peer == (300, "eth0") and other.ifaces[0].peer == (100, "veth9z")
    assert ctr.addresses() == ["10.199.0.2"]
    assert ctr.to_dict()["ifaces"][1]["peer"] == [100, "veth1a2b"]
