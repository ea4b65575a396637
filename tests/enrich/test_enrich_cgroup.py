"""Container ids and runtimes from recorded /proc/<pid>/cgroup text, every runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spyderd.enrich.cgroups import (
    CgroupIdIndex,
    cgroup_mounts,
    distinct_paths,
    parse_cgroup,
    relative_path,
)
from spyderd.enrich.container import cgroup_container, container_from_cgroup, unescape_unit

FIX = Path(__file__).parent / "fixtures"
EXPECTED = json.loads((FIX / "cgroup/expected.json").read_text())


def test_every_fixture_has_an_expectation():
    files = {p.name for p in (FIX / "cgroup").glob("*.cgroup")}
    assert files == set(EXPECTED)
    runtimes = {v["runtime"] for v in EXPECTED.values() if v}
    assert {"docker", "containerd", "cri-o", "podman", "lxc", "nspawn", ""} <= runtimes


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cgroup_fixture(name):
    ref = cgroup_container((FIX / "cgroup" / name).read_text())
    want = EXPECTED[name]
    if want is None:
        assert ref is None, ref
        return
    assert ref is not None, name
    assert (ref.id, ref.runtime) == (want["id"], want["runtime"])
    assert ref.pod_uid == want.get("pod_uid", "")
    assert ref.qos == want.get("qos", "")
    assert ref.path in (FIX / "cgroup" / name).read_text()


def test_tuple_form_kept_for_callers():
    text = (FIX / "cgroup/docker_v2_systemd.cgroup").read_text()
    cid, runtime = container_from_cgroup(text)
    assert runtime == "docker" and len(cid) == 64
    assert container_from_cgroup("0::/\n") == ("", "")


def test_parse_cgroup_lines_and_paths():
    text = (FIX / "cgroup/runc_direct_hybrid.cgroup").read_text()
    lines = parse_cgroup(text + "garbage\n")
    assert len(lines) == 10
    assert lines[-1].hierarchy == 0 and lines[-1].controllers == "" and lines[-1].path == "/web1"
    assert distinct_paths(text) == ["/web1",
                                    "/process_api/7f92f12a1c19d58257dda330307811cc/web1"]
    assert distinct_paths("0::/\n1:name=systemd:/\n") == []


def test_unescape_unit():
    assert unescape_unit(r"build\x2dbox") == "build-box"


def test_mountinfo_hybrid_and_relative_paths():
    mounts = cgroup_mounts((FIX / "mountinfo_hybrid").read_text())
    v2 = [m for m in mounts if m.version == 2]
    assert [m.mountpoint for m in v2] == ["/sys/fs/cgroup/unified"]
    mem = [m for m in mounts if "memory" in m.controllers]
    assert mem and mem[0].mountpoint == "/sys/fs/cgroup/memory"
    assert relative_path("/sys/fs/cgroup/unified/web1", mounts) == "/web1"
    assert relative_path("/sys/fs/cgroup/memory/a/b", mounts) == "/a/b"
    assert relative_path("/sys/fs/cgroup/systemd/web1", mounts) == "/web1"


def test_mountinfo_subtree_mount_keeps_its_root():
    line = ("35 25 0:30 /kubepods /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
    mounts = cgroup_mounts(line)
    assert relative_path("/sys/fs/cgroup/pod1/c1", mounts) == "/kubepods/pod1/c1"


def test_cgroup_id_index_walks_a_v2_tree(tmp_path):
    (tmp_path / "system.slice/docker-abc.scope").mkdir(parents=True)
    line = f"30 25 0:26 / {tmp_path} rw - cgroup2 cgroup2 rw\n"
    idx = CgroupIdIndex(cgroup_mounts(line), min_interval=0.0)
    ino = (tmp_path / "system.slice/docker-abc.scope").stat().st_ino
    assert idx.path(ino) == "/system.slice/docker-abc.scope"
    assert idx.path(1) == ""  # the root id is never a container
    assert idx.path(123456789) == ""
