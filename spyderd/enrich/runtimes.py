"""Container names, images and Kubernetes metadata from each runtime's on-disk state.

No runtime API socket is called: every runtime listed keeps what spyderd needs in small
local files (tmpfs under /run, or the runtime's data root), which read in well under a
millisecond, so a container is resolved synchronously the first time it is seen and the
result is cached. `fs_root` lets tests point every path at a recorded fixture tree.

| runtime      | files read                                                                |
|--------------|---------------------------------------------------------------------------|
| docker       | <data-root>/containers/<id>/config.v2.json (data-root from daemon.json)   |
| containerd   | /run/containerd/io.containerd.runtime.v2.task/<ns>/<id>/config.json (+ v1)|
| cri-o        | {/run,/var/lib}/containers/storage/overlay-containers/<id>/userdata/config.json |
| podman       | the same userdata/config.json + overlay-containers/containers.json (names)|
| runc / crun  | <root>/<id>/state.json (runc), <root>/<id>/status + config.json (crun)    |
| lxc / lxd    | /var/lib/lxc/<name>/config; LXD's containers/<name>/backup.yaml           |
| nspawn       | /run/systemd/machines/<name>                                               |
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

MAX_STATE_BYTES = 4 << 20

NAME_KEYS = ("io.kubernetes.cri.container-name", "io.kubernetes.container.name",
             "nerdctl/name", "name")
IMAGE_KEYS = ("io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName",
              "nerdctl/image", "org.opencontainers.image.ref.name", "image")
POD_KEYS = ("io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name")
NAMESPACE_KEYS = ("io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace")
POD_UID_KEYS = ("io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid")
K8S_CONTAINER_KEYS = ("io.kubernetes.cri.container-name", "io.kubernetes.container.name")
SANDBOX_MARKERS = (("io.kubernetes.cri.container-type", "sandbox"),
                   ("io.kubernetes.cri-o.ContainerType", "sandbox"),
                   ("io.kubernetes.docker.type", "podsandbox"))


@dataclass(slots=True)
class ContainerInfo:
    """A container as far as its runtime's files describe it; "" / -1 / 0 when unknown."""

    id: str
    runtime: str
    name: str = ""
    image: str = ""
    k8s_pod: str = ""
    k8s_namespace: str = ""
    k8s_pod_uid: str = ""
    k8s_container: str = ""
    root_pid: int = -1
    created: int = 0  # wall ns
    bundle: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    resolved: bool = False  # a state file was found and read

    def apply_annotations(self, ann: Any) -> None:
        """Names, image and Kubernetes fields from OCI annotations or runtime labels
        (anything but a mapping, as a broken or hostile file may hold, counts as none)."""
        ann = {str(k): str(v) for k, v in _map(ann).items()}
        self.labels.update(ann)
        self.name = self.name or _first(ann, NAME_KEYS)
        self.image = self.image or _first(ann, IMAGE_KEYS)
        self.k8s_pod = self.k8s_pod or _first(ann, POD_KEYS)
        self.k8s_namespace = self.k8s_namespace or _first(ann, NAMESPACE_KEYS)
        self.k8s_pod_uid = self.k8s_pod_uid or _first(ann, POD_UID_KEYS)
        self.k8s_container = self.k8s_container or _first(ann, K8S_CONTAINER_KEYS)
        if any(ann.get(k) == v for k, v in SANDBOX_MARKERS):
            self.k8s_container = ""
            self.name = self.name if self.name and self.name != self.k8s_pod else "POD"


def _first(d: dict[str, Any], keys: tuple[str, ...]) -> str:
    for k in keys:
        v = d.get(k)
        if v:
            return str(v)
    return ""


def _map(v: Any) -> dict:
    """A JSON object from a state file, or {} when the file holds something else there."""
    return v if isinstance(v, dict) else {}


def _pid(v: Any) -> int:
    """A pid from a state file: -1 unless it is a sane positive integer."""
    try:
        n = int(v) if isinstance(v, int | str) and not isinstance(v, bool) else -1
    except ValueError:
        return -1
    return n if 0 < n < 1 << 22 else -1


def parse_time(text: Any) -> int:
    """RFC 3339 with up to nanoseconds (Go's format) to wall ns; 0 if unparseable."""
    if not isinstance(text, str) or not text or text.startswith("0001-"):
        return 0
    s = text.strip().replace("Z", "+00:00")
    frac = 0
    if "." in s:
        head, rest = s.split(".", 1)
        n = 0
        while n < len(rest) and rest[n].isdigit():
            n += 1
        digits, tz = rest[:n], rest[n:]
        frac = int((digits + "000000000")[:9])
        s = head + tz
    try:
        return int(datetime.fromisoformat(s).timestamp()) * 1_000_000_000 + frac
    except (ValueError, OverflowError):
        return 0


class StateReader:
    """Reads runtime state files below `fs_root`; counts the ones it could not parse."""

    def __init__(self, fs_root: str = "/") -> None:
        self.root = Path(fs_root)
        self.errors: dict[str, int] = {}
        self.last_error = ""

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def json(self, p: Path) -> Any:
        """Parsed JSON, or None if missing; a present but broken file is counted."""
        try:
            if p.stat().st_size > MAX_STATE_BYTES:
                self._error(p, "too large")
                return None
            return json.loads(p.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self._error(p, str(exc))
            return None

    def text(self, p: Path) -> str | None:
        try:
            return p.read_text(errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._error(p, str(exc))
            return None

    def _error(self, p: Path, msg: str) -> None:
        key = str(p.parent.name)
        self.errors[key] = self.errors.get(key, 0) + 1
        self.last_error = f"{p}: {msg}"

    # -- per runtime ------------------------------------------------------------------------

    def docker(self, cid: str) -> ContainerInfo | None:
        data_root = "/var/lib/docker"
        conf = self.json(self.path("/etc/docker/daemon.json"))
        if isinstance(conf, dict) and conf.get("data-root"):
            data_root = str(conf["data-root"])
        d = self.json(self.path(f"{data_root}/containers/{cid}/config.v2.json"))
        if not isinstance(d, dict):
            return None
        cfg = _map(d.get("Config"))
        state = _map(d.get("State"))
        info = ContainerInfo(id=cid, runtime="docker", resolved=True,
                             name=str(d.get("Name", "")).lstrip("/"),
                             image=str(cfg.get("Image", "")),
                             root_pid=_pid(state.get("Pid")),
                             created=parse_time(state.get("StartedAt") or d.get("Created", "")))
        labels = _map(cfg.get("Labels"))
        if labels.get("io.kubernetes.container.name"):
            info.name = ""  # dockershim's k8s_<c>_<pod>_... name: use the Kubernetes one
        info.apply_annotations(labels)
        return info

    def containerd(self, cid: str) -> ContainerInfo | None:
        for base in ("/run/containerd/io.containerd.runtime.v2.task",
                     "/run/containerd/io.containerd.runtime.v1.linux"):
            top = self.path(base)
            try:
                namespaces = sorted(os.listdir(top))
            except OSError:
                continue
            for ns in namespaces:
                bundle = top / ns / cid
                spec = self.json(bundle / "config.json")
                if not isinstance(spec, dict):
                    continue
                info = ContainerInfo(id=cid, runtime="containerd", resolved=True,
                                     bundle=str(bundle))
                info.labels["containerd.namespace"] = ns
                info.apply_annotations(spec.get("annotations"))
                info.root_pid = _int_file(self.text(bundle / "init.pid"))
                return info
        return None

    def containers_storage(self, cid: str, runtime: str) -> ContainerInfo | None:
        """CRI-O and Podman share containers/storage: userdata/config.json per container."""
        info = None
        for base in ("/run/containers/storage/overlay-containers",
                     "/var/lib/containers/storage/overlay-containers"):
            ud = self.path(base) / cid / "userdata"
            spec = self.json(ud / "config.json")
            if isinstance(spec, dict):
                info = ContainerInfo(id=cid, runtime=runtime, resolved=True, bundle=str(ud))
                info.apply_annotations(spec.get("annotations"))
                info.root_pid = _int_file(self.text(ud / "pidfile"))
                break
        listing = self.json(self.path("/var/lib/containers/storage/overlay-containers/"
                                      "containers.json"))
        for entry in listing if isinstance(listing, list) else []:
            if isinstance(entry, dict) and entry.get("id") == cid:
                info = info or ContainerInfo(id=cid, runtime=runtime, resolved=True)
                self._storage_entry(info, entry)
                break
        return info

    def _storage_entry(self, info: ContainerInfo, entry: dict) -> None:
        names = entry.get("names")
        names = names if isinstance(names, list) else []
        meta: Any = {}
        try:
            meta = json.loads(str(entry.get("metadata") or "{}"))
        except ValueError:
            pass
        meta = _map(meta)
        if not info.name and names and not info.k8s_container:
            info.name = str(names[0])
        info.image = info.image or str(meta.get("image-name", ""))
        info.created = info.created or parse_time(entry.get("created", ""))

    def oci_state(self, runtime: str, state_dir: Path) -> ContainerInfo | None:
        """runc's state.json, or crun's status (+ its copy of config.json)."""
        if runtime == "crun":
            st = self.json(state_dir / "status")
            if not isinstance(st, dict):
                return None
            info = ContainerInfo(id=state_dir.name, runtime=runtime, resolved=True,
                                 root_pid=_pid(st.get("pid")),
                                 created=parse_time(st.get("created", "")),
                                 bundle=str(st.get("bundle", "")))
            spec = self.json(state_dir / "config.json")
            if not isinstance(spec, dict) and info.bundle:
                spec = self.json(self.path(info.bundle) / "config.json")
            info.apply_annotations(_map(spec).get("annotations"))
            return info
        st = self.json(state_dir / "state.json")
        if not isinstance(st, dict):
            return None
        info = ContainerInfo(id=str(st.get("id") or state_dir.name), runtime=runtime,
                             resolved=True, root_pid=_pid(st.get("init_process_pid")),
                             created=parse_time(st.get("created", "")))
        ann: dict[str, str] = {}
        labels = _map(st.get("config")).get("labels")
        for label in labels if isinstance(labels, list) else []:
            k, _, v = str(label).partition("=")
            ann[k] = v
        info.bundle = ann.pop("bundle", "")
        if info.bundle:
            spec = self.json(self.path(info.bundle) / "config.json")
            if isinstance(spec, dict):
                ann = {**_map(spec.get("annotations")), **ann}
        info.apply_annotations(ann)
        return info

    def lxc(self, name: str) -> ContainerInfo | None:
        project, _, short = name.rpartition("_")
        for base in ("/var/snap/lxd/common/lxd/containers", "/var/lib/lxd/containers",
                     "/var/lib/incus/containers"):
            for cand in (name, short):
                text = self.text(self.path(base) / cand / "backup.yaml")
                if text is not None:
                    info = ContainerInfo(id=name, runtime="lxd", name=short, resolved=True)
                    _lxd_backup(info, text)
                    if project:
                        info.labels["lxd.project"] = project
                    return info
        text = self.text(self.path("/var/lib/lxc") / name / "config")
        if text is None:
            return None
        info = ContainerInfo(id=name, runtime="lxc", name=name, resolved=True)
        for line in text.splitlines():
            key, _, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if key in ("lxc.uts.name", "lxc.utsname"):
                info.labels["hostname"] = value
            elif key in ("lxc.rootfs.path", "lxc.rootfs"):
                info.image = value
        return info

    def nspawn(self, name: str) -> ContainerInfo | None:
        text = self.text(self.path("/run/systemd/machines") / name)
        if text is None:
            return None
        kv = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        if kv.get("CLASS", "container") != "container":
            return None
        info = ContainerInfo(id=name, runtime="nspawn", name=kv.get("NAME", name),
                             image=kv.get("ROOT", ""), resolved=True,
                             root_pid=_int_file(kv.get("LEADER")))
        if kv.get("REALTIME", "").isdigit():
            info.created = int(kv["REALTIME"]) * 1000  # usec since the epoch
        info.labels.update({k.lower(): v for k, v in kv.items()
                            if k in ("SERVICE", "SCOPE", "ID")})
        return info


def _lxd_backup(info: ContainerInfo, text: str) -> None:
    """Image description and base image from LXD's backup.yaml (container.config map)."""
    try:
        import yaml

        doc = yaml.safe_load(text) or {}
    except Exception:  # noqa: BLE001 - a broken backup.yaml only loses the image name
        return
    inst = _map(_map(doc).get("container") or _map(doc).get("instance"))
    cfg = _map(inst.get("config"))
    info.image = str(cfg.get("image.description") or cfg.get("volatile.base_image") or "")
    created = inst.get("created_at")
    info.created = parse_time(str(created)) if created else 0


def _int_file(text: str | None) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        return -1
