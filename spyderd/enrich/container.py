"""Container id and runtime from a process's cgroup paths."""

from __future__ import annotations

import re

_PATTERNS = [
    (re.compile(r"docker-([0-9a-f]{64})\.scope"), "docker"),
    (re.compile(r"/docker/([0-9a-f]{64})"), "docker"),
    (re.compile(r"cri-containerd-([0-9a-f]{64})\.scope"), "containerd"),
    (re.compile(r"crio-([0-9a-f]{64})\.scope"), "cri-o"),
    (re.compile(r"libpod-([0-9a-f]{64})\.scope"), "podman"),
    (re.compile(r"/kubepods[^\s]*/([0-9a-f]{64})$"), "containerd"),
    (re.compile(r"/lxc(?:\.payload)?[./]([^/\s]+)"), "lxc"),
    (re.compile(r"machine\.slice/(?:machine-|systemd-nspawn@)([^/\s]+?)(?:\.scope|\.service)"),
     "nspawn"),
]


def container_from_cgroup(text: str) -> tuple[str, str]:
    """(container id, runtime) from /proc/<pid>/cgroup text; ("", "") on the host."""
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        for rx, runtime in _PATTERNS:
            m = rx.search(path)
            if m:
                return m.group(1), runtime
    return "", ""
