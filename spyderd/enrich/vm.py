"""VM monitor processes (qemu, firecracker, cloud-hypervisor, crosvm, VirtualBox, kvmtool).

Such a process becomes a `vm` node named from its command line: qemu `-name`/`-uuid`,
firecracker `--id`, VirtualBox `--startvm`, kvmtool `--name`; taps from `-netdev
tap,ifname=`, `--net tap=`, `--tap-name`, and later from the tun fds the monitor opened
(/proc/<pid>/fdinfo shows `iff:` for them), since taps are often opened after exec.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

MONITORS = {"firecracker": "firecracker", "cloud-hypervisor": "cloud-hypervisor",
            "crosvm": "crosvm", "VBoxHeadless": "virtualbox", "VirtualBoxVM": "virtualbox",
            "VBoxSDL": "virtualbox", "lkvm": "kvmtool", "qemu-kvm": "qemu"}


@dataclass(slots=True)
class VmInfo:
    monitor: str  # qemu, firecracker, ...
    name: str = ""
    uuid: str = ""
    taps: list[str] = field(default_factory=list)
    config: str = ""  # firecracker --config-file


def monitor_kind(exe: str, args: list[str]) -> str:
    base = (exe or (args[0] if args else "")).rsplit("/", 1)[-1]
    if base.startswith("qemu-system-"):
        return "qemu"
    return MONITORS.get(base, "")


def _opt(args: list[str], *names: str) -> list[str]:
    """Values of `-x v`, `--x v` and `--x=v` options, in order."""
    out = []
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                out.append(args[i + 1])
            elif a.startswith(n + "="):
                out.append(a[len(n) + 1:])
    return out


def _kv(spec: str) -> dict[str, str]:
    """qemu-style `a,b=c,d=e` (first bare word under key "")."""
    out: dict[str, str] = {}
    for i, part in enumerate(spec.split(",")):
        k, sep, v = part.partition("=")
        if sep:
            out[k] = v
        elif i == 0:
            out[""] = k
    return out


def parse_monitor(exe: str, args: list[str]) -> VmInfo | None:
    """VM identity from a monitor's command line; None if it is not a VM monitor."""
    kind = monitor_kind(exe, args)
    if not kind:
        return None
    vm = VmInfo(monitor=kind)
    if kind == "qemu":
        for v in _opt(args, "-name", "--name"):
            kv = _kv(v)
            vm.name = kv.get("guest") or kv.get("") or vm.name
        vm.uuid = next(iter(_opt(args, "-uuid", "--uuid")), "")
        for v in _opt(args, "-netdev", "-net", "-nic"):
            kv = _kv(v)
            if kv.get("") == "tap" and kv.get("ifname"):
                vm.taps.append(kv["ifname"])
    elif kind == "firecracker":
        vm.name = next(iter(_opt(args, "--id")), "")
        vm.config = next(iter(_opt(args, "--config-file")), "")
    elif kind == "cloud-hypervisor":
        for v in _opt(args, "--net"):
            tap = _kv(v).get("tap")
            if tap:
                vm.taps.append(tap)
        api = next(iter(_opt(args, "--api-socket")), "")
        vm.name = os.path.basename(_kv(api).get("path") or _kv(api).get("") or "")
    elif kind == "crosvm":
        vm.taps += _opt(args, "--tap-name")
        for v in _opt(args, "--net"):
            tap = _kv(v).get("tap-name")
            if tap:
                vm.taps.append(tap)
        vm.name = os.path.basename(next(iter(_opt(args, "--socket", "-s")), ""))
    elif kind == "virtualbox":
        vm.name = next(iter(_opt(args, "--startvm", "-startvm", "-s")), "")
    elif kind == "kvmtool":
        vm.name = next(iter(_opt(args, "--name", "-n")), "")
        for v in _opt(args, "--network", "-n"):
            kv = _kv(v)
            if kv.get("tapif"):
                vm.taps.append(kv["tapif"])
    if re.fullmatch(r"[0-9a-fA-F-]{36}", vm.name or "") and not vm.uuid:
        vm.uuid = vm.name
    return vm


def firecracker_taps(config_text: str) -> list[str]:
    """host_dev_name of each network interface in a firecracker --config-file."""
    try:
        cfg = json.loads(config_text)
    except ValueError:
        return []
    return [str(n["host_dev_name"]) for n in cfg.get("network-interfaces") or []
            if isinstance(n, dict) and n.get("host_dev_name")]


def tun_interfaces(pid: int, proc: str = "/proc") -> list[str]:
    """Interfaces behind the process's /dev/net/tun fds (fdinfo `iff:` lines)."""
    out: list[str] = []
    try:
        fds = os.listdir(f"{proc}/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            if os.readlink(f"{proc}/{pid}/fd/{fd}") != "/dev/net/tun":
                continue
            with open(f"{proc}/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("iff:"):
                        name = line.split(":", 1)[1].strip()
                        if name and name not in out:
                            out.append(name)
        except OSError:
            continue
    return out
