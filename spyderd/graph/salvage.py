"""Corrupted stores: find them, move them aside, and copy out what is still readable.

LMDB does not fail gracefully on a page overwritten with garbage: besides
MDB_CORRUPTED and MDB_PAGE_NOTFOUND, its cursors hit internal assertions and abort the
process. So every walk over a store that may be damaged runs in a forked child that
streams the records to its parent through a pipe: an abort kills the child, the parent
learns where the walk stopped and carries on (salvage then walks the same database
backwards from its end, to get the records behind the bad page too).

- `verify`: walk every record of every database (bounded in time at daemon start);
- `open_store`: the daemon's open: a store that fails `verify`, cannot be opened, or has
  an unreadable schema header is renamed to `store.corrupt-<UTC time>` and a fresh one
  made, with a critical journald entry (MSG_STORE_CORRUPT);
- `check_store` (`spyderctl store check`): `verify` plus the graph invariants;
- `salvage` (`spyderctl store salvage SRC -o DIR`): every record that decodes, copied into a
  fresh store under DIR.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lmdb

from spyderd.errors import StoreError
from spyderd.graph.codec import Block, decode_block
from spyderd.graph.guard import CORRUPT_ERRORS, MSG_STORE_CORRUPT
from spyderd.graph.retention import check_invariants, repair_indexes
from spyderd.graph.store import DBS, DUPSORT, SCHEMA_VERSION, Store

log = logging.getLogger("spyderd.store")
REC = struct.Struct(">II")


@dataclass
class Walk:
    """One database walked in a child: how many records, and why it stopped early."""

    records: int = 0
    undecodable: int = 0
    stopped: str = ""  # "" when the walk reached the end


@dataclass
class Verdict:
    walks: dict[str, Walk] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    complete: bool = True  # False when the time budget ran out first

    @property
    def ok(self) -> bool:
        return not self.problems


# -- walking in a child ----------------------------------------------------------------------

def _open_env(path: Path) -> lmdb.Environment:
    try:
        return lmdb.open(str(path), max_dbs=len(DBS) + 1, readonly=True, lock=True,
                         subdir=True)
    except lmdb.Error:
        return lmdb.open(str(path), max_dbs=len(DBS) + 1, readonly=True, lock=False,
                         subdir=True)


def _quiet_child() -> None:
    """An LMDB abort in the child is expected and reported by its parent: no assertion
    text or faulthandler dump on the shared stderr (the journal, under systemd)."""
    faulthandler.disable()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _child_walk(path: Path, name: str, reverse: bool, wfd: int) -> None:
    out = os.fdopen(wfd, "wb", buffering=1 << 16)
    env = _open_env(path)
    db = env.open_db(name.encode(), create=False, dupsort=name in DUPSORT)
    with env.begin(db=db) as txn, txn.cursor() as cur:
        ok = cur.last() if reverse else cur.first()
        while ok:
            k, v = cur.key(), cur.value()
            out.write(REC.pack(len(k), len(v)) + k + v)
            ok = cur.prev() if reverse else cur.next()
    out.flush()


def walk(path: Path, name: str, *, reverse: bool = False,
         deadline: float | None = None) -> Iterator[tuple[bytes, bytes]]:
    """Records of one database, read by a forked child; raises WalkStopped when the
    child died (an LMDB abort), failed (an LMDB error) or the deadline passed."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into the caller's stack
        code = 0
        try:
            os.close(rfd)
            _quiet_child()
            _child_walk(path, name, reverse, wfd)
        except lmdb.NotFoundError:
            code = 3
        except BaseException:  # noqa: BLE001 - any failure is reported by the exit code
            code = 2
        os._exit(code)
    os.close(wfd)
    why, finished = "", False
    try:
        with os.fdopen(rfd, "rb", buffering=1 << 16) as inp:
            while True:
                if deadline is not None and time.monotonic() > deadline:
                    why = "time budget spent"
                    break
                head = inp.read(REC.size)
                if len(head) < REC.size:
                    finished = True
                    break
                klen, vlen = REC.unpack(head)
                body = inp.read(klen + vlen)
                if len(body) < klen + vlen:
                    finished = True
                    break
                yield body[:klen], body[klen:]
    finally:
        if not finished:  # stopped early (deadline, or the caller let go): end the child
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if why:
        raise WalkStopped(why)
    if os.WIFSIGNALED(status):
        raise WalkStopped(f"LMDB aborted ({signal.Signals(os.WTERMSIG(status)).name})")
    code = os.WEXITSTATUS(status)
    if code == 3:
        raise WalkStopped("database missing")
    if code:
        raise WalkStopped("LMDB error (corrupted or missing page)")


class WalkStopped(Exception):
    """A walk ended before the last record."""


# -- what a readable record looks like -------------------------------------------------------

def _json(v: bytes) -> None:
    json.loads(v)


def _time_key(k: bytes) -> None:
    if len(k) < 9:
        raise ValueError("short time key")


def _block(v: bytes) -> None:
    decode_block(v)  # spyderd.graph.codec: every line of it must decode,
    b = Block(v)  # and every row
    b.nodes()
    b.edges()


def _seq_key(k: bytes) -> None:
    if len(k) < 9:
        raise ValueError("short index key")


DECODERS: dict[str, Callable[[bytes, bytes], Any]] = {
    "meta": lambda k, v: None,
    "blocks": lambda k, v: _block(v),
    "evblocks": lambda k, v: decode_block(v),
    "btime": lambda k, v: _time_key(k),
    "ntime": lambda k, v: _time_key(k),
    "ids": lambda k, v: _seq_key(k),
    "eidx": lambda k, v: _seq_key(k),
    "xidx": lambda k, v: _seq_key(k),
    "live": lambda k, v: k.decode(),
    "findings": lambda k, v: _json(v),
    "traces": lambda k, v: _json(v),
    "idx_rule": lambda k, v: k.index(b"\0"),
    "idx_ftime": lambda k, v: _time_key(k),
}


def _decodes(name: str, k: bytes, v: bytes) -> bool:
    try:
        DECODERS.get(name, lambda k, v: None)(k, v)
    except Exception:  # noqa: BLE001 - garbage may fail in any way
        return False
    return True


# -- verify, check, salvage ------------------------------------------------------------------

def verify(store_dir: Path, budget: float | None = None) -> Verdict:
    """Read every record of every database (in children) and decode it."""
    deadline = time.monotonic() + budget if budget else None
    v = Verdict()
    if not (store_dir / "data.mdb").exists():
        return v
    for name in DBS:
        w = v.walks[name] = Walk()
        try:
            for k, val in walk(store_dir, name, deadline=deadline):
                w.records += 1
                if not _decodes(name, k, val):
                    w.undecodable += 1
        except WalkStopped as exc:
            w.stopped = str(exc)
        if w.stopped == "time budget spent":
            v.complete = False
            break
        if w.stopped and w.stopped != "database missing":
            v.problems.append(f"{name}: walk stopped after {w.records} records: {w.stopped}")
        if w.undecodable:
            v.problems.append(f"{name}: {w.undecodable} of {w.records} records do not decode")
    schema = _schema(store_dir) if v.complete else SCHEMA_VERSION
    if schema is None:
        v.problems.append("meta: schema header missing or unreadable")
    return v


def _schema(store_dir: Path) -> int | None:
    try:
        for k, val in walk(store_dir, "meta"):
            if k == b"schema":
                return int(val)
    except (WalkStopped, ValueError):
        return None
    return None


def check_store(state_dir: Path) -> Verdict:
    """`spyderctl store check`: every record readable, then the graph's invariants."""
    store_dir = Path(state_dir) / "store"
    if not (store_dir / "data.mdb").exists():
        raise StoreError(f"no spyderd store at {store_dir}")
    v = verify(store_dir)
    if v.ok:
        store = Store(state_dir, readonly=True)
        try:
            v.problems += [f"invariant: {p}" for p in check_invariants(store)]
        finally:
            store.close()
    return v


def salvage(src: Path, out_dir: Path) -> dict[str, dict[str, int]]:
    """Copy every record that decodes from the store at `src` (a state dir, a store dir or
    a moved-aside `store.corrupt-*`) into a fresh store under `out_dir`."""
    src = _store_dir(Path(src))
    dst_dir = Path(out_dir) / "store"
    if (dst_dir / "data.mdb").exists():
        raise StoreError(f"{dst_dir} already holds a store; salvage into an empty directory")
    dst_dir.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(dst_dir), max_dbs=len(DBS) + 1, map_size=1 << 30, subdir=True)
    report: dict[str, dict[str, int]] = {}
    for name in DBS:
        db = env.open_db(name.encode(), dupsort=name in DUPSORT)
        report[name] = _salvage_db(src, name, env, db)
    with env.begin(write=True) as txn:
        meta = env.open_db(b"meta", txn=txn)
        if txn.get(b"schema", db=meta) is None:
            txn.put(b"schema", str(SCHEMA_VERSION).encode(), db=meta)
    env.close()
    report["repair"] = {"dropped": repair(Path(out_dir))}
    return report


def _put(txn, k: bytes, v: bytes, dup: bool) -> bool:
    try:
        return bool(txn.put(k, v, dupdata=dup)) or True
    except lmdb.Error:  # a garbage key LMDB cannot hold (size)
        return False


def repair(state_dir: Path) -> int:
    """Drop index entries whose blocks or findings were lost, so the invariants hold."""
    store = Store(state_dir)
    try:
        return repair_indexes(store)
    finally:
        store.close()


def _store_dir(p: Path) -> Path:
    if (p / "data.mdb").exists():
        return p
    if (p / "store" / "data.mdb").exists():
        return p / "store"
    raise StoreError(f"no LMDB store at {p} (expected {p}/data.mdb or {p}/store/data.mdb)")


def _salvage_db(src: Path, name: str, env: lmdb.Environment, db) -> dict[str, int]:
    """Forward until the walk breaks, then backwards from the end to meet it."""
    counts = {"copied": 0, "undecodable": 0, "breaks": 0}
    seen: set[tuple[bytes, bytes]] = set()
    for reverse in (False, True):
        with env.begin(write=True, db=db) as txn:
            try:
                for k, v in walk(src, name, reverse=reverse):
                    if (k, v) in seen:
                        if reverse:
                            break  # met the forward walk: nothing lost in between
                        continue
                    seen.add((k, v))
                    if _decodes(name, k, v) and _put(txn, k, v, name in DUPSORT):
                        counts["copied"] += 1
                    else:
                        counts["undecodable"] += 1
                if not reverse:
                    break  # the forward walk reached the end: no need to come back
            except WalkStopped as exc:
                if str(exc) == "database missing":
                    break
                counts["breaks"] += 1
    return counts


# -- the daemon's open -----------------------------------------------------------------------

def corrupt_name(now: float | None = None) -> str:
    t = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return "store.corrupt-" + t.strftime("%Y%m%dT%H%M%SZ")


def move_aside(store_dir: Path, reason: str) -> Path:
    """Rename a corrupted store out of the way (kept for `spyderctl store salvage`)."""
    dest = store_dir.with_name(corrupt_name())
    n = 1
    while dest.exists():
        dest = store_dir.with_name(f"{corrupt_name()}.{n}")
        n += 1
    os.rename(store_dir, dest)
    log.critical("store %s is corrupted (%s): moved aside to %s, capturing into a fresh "
                 "store; `spyderctl store salvage %s -o DIR` copies out what is readable",
                 store_dir, reason, dest, dest,
                 extra={"MESSAGE_ID": MSG_STORE_CORRUPT, "SPYDER_STORE_PATH": str(store_dir),
                        "SPYDER_STORE_MOVED_TO": str(dest), "SPYDER_STORE_REASON": reason})
    return dest


def open_store(state_dir: Path, *, map_size: int, check_seconds: float = 30.0,
               make: Callable[..., Store] = Store) -> tuple[Store, Path | None]:
    """Open the daemon's store, moving a corrupted one aside: (store, where it went)."""
    store_dir = Path(state_dir) / "store"
    moved = None
    if check_seconds > 0 and (store_dir / "data.mdb").exists():
        v = verify(store_dir, check_seconds)
        if not v.complete:
            log.info("store check at start: time budget of %.0f s spent; the rest is "
                     "checked as it is read", check_seconds)
        if v.problems:
            moved = move_aside(store_dir, "; ".join(v.problems[:3]))
    try:
        return make(state_dir, map_size=map_size), moved
    except (StoreError, lmdb.Error, ValueError) as exc:
        if not is_corruption(exc):
            raise
        moved = move_aside(store_dir, str(exc))
    return make(state_dir, map_size=map_size), moved


def is_corruption(exc: BaseException) -> bool:
    """An LMDB corruption error, or a StoreError raised from one, or a bad schema header."""
    for e in (exc, exc.__context__, exc.__cause__):
        if isinstance(e, (*CORRUPT_ERRORS, ValueError)):
            return True
    return False


def fresh_store(state_dir: Path, map_size: int) -> Callable[[BaseException], Store]:
    """For GuardedStore.on_corrupt: move the broken store aside, return a fresh one."""
    def replace(exc: BaseException) -> Store:
        move_aside(Path(state_dir) / "store", f"at run time: {exc}")
        return Store(state_dir, map_size=map_size)
    return replace
