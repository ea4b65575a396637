"""Virtual machines the enricher has seen: a VM monitor process (qemu, firecracker, ...)
gives a vm node with its tap devices; the monitor's exit ends it."""

from __future__ import annotations

import time
from pathlib import Path

from spyderd.enrich import procfs
from spyderd.enrich.contexts import VmCtx
from spyderd.enrich.vm import firecracker_taps, parse_monitor, tun_interfaces
from spyderd.model import Node

VM_TAP_WATCH_S = 30.0


class VmTracker:
    """VM contexts by id; changed vm nodes go to the shared `changed`."""

    def __init__(self, *, boot: str, proc: str, machine_id: str, stats: dict[str, int],
                 changed: dict[str, Node]) -> None:
        self.boot = boot
        self.proc = proc
        self.machine_id = machine_id
        self.stats = stats
        self.changed = changed
        self.by_id: dict[str, VmCtx] = {}

    def of(self, node: Node, start_ticks: int) -> VmCtx | None:
        """The VM a monitor process runs, or None for any other program."""
        info = parse_monitor(node.attrs.get("exe", ""), node.attrs.get("args") or [])
        if info is None:
            return None
        if info.config:
            text = _read_text(info.config if info.config.startswith("/") else
                              f"{self.proc}/{node.pid}/cwd/{info.config}")
            info.taps += [t for t in firecracker_taps(text) if t not in info.taps]
        ident = (info.uuid or (f"{self.boot}:{info.monitor}:{info.name}" if info.name
                               else f"{self.boot}:{node.pid}:{start_ticks}"))
        vid = f"vm:{ident}"
        vm = self.by_id.get(vid)
        if vm is None:
            vnode = Node(id=vid, kind="vm", start=node.start, pid=node.pid,
                         attrs={"monitor": info.monitor, "vm_name": info.name,
                                "vm_uuid": info.uuid,
                                "taps": list(info.taps), "process_id": node.id,
                                "machine_id": self.machine_id})
            vm = VmCtx(node=vnode, pid=node.pid, start_ticks=start_ticks,
                       first_seen=time.monotonic())
            self.by_id[vid] = vm
            self.stats["vms"] += 1
        else:
            vm.node.end = 0
            vm.pid, vm.start_ticks = node.pid, start_ticks
            vm.node.attrs["process_id"] = node.id
            self.changed[vid] = vm.node
        return vm

    def check(self, now_ns: int) -> None:
        """From the daemon's tick: ended monitors, tap devices added after start."""
        for vm in self.by_id.values():
            self._check(vm, now_ns)

    def _check(self, vm: VmCtx, now_ns: int) -> None:
        if vm.node.end:
            return
        if not procfs.alive(vm.pid, vm.start_ticks, self.proc):
            vm.node.end = now_ns
            self.changed[vm.node.id] = vm.node
            return
        if time.monotonic() - vm.first_seen > VM_TAP_WATCH_S:
            return
        taps = vm.node.attrs["taps"]
        new = [t for t in tun_interfaces(vm.pid, self.proc) if t not in taps]
        if new:
            taps.extend(new)
            self.changed[vm.node.id] = vm.node


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""
