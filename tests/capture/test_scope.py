"""capture.scope in the kernel, with both loaders: a daemon scoped to one network namespace
or one cgroup subtree records the tasks there, never sends the others' events out of the
kernel (counted as out_of_scope), and its self-test runs inside the scope."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from capture_support import absent, find_event, start_daemon, status

from spyderd.capture.scope import cgroup2_root

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def netns():
    name = f"spyscope-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture(scope="module")
def d(tmp_path_factory, journald, loader, netns):
    daemon = start_daemon(tmp_path_factory.mktemp("scoped"),
                          {"scope": f"netns:/run/netns/{netns}"}, loader=loader)
    yield daemon
    daemon.stop()


def echo(tag: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "/bin/sh", "-c", f"/bin/echo {tag} >/dev/null"], check=True)


def test_only_the_namespace_is_recorded_and_the_rest_stays_in_the_kernel(d, netns, loader):
    tag = uuid.uuid4().hex[:8]
    before = status(d)["kernel_counters"].get("out_of_scope", 0)
    echo(f"scope-out-{tag}")
    echo(f"scope-in-{tag}", netns)
    find_event(d, "exec", lambda e: f"scope-in-{tag}" in " ".join(e.get("args", [])))
    absent(d, "exec", lambda e: f"scope-out-{tag}" in " ".join(e.get("args", [])))
    st = status(d)
    assert st["loader"]["name"] == loader
    assert st["kernel_counters"]["out_of_scope"] > before
    for name in ("process", "creds", "kernel"):
        assert st["probes"][name]["selftest"] == "ok", st["probes"][name]


def test_cgroup_subtree_scope(tmp_path, journald):
    """cgroup:PATH keeps the tasks of that cgroup and below (libbpf loader)."""
    top = f"{cgroup2_root()}/spyscope-{os.getpid()}"  # /sys/fs/cgroup/unified on hybrid hosts
    os.makedirs(f"{top}/child", exist_ok=True)
    daemon = start_daemon(tmp_path, {"scope": f"cgroup:{top}"})
    tag = uuid.uuid4().hex[:8]
    try:
        code = (f"echo $$ > {top}/child/cgroup.procs && /bin/echo cg-in-{tag} >/dev/null")
        subprocess.run(["/bin/sh", "-c", code], check=True)
        echo(f"cg-out-{tag}")
        find_event(daemon, "exec", lambda e: f"cg-in-{tag}" in " ".join(e.get("args", [])))
        absent(daemon, "exec", lambda e: f"cg-out-{tag}" in " ".join(e.get("args", [])))
        assert status(daemon)["kernel_counters"]["out_of_scope"] > 0
    finally:
        daemon.stop()
        for cg in (f"{top}/child", top):
            try:
                os.rmdir(cg)
            except OSError:
                pass
