"""Names, images and Kubernetes metadata from recorded runtime state files, every runtime."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from spyderd.enrich.cgroups import cgroup_mounts
from spyderd.enrich.runtimes import ContainerInfo, StateReader, parse_time
from spyderd.enrich.state_index import StateIndex

FIX = Path(__file__).parent / "fixtures"
ROOT = FIX / "root"
DOCKER = "f31f384749f9115acf01fcf82f5a966b59dcc0a4cbd7c9740888c0bf32aa2bbb"
SHIM = "10331f84d4810bb44ec103310d55569355f57f8fb9f175d91c35d70b168eee4d"
CRI = "eee199f52b2c32751c5db282ba17d8eb0b932f4f8a7f41edb55c7256f827392d"
SANDBOX = "e08f27c78966e257ff7318edddf12f9d4480cb94e7c6e2714341ddd165e937fd"
NERD = "28991f231417b0cc76231b4a0e5aabed59c0c9cbcd2b5096c17e8a1f215a1515"
CRIO = "b495dd2c99ff39b1eeca5565edf0281990ea9c7d80c082c785989225ecaf6ce3"
PODMAN = "cc68e1d9877507693f2627038a9947317d784e78728a2cdc290274f23414b7e0"
UID_SHOP = "c89b1952-3898-5b65-9aad-f3c2dd5ef24f"
UID_PAY = "6a1d3266-fdda-5adc-8b3a-f345db2871c2"
UID_BILL = "2d77494c-01c3-5374-9240-dc0a3359a0c4"


@pytest.fixture
def reader() -> StateReader:
    return StateReader(str(ROOT))


def test_docker_config_v2(reader):
    info = reader.docker(DOCKER)
    assert info is not None and info.resolved
    assert (info.runtime, info.name, info.image) == ("docker", "shop-web-1", "nginx:1.25")
    assert info.root_pid == 48213
    assert info.created == parse_time("2024-05-14T09:12:33.418265932Z")
    assert info.labels["com.docker.compose.service"] == "web"
    assert info.k8s_pod == ""


def test_docker_under_kubernetes_uses_pod_labels(reader):
    info = reader.docker(SHIM)
    assert (info.k8s_pod, info.k8s_namespace, info.k8s_pod_uid, info.k8s_container) == (
        "app-6d9f8b7c5-x2kqp", "billing", UID_BILL, "app")
    assert info.name == "app"  # not dockershim's k8s_app_app-6d9f..._0
    assert info.image.startswith("registry.example.com/app@sha256:")


def test_docker_data_root_from_daemon_json(tmp_path):
    shutil.copytree(ROOT / "var/lib/docker", tmp_path / "srv/docker")
    (tmp_path / "etc/docker").mkdir(parents=True)
    (tmp_path / "etc/docker/daemon.json").write_text(json.dumps({"data-root": "/srv/docker"}))
    info = StateReader(str(tmp_path)).docker(DOCKER)
    assert info is not None and info.name == "shop-web-1"


def test_containerd_cri_container(reader):
    info = reader.containerd(CRI)
    assert info is not None and info.runtime == "containerd"
    assert (info.k8s_pod, info.k8s_namespace, info.k8s_pod_uid, info.k8s_container) == (
        "frontend-7f9c6d5b4-qwz8p", "shop", UID_SHOP, "frontend")
    assert info.name == "frontend"
    assert info.image == "registry.example.com/shop/frontend:2.4.1"
    assert info.root_pid == 30377
    assert info.labels["containerd.namespace"] == "k8s.io"


def test_containerd_cri_sandbox_is_the_pod_not_a_container(reader):
    info = reader.containerd(SANDBOX)
    assert info.k8s_pod == "frontend-7f9c6d5b4-qwz8p" and info.k8s_container == ""
    assert info.name == "POD" and info.root_pid == 30211


def test_containerd_plain_nerdctl(reader):
    info = reader.containerd(NERD)
    assert (info.name, info.image, info.root_pid) == ("cache", "docker.io/library/redis:7.2",
                                                      9120)
    assert info.labels["containerd.namespace"] == "default" and info.k8s_pod == ""


def test_crio(reader):
    info = reader.containers_storage(CRIO, "cri-o")
    assert info is not None and info.runtime == "cri-o"
    assert (info.k8s_pod, info.k8s_namespace, info.k8s_pod_uid, info.k8s_container) == (
        "api-5c4d9f8b6-lm2vn", "payments", UID_PAY, "api")
    assert info.name == "api" and info.image == "quay.io/example/api:v3.2.0"
    assert info.root_pid == 55210


def test_podman(reader):
    info = reader.containers_storage(PODMAN, "podman")
    assert info is not None and info.runtime == "podman"
    assert (info.name, info.image) == ("pg-main", "docker.io/library/postgres:16")
    assert info.created == parse_time("2024-05-14T09:46:40.5Z")
    assert info.labels["io.container.manager"] == "libpod"


def test_runc_state_recorded_on_this_machine(reader):
    info = reader.oci_state("runc", ROOT / "run/runc/web1")
    assert info is not None and info.id == "web1"
    assert (info.name, info.image) == ("web-7f9", "busybox:1.36-static")
    assert info.bundle == "/srv/bundles/web1"
    assert info.labels["org.example.team"] == "payments"
    assert info.root_pid > 0 and info.created > 0


def test_crun_status_and_config(reader):
    info = reader.oci_state("crun", ROOT / "run/crun/batch-42")
    assert (info.id, info.root_pid, info.name, info.image) == (
        "batch-42", 61234, "nightly-batch", "localhost/batch:2024.06")
    assert info.bundle == "/srv/bundles/batch-42"


def test_lxc_config(reader):
    info = reader.lxc("build01")
    assert (info.runtime, info.name, info.image) == ("lxc", "build01",
                                                     "dir:/var/lib/lxc/build01/rootfs")
    assert info.labels["hostname"] == "build01"


def test_lxd_backup_yaml_with_project(reader):
    info = reader.lxc("shop_web01")
    assert (info.runtime, info.name) == ("lxd", "web01")
    assert info.image == "Ubuntu jammy amd64 (20240501_07:42)"
    assert info.labels["lxd.project"] == "shop" and info.created > 0


def test_nspawn_machine_file(reader):
    info = reader.nspawn("debian12")
    assert (info.runtime, info.name, info.image, info.root_pid) == (
        "nspawn", "debian12", "/var/lib/machines/debian12", 20311)
    assert info.created == 1717243200123456000
    assert info.labels["service"] == "systemd-nspawn@debian12.service"


def test_unknown_ids_and_broken_files_are_counted_not_raised(tmp_path):
    r = StateReader(str(tmp_path))
    assert r.docker(DOCKER) is None and r.containerd(CRI) is None
    assert r.containers_storage(CRIO, "cri-o") is None and r.lxc("x") is None
    assert r.nspawn("x") is None
    bad = tmp_path / "var/lib/docker/containers" / DOCKER
    bad.mkdir(parents=True)
    (bad / "config.v2.json").write_text("{not json")
    assert r.docker(DOCKER) is None
    assert sum(r.errors.values()) == 1 and "config.v2.json" in r.last_error


def test_state_index_maps_cgroup_paths_to_runc_and_crun():
    mounts = cgroup_mounts((FIX / "mountinfo_hybrid").read_text())
    idx = StateIndex(str(ROOT), mounts)
    e = idx.lookup(["/web1"])
    assert e is not None and e.runtime == "runc" and e.state_dir.name == "web1"
    mem = "/process_api/7f92f12a1c19d58257dda330307811cc/web1"
    assert idx.lookup([mem]).state_dir.name == "web1"
    assert idx.lookup(["/batch-42"]).runtime == "crun"
    assert idx.lookup(["/system.slice/sshd.service"]) is None
    assert idx.find("web1", "runc") == ROOT / "run/runc/web1"


def test_state_index_sees_a_container_created_later(tmp_path):
    mounts = cgroup_mounts((FIX / "mountinfo_hybrid").read_text())
    idx = StateIndex(str(tmp_path), mounts)
    assert idx.lookup(["/web1"]) is None
    sd = tmp_path / "run/runc/web1"
    sd.mkdir(parents=True)  # runc makes the directory before it writes state.json
    early = idx.lookup(["/web1"])  # init already in its cgroup: matched by directory name
    assert early is not None and early.provisional and early.state_dir == sd
    assert idx.incomplete and not idx.state_ready("web1") and idx.find("web1") is None
    assert idx.lookup(["/other"]) is None
    shutil.copy(ROOT / "run/runc/web1/state.json", sd / "state.json")
    assert idx.state_ready("web1")
    full = idx.lookup(["/web1"])
    assert full.state_dir == sd and not full.provisional and not idx.incomplete
    assert idx.find("web1", "runc") == sd


def test_parse_time_forms():
    assert parse_time("2024-05-14T09:12:33Z") == 1715677953 * 10**9
    assert parse_time("2024-05-14T09:12:33.5+00:00") == 1715677953 * 10**9 + 500_000_000
    assert parse_time("0001-01-01T00:00:00Z") == 0 and parse_time("garbage") == 0


def test_annotations_do_not_override_runtime_names():
    info = ContainerInfo(id="x", runtime="docker", name="web")
    info.apply_annotations({"io.kubernetes.cri.container-name": "other", "image": "i:1"})
    assert (info.name, info.image) == ("web", "i:1")
