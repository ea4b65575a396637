"""Trace roots: the nearest session, inbound or service boundary; containers only on top."""

from __future__ import annotations

from traces_support import World

from spyderd.traces.roots import find_root


def test_web_shell_commands_root_at_the_web_server(tmp_path):
    w = World(tmp_path)
    srv = w.web_server()
    w.run(200, 100, "/bin/sh", "-c", "id")
    rid = w.run(201, 200, "/usr/bin/id")
    root = find_root(w.graph, rid)
    assert (root.node.id, root.kind) == (srv.id, "inbound")
    assert root.path[0].name == "nginx" and root.path[-1].id == rid.id


def test_service_root_is_the_exec_image_not_its_fork_copy(tmp_path):
    w = World(tmp_path)
    cron = w.run(50, 1, "/usr/sbin/cron", "-f")
    w.run(51, 50, "/bin/sh", "-c", "backup")
    job = w.run(52, 51, "/usr/bin/tar", "czf", "/tmp/b.tgz", "/etc")
    root = find_root(w.graph, job)
    assert (root.node.id, root.kind) == (cron.id, "service")


def test_session_boundary(tmp_path):
    w = World(tmp_path)
    w.run(60, 1, "/usr/sbin/sshd", "-D", session_id="")
    w.listen(60, 22)
    w.run(61, 60, "/usr/sbin/sshd", "-R", session_id="")
    bash = w.run(62, 61, "/bin/bash", "-l", session_id="session:b00t:7")
    vi = w.run(63, 62, "/usr/bin/curl", "x", session_id="session:b00t:7")
    root = find_root(w.graph, vi)
    assert (root.node.id, root.kind) == (bash.id, "session")


def test_container_started_from_a_web_shell_belongs_to_the_web_server(tmp_path):
    w = World(tmp_path)
    srv = w.web_server()
    w.run(200, 100, "/bin/sh", "-c", "runc run x")
    w.run(201, 200, "/usr/sbin/runc", "run", "x")
    init = w.run(202, 201, "/bin/sh", "-c", "wget", container_id="c" * 64)
    wget = w.run(203, 202, "/bin/wget", "http://x", container_id="c" * 64)
    root = find_root(w.graph, wget)
    assert (root.node.id, root.kind) == (srv.id, "inbound")
    assert init.id in {n.id for n in root.path}


def test_container_under_a_runtime_shim_is_its_own_root(tmp_path):
    w = World(tmp_path)
    w.run(300, 1, "/usr/bin/containerd-shim-runc-v2", "-id", "x")
    init = w.run(301, 300, "/bin/sh", "-c", "sleep 1d", container_id="d" * 64)
    sh = w.run(302, 301, "/bin/sh", container_id="d" * 64)
    root = find_root(w.graph, sh)
    assert (root.node.id, root.kind) == (init.id, "container")


def test_broken_chain_roots_at_the_top(tmp_path):
    w = World(tmp_path)
    orphan = w.graph.apply(__import__("spyderd.model", fromlist=["ExecEvent"]).ExecEvent(
        time=w.tick(), ktime=w.t, pid=900, filename="/bin/ls", args=["ls"], comm="ls"))
    root = find_root(w.graph, orphan)
    assert root.kind == "top" and root.node.id == orphan.id
