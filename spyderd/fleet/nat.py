"""NAT on a spyderd host: conntrack's original and reply tuples, so the stitcher can join a
connection whose two ends saw different addresses.

A host that masquerades (a router, a container host) forwards connections its own
processes never made; both far ends are seen by other hosts, each with its own tuple. This
host reads its conntrack table (`/proc/net/nf_conntrack`, in its `capture.scope` network
namespace) and publishes each translated connection once as an alias pair: the tuple as
the connecting side sees it, and the tuple as the accepting side sees it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import threading
from collections import OrderedDict

from spyderd.fleet import messages as m

Tuple4 = tuple[str, int, str, int]
_FIELD = re.compile(r"(src|dst|sport|dport)=(\S+)")
SEEN_MAX = 100_000


def nat_pairs(text: str) -> list[tuple[Tuple4, Tuple4]]:
    """(original, translated) canonical tuples of TCP entries whose reply is not the
    original reversed: the connection was rewritten (SNAT, masquerade, DNAT)."""
    out = []
    for line in text.splitlines():
        if " tcp " not in f" {line} ":
            continue
        f = _FIELD.findall(line)
        if len(f) < 8:
            continue
        o = dict(f[:4])
        r = dict(f[4:8])
        try:
            orig = (o["src"], int(o["sport"]), o["dst"], int(o["dport"]))
            rep = (r["dst"], int(r["dport"]), r["src"], int(r["sport"]))
        except (KeyError, ValueError):
            continue
        if orig != rep:
            out.append((m.canonical_tuple(*orig), m.canonical_tuple(*rep)))
    return out


def read_conntrack(netns_path: str = "") -> str:
    """The conntrack table, read in `netns_path` when given (on a thread of its own: a
    thread's network namespace is its own, the daemon's other threads stay where they are)."""
    if not netns_path:
        return _read("/proc/net/nf_conntrack")
    box: list[str] = [""]

    errors: list[str] = []

    def run() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                if _libc().setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            finally:
                os.close(fd)
        except OSError as exc:
            errors.append(f"cannot enter {netns_path}: {exc}")
            return
        box[0] = _read("/proc/thread-self/net/nf_conntrack")

    t = threading.Thread(target=run, name="spyderd-conntrack", daemon=True)
    t.start()
    t.join(10)
    if errors:
        raise OSError(errors[0])
    return box[0]


CLONE_NEWNET = 0x40000000


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)  # os.setns arrives only in Python 3.12


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


class NatWatcher:
    """New translated connections since the last poll (each published once)."""

    def __init__(self, netns_path: str = "") -> None:
        self.netns_path = netns_path
        self.seen: OrderedDict[tuple[Tuple4, Tuple4], None] = OrderedDict()
        self.published = 0

    def poll(self) -> list[tuple[Tuple4, Tuple4]]:
        new = []
        for pair in nat_pairs(read_conntrack(self.netns_path)):
            if pair not in self.seen:
                self.seen[pair] = None
                new.append(pair)
        while len(self.seen) > SEEN_MAX:
            self.seen.popitem(last=False)
        self.published += len(new)
        return new


def nat_messages(machine: str, pairs: list[tuple[Tuple4, Tuple4]]) -> list[tuple[str, dict]]:
    """(subject, message) for each shard either side of a pair falls in."""
    by_shard: dict[int, list] = {}
    for a, b in pairs:
        for shard in {m.shard_of(a), m.shard_of(b)}:
            by_shard.setdefault(shard, []).append([list(a), list(b)])
    return [(m.conn_subject(machine, s), {"v": m.VERSION, "machine": machine, "nat": p})
            for s, p in sorted(by_shard.items())]
