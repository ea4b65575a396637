"""The machine this runs on: a VM (Firecracker/KVM here), never `docker`."""

from __future__ import annotations

import os

import pytest

from spyderd.enrich import Enricher
from spyderd.enrich.machine import acpi_vendor, cpuid_vendor, detect_virt

pytestmark = pytest.mark.root  # /dev/cpu/0/cpuid and the ACPI tables are root-only


def test_this_machine_is_a_vm_not_a_container():
    info = detect_virt("/")
    assert info.is_vm and info.virt not in ("docker", "none"), info
    assert info.container == "", info  # spyderd is not inside a container here
    if acpi_vendor("/") == "firecracker":  # Firecracker's ACPI tables say FIRECK
        assert info.virt == "firecracker" and info.hypervisor == "kvm"
        assert cpuid_vendor("/") == "kvm"


def test_enricher_machine_node():
    enr = Enricher("b00t", "", boot_wall_ns=7)
    m = enr.machine
    assert m.kind == "machine" and m.id == f"machine:{m.attrs['boot_id']}"
    assert m.attrs["virt"] == detect_virt("/").virt and m.attrs["vm"] is True
    assert m.attrs["hostname"] == os.uname().nodename
    assert m.attrs["kernel"] == os.uname().release and m.start == 7
