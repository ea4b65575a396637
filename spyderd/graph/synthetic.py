"""A realistic synthetic event stream (process trees, connections, file writes).

Used by the graph benchmarks and the crash test, where the kernel is not the point:
service roots that fork workers, shells that run short commands, commands that connect
out or accept, write watched files, and exit; pids are reused as on a busy host.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from spyderd.capture.snapshot import ProcInfo
from spyderd.model import (
    AcceptEvent,
    ConnectEvent,
    Event,
    ExecEvent,
    ExitEvent,
    FileEvent,
    ForkEvent,
)

S = 1_000_000_000
COMMANDS = [
    ("/usr/bin/curl", ["-s", "http://10.0.0.5/health"]),
    ("/bin/ls", ["-la", "/var/www"]),
    ("/usr/bin/python3", ["/opt/app/job.py", "--batch", "17"]),
    ("/bin/grep", ["-r", "ERROR", "/var/log/app"]),
    ("/usr/bin/ssh", ["backup@10.0.0.9", "rsync --server"]),
    ("/bin/cat", ["/etc/hostname"]),
    ("/usr/sbin/nginx", ["-g", "daemon off;"]),
]


def roots(n: int = 8) -> list[ProcInfo]:
    """init plus `n` long-running services for the snapshot."""
    out = [ProcInfo(pid=1, ppid=0, start_ns=0, comm="systemd", exe="/lib/systemd/systemd",
                    args=["/sbin/init"])]
    for i in range(n):
        out.append(ProcInfo(pid=100 + i, ppid=1, start_ns=S, comm=f"svc{i}",
                            exe=f"/usr/sbin/svc{i}", args=[f"/usr/sbin/svc{i}", "--daemon"]))
    return out


def stream(count: int, *, seed: int = 1, services: int = 8, t0: int = 10 * S,
           max_pid: int = 30000) -> Iterator[Event]:
    """`count` events in causal order: fork → exec → (connect|accept|file)* → exit."""
    rng = random.Random(seed)
    t = t0
    next_pid = 1000
    produced = 0
    while produced < count:
        parent = 100 + rng.randrange(services)
        next_pid = next_pid + 1 if next_pid < max_pid else 1000
        pid = next_pid
        t += rng.randrange(20_000, 200_000)
        start = t
        exe, args = COMMANDS[rng.randrange(len(COMMANDS))]
        batch: list[Event] = [
            ForkEvent(time=t, ktime=t, pid=pid, tid=pid, ppid=parent, child_start=start,
                      comm="svc", uid=33),
            ExecEvent(time=t + 1000, ktime=t + 1000, pid=pid, tid=pid, filename=exe,
                      args=[exe.rsplit("/", 1)[-1], *args], start=start, ppid=parent,
                      comm=exe.rsplit("/", 1)[-1][:15], uid=33),
        ]
        for j in range(rng.randrange(0, 6)):
            tt = t + 2000 + j * 1000
            r = rng.random()
            if r < 0.5:
                batch.append(ConnectEvent(time=tt, ktime=tt, pid=pid, tid=pid, family=4,
                                          local_ip="10.0.0.2", local_port=30000 + j,
                                          remote_ip="10.0.0.5", remote_port=443, uid=33))
            elif r < 0.7:
                batch.append(AcceptEvent(time=tt, ktime=tt, pid=pid, tid=pid, family=4,
                                         local_ip="10.0.0.2", local_port=8080,
                                         remote_ip="10.0.1.7", remote_port=40000 + j, uid=33))
            else:
                batch.append(FileEvent(time=tt, ktime=tt, pid=pid, tid=pid, op="open",
                                       path=f"/etc/app/conf{rng.randrange(50)}.yaml",
                                       inode=5000 + rng.randrange(50), dev=2049, flags=577,
                                       uid=33))
        te = t + 9000
        batch.append(ExitEvent(time=te, ktime=te, pid=pid, tid=pid, code=0, uid=33))
        for ev in batch:
            if produced >= count:
                return
            produced += 1
            yield ev
