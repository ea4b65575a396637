"""Context the enricher keeps per container, session and VM, with their graph nodes."""

from __future__ import annotations

from dataclasses import dataclass, field

from spyderd.enrich.runtimes import ContainerInfo
from spyderd.model import Node

MAX_LABELS = 64
MAX_LABEL_LEN = 256


@dataclass(slots=True)
class ContainerCtx:
    """One container: what its runtime says, its node, and how to tell when it ended."""

    info: ContainerInfo
    node: Node
    cgroup_path: str = ""
    root_start_ticks: int = 0
    root_node: Node | None = None  # latest image of the root process, if seen
    last_resolve: float = 0.0  # monotonic time of the last state-file read

    def attrs(self) -> dict:
        """The container_* / k8s_* attributes every process in it carries."""
        i = self.info
        return {"container_id": i.id, "container_name": i.name, "container_image": i.image,
                "container_runtime": i.runtime, "k8s_pod": i.k8s_pod,
                "k8s_namespace": i.k8s_namespace, "k8s_pod_uid": i.k8s_pod_uid,
                "k8s_container": i.k8s_container}

    def refresh_node(self) -> bool:
        """Copy `info` into the node; True if anything changed.

        The node uses the process attribute names (container_id, container_name, ...),
        not bare id/name/image: `Node.to_dict` merges attrs over the core fields, and a
        trace view computes its own `name`, so bare names would be shadowed or shadow.
        """
        i = self.info
        labels = {k[:MAX_LABEL_LEN]: v[:MAX_LABEL_LEN]
                  for k, v in list(i.labels.items())[:MAX_LABELS]}
        new = {**self.attrs(), "root_pid": i.root_pid, "bundle": i.bundle,
               "cgroup": self.cgroup_path, "labels": labels, "resolved": i.resolved}
        changed = any(self.node.attrs.get(k) != v for k, v in new.items())
        self.node.attrs.update(new)
        return changed


def container_node(info: ContainerInfo, start: int, machine_id: str) -> Node:
    return Node(id=f"container:{info.id}", kind="container", start=start,
                attrs={"machine_id": machine_id, "ips": [], "veth": [], "pidns": -1,
                       "netns": -1})


@dataclass(slots=True)
class SessionCtx:
    node: Node


@dataclass(slots=True)
class VmCtx:
    node: Node
    pid: int
    start_ticks: int
    first_seen: float = 0.0  # monotonic; taps are looked for during a while after start
    taps_from_fds: bool = False
    extra: dict = field(default_factory=dict)
