"""Container id, runtime and Kubernetes pod from a process's cgroup paths (pure parsing).

Each runtime names the cgroup of a container its own way, under cgroupfs or the systemd
driver, on cgroup v1 (one path per controller) and v2 (one path):

| runtime                   | cgroup path (examples)                                            |
|---------------------------|-------------------------------------------------------------------|
| Docker / moby             | /docker/<id>, /system.slice/docker-<id>.scope                    |
| containerd (CRI)          | .../kubepods-...-pod<uid>.slice/cri-containerd-<id>.scope         |
| containerd (nerdctl)      | /system.slice/nerdctl-<id>.scope, /default/<id> (ctr: /<ns>/<id>) |
| CRI-O                     | .../crio-<id>.scope, /kubepods/<qos>/pod<uid>/crio-<id>           |
| Podman / libpod           | /machine.slice/libpod-<id>.scope, /libpod_parent/libpod-<id>      |
| Kubernetes, any runtime   | /kubepods/<qos>/pod<uid>/<id>, kubepods-<qos>-pod<uid_>.slice     |
| LXC / LXD                 | /lxc.payload.<name>, /lxc/<name>, /lxc.payload/<name>             |
| systemd-nspawn            | /machine.slice/systemd-nspawn@<name>.service, machine-<name>.scope|
| runc / crun used directly | whatever `cgroupsPath` says (default /<id>): found via state files|

Runtime helpers that are not the container (conmon, the LXC monitor, libvirt's qemu
scopes) are recognised and left out. An empty runtime in a `CgroupRef` means "some
runtime under Kubernetes": the on-disk state decides which (see `runtimes`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spyderd.enrich.cgroups import distinct_paths

_HEX64 = r"[0-9a-f]{64}"
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_POD = re.compile(rf"pod({_UID})")
_QOS = re.compile(r"kubepods[-/.](besteffort|burstable)")

# Helpers that live next to a container but are not in it.
_NOT_CONTAINER = re.compile(r"(?:libpod-conmon-|crio-conmon-|lxc\.monitor|/lxc\.monitor"
                            r"|machine-qemu|machine-libvirt)")

# (pattern, runtime); the first group is the container id or name. Most specific first.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"(?:^|/)docker-({_HEX64})\.scope"), "docker"),
    (re.compile(rf"(?:^|/)docker/({_HEX64})(?:/|$)"), "docker"),
    (re.compile(rf"(?:^|/)cri-containerd-({_HEX64})\.scope"), "containerd"),
    (re.compile(rf"(?:^|/)nerdctl-({_HEX64})\.scope"), "containerd"),
    (re.compile(rf"(?:^|/)crio-({_HEX64})(?:\.scope)?(?:/|$)"), "cri-o"),
    (re.compile(rf"(?:^|/)libpod-({_HEX64})(?:\.scope)?(?:/|$)"), "podman"),
    (re.compile(rf"/kubepods[^\s]*/({_HEX64})(?:/|$)"), ""),
    (re.compile(r"(?:^|/)lxc\.payload[./]([^/\s]+)"), "lxc"),
    (re.compile(r"^/lxc/([^/\s]+)"), "lxc"),
    (re.compile(r"(?:^|/)machine\.slice/systemd-nspawn@([^/\s]+?)\.service"), "nspawn"),
    (re.compile(r"(?:^|/)machine\.slice/machine-([^/\s]+?)\.scope"), "nspawn"),
]


@dataclass(frozen=True, slots=True)
class CgroupRef:
    """What a cgroup path tells about a container, before any state file is read."""

    id: str
    runtime: str  # "" = under Kubernetes, runtime not named by the path
    path: str  # the cgroup path that matched
    pod_uid: str = ""
    qos: str = ""


def unescape_unit(name: str) -> str:
    r"""systemd unit-name escaping: `\x2d` is '-', other `\xNN` likewise."""
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), name)


def match_path(path: str) -> CgroupRef | None:
    """The container a single cgroup path belongs to, if its name says so."""
    if _NOT_CONTAINER.search(path):
        return None
    for rx, runtime in _PATTERNS:
        m = rx.search(path)
        if not m:
            continue
        ident = m.group(1)
        if runtime == "nspawn":
            ident = unescape_unit(ident)
            if ident.startswith(("qemu-", "lxc-")):
                if ident.startswith("qemu-"):
                    return None  # libvirt VM scope: the monitor becomes a VM node instead
                runtime, ident = "lxc", ident.split("-", 2)[-1]
        pod = _POD.search(path)
        qos = _QOS.search(path)
        return CgroupRef(
            id=ident, runtime=runtime, path=path,
            pod_uid=pod.group(1).replace("_", "-") if pod else "",
            qos=(qos.group(1) if qos else ("guaranteed" if "kubepods" in path else "")))
    return None


def cgroup_container(text: str) -> CgroupRef | None:
    """The container of a process from its /proc/<pid>/cgroup text; None on the host."""
    for path in distinct_paths(text):
        ref = match_path(path)
        if ref is not None:
            return ref
    return None


def container_from_cgroup(text: str) -> tuple[str, str]:
    """(container id, runtime) from /proc/<pid>/cgroup text; ("", "") on the host."""
    ref = cgroup_container(text)
    return (ref.id, ref.runtime) if ref else ("", "")
