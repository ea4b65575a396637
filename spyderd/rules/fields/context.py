"""Context fields: the user, group, container, Kubernetes pod, session and machine.

`user.*`, `group.*`, `container.*`, `k8s.*` read enrichment attributes of the image's node;
`session.*` the session node (`ctx.session(node)`), else the image's own copy of the
attribute; `machine.*` the machine node (`ctx.machine(node)`).
"""

from __future__ import annotations

from spyderd.rules.fields.base import (
    ALL_KINDS,
    Field,
    attr,
    bool_attr,
    exec_attr,
    id_attr,
    node_field,
)
from spyderd.rules.fields.process import tty


def context_fields() -> list[Field]:
    f = node_field
    return [
        Field(
            "user.uid",
            "int",
            ALL_KINDS,
            "Uid of the event, else of the image.",
            lambda ev, node: ev.uid if ev is not None else node.uid,
        ),
        f("user.name", "str", "User name of the image's uid.", attr("user")),
        f(
            "user.loginuid",
            "int",
            "Audit login uid (same as process.loginuid).",
            exec_attr("loginuid", -1),
        ),
        f("group.name", "str", "Group name of the image's gid.", attr("group")),
        f("container.id", "str", "Container id; missing on the host.", attr("container_id")),
        f("container.name", "str", "Container name.", attr("container_name")),
        f("container.image", "str", "Container image reference.", attr("container_image")),
        f(
            "container.runtime",
            "str",
            "Container runtime: docker, containerd, cri-o, podman, lxc, nspawn, runc ...",
            attr("container_runtime"),
        ),
        f("k8s.pod", "str", "Kubernetes pod name.", attr("k8s_pod")),
        f("k8s.namespace", "str", "Kubernetes namespace.", attr("k8s_namespace")),
        f("k8s.pod_uid", "str", "Kubernetes pod uid.", attr("k8s_pod_uid")),
        f("k8s.container", "str", "Kubernetes container name.", attr("k8s_container")),
        f(
            "session.id",
            "str",
            "Graph id of the session node.",
            lambda ev, node: node.id if node.kind == "session" else None,
            hop="session",
        ),
        f(
            "session.interactive",
            "bool",
            "True for a session with a terminal (a login).",
            bool_attr("interactive"),
            hop="session",
        ),
        f("session.tty", "str", "The session's terminal.", tty, hop="session"),
        f("session.user", "str", "User name of the session's login.", attr("user"), hop="session"),
        f(
            "session.loginuid",
            "int",
            "Audit login uid of the session.",
            id_attr("loginuid"),
            hop="session",
        ),
        f("machine.id", "str", "Machine id (/etc/machine-id).", attr("machine_id")),
        f("machine.hostname", "str", "Host name.", attr("hostname"), hop="machine"),
        f(
            "machine.virt",
            "str",
            "Virtualization: kvm, xen, vmware, none ...",
            attr("virt"),
            hop="machine",
        ),
        f("machine.vm", "bool", "True on a virtual machine.", bool_attr("vm"), hop="machine"),
        f(
            "machine.container",
            "str",
            "Container spyderd itself runs in; missing on a host.",
            attr("container"),
            hop="machine",
        ),
        f("machine.kernel", "str", "Kernel release.", attr("kernel"), hop="machine"),
    ]
