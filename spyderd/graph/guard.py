"""Store faults degrade the store, never detection.

The daemon writes through a `GuardedStore`. When LMDB cannot write (disk full, quota, I/O
error, read-only filesystem, a map that cannot grow) the batch is held in memory instead
of raising into the loop: capture, rules, traces and the sinks carry on. While degraded:

- every `retry` the guard frees room inside the store (the oldest raw event blocks go
  first; findings, traces and the graph stay) and writes what it holds, backing off from
  1 s to 60 s between attempts;
- what it holds is bounded: raw events beyond `max_events`, findings beyond
  `max_findings` (they still reach journald; only the stored copy is lost) and graph
  records beyond `max_nodes` are dropped, oldest first, and counted;
- the fault is logged with a catalog MESSAGE_ID when it starts, every `report_every`
  seconds while it lasts, and when the store recovers.

A corrupted store (MDB_CORRUPTED, MDB_PAGE_NOTFOUND, a bad header) is another matter: the
guard hands it to `on_corrupt`, which moves it aside and returns a fresh one (see
spyderd.graph.salvage), and writes what it holds there.

LMDB reports a write that hit ENOSPC as EIO (a short write); the free space of the
filesystem tells the two apart.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb

from spyderd.graph.store import Store
from spyderd.model import Edge, Finding, Node

log = logging.getLogger("spyderd.store")

# journald MESSAGE_IDs (packaging/spyderd.catalog); never change them.
MSG_STORE_FAULT = "950ff9a8917d4003874e0e12f641d45a"  # store cannot write: degraded
MSG_STORE_RECOVERED = "99461bd862e24b23b09d85a8f4035f3c"  # degraded store writes again
MSG_STORE_SPACE_LOW = "1a1b4beac04349ca8efbeafec36463ba"  # space_left / admin_space_left
MSG_STORE_CORRUPT = "6fb3ff7616e5409d8f174adec663b93b"  # store moved aside, fresh one

CORRUPT_ERRORS = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError,
                  lmdb.VersionMismatchError)
FAULT_ERRORS = (lmdb.Error, OSError)
# A record LMDB can never take (empty or oversized key): a bug, not a fault of the disk.
# Holding it would block every later write, so the batch is written record by record and
# the bad one is dropped and counted instead.
BAD_RECORD_ERRORS = (lmdb.BadValsizeError, lmdb.BadDbiError, lmdb.KeyExistsError)
FULL_BELOW = 1 << 20
MAX_HELD_EXTRAS = 10_000  # fleet outbox parts of held batches (one per batch)
EVENT_CHUNK = 2000  # held events written per transaction on recovery  # an EIO with less free space than this is a full disk
ERRNO_WORDS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only filesystem", errno.EIO: "I/O error",
               errno.EACCES: "permission denied", errno.ENOMEM: "map cannot grow"}


@dataclass
class Limits:
    """Bounds on what a degraded store holds in memory, and its timings."""

    max_events: int = 100_000
    max_findings: int = 10_000
    max_nodes: int = 200_000
    report_every: float = 60.0
    retry_min: float = 1.0
    retry_max: float = 60.0
    prune_blocks: int = 200  # event blocks freed per emergency prune


@dataclass
class SpaceWatch:
    """auditd-style early warnings on the free space of the state directory's filesystem."""

    space_left_mb: int = 0
    space_left_action: str = "warn"
    admin_space_left_mb: int = 0
    admin_space_left_action: str = "prune"
    level: str = ""  # "", "space_left" or "admin_space_left": the level last reported


@dataclass
class Held:
    """A degraded store's backlog: the latest version of each record, oldest first."""

    nodes: OrderedDict[str, Node] = field(default_factory=OrderedDict)
    edges: list[Edge] = field(default_factory=list)
    events: deque = field(default_factory=deque)
    findings: OrderedDict[str, Finding] = field(default_factory=OrderedDict)
    traces: dict[str, dict] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    extras: list[Callable[[Any], None]] = field(default_factory=list)  # fleet outbox parts

    def empty(self) -> bool:
        return not (self.nodes or self.edges or self.events or self.findings or self.traces
                    or self.meta or self.extras)


def describe(exc: BaseException, path: Path) -> str:
    """A fault in words: "disk full", "I/O error", ... (ENOSPC arrives from LMDB as EIO)."""
    if isinstance(exc, lmdb.MapFullError):
        return "map full"
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code is None:
        code = next((c for c in ERRNO_WORDS if os.strerror(c) in text), None)
    if code == errno.EIO and free_bytes(path) < FULL_BELOW:
        code = errno.ENOSPC
    if isinstance(exc, lmdb.ReadonlyError):
        code = errno.EROFS
    return ERRNO_WORDS.get(code, text or type(exc).__name__)


def free_bytes(path: Path) -> int:
    """Free space for an unprivileged writer... and root: f_bavail (root's reserve aside)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


class GuardedStore:
    """The store as the daemon writes to it: faults are held, retried and reported.

    Reads the daemon needs while degraded (`node`, `edges`, `processes_by_pid`, `trace`)
    see what is held and never raise; everything else is the wrapped `Store`'s.
    """

    def __init__(self, store: Store, *, limits: Limits | None = None,
                 space: SpaceWatch | None = None,
                 on_corrupt: Callable[[BaseException], Store] | None = None,
                 reopen: Callable[[], Store] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.reopen = reopen
        self.limits = limits or Limits()
        self.space = space or SpaceWatch()
        self.on_corrupt = on_corrupt
        self.clock = clock
        self.held = Held()
        self.fault = ""  # "" while healthy, else the fault in words
        self.fault_since = 0.0  # wall time the fault began
        self.last_error = ""
        self.counters = {"faults": 0, "retries": 0, "events_not_stored": 0,
                         "fleet_batches_not_stored": 0,
                         "findings_not_stored": 0, "nodes_not_stored": 0,
                         "pruned_blocks": 0, "read_errors": 0, "corrupt": 0,
                         "records_refused": 0}
        self._next_retry = 0.0
        self._backoff = self.limits.retry_min
        self._next_report = 0.0
        self._next_space = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    @property
    def path(self) -> Path:
        return self.store.path

    # -- writing ---------------------------------------------------------------------------

    def write_batch(self, nodes: list[Node], edges: list[Edge], events: list,
                    findings: list[Finding], traces: dict[str, dict],
                    extra: Callable[[Any], None] | None = None) -> None:
        """Commit, or hold the batch when the store is degraded (never raises). `extra`
        (the fleet outbox's part of the batch) is held and written with it."""
        if not self.fault:
            try:
                self.store.write_batch(nodes, edges, events, findings, traces, extra=extra)
                return
            except BAD_RECORD_ERRORS as exc:
                self._write_each(exc, nodes, edges, events, findings, traces)
                if extra is not None:
                    self._hold_extra(extra)
                return
            except FAULT_ERRORS as exc:
                self._enter(exc)
        self._hold(nodes, edges, events, findings, traces)
        if extra is not None:
            self._hold_extra(extra)
        if self.fault:
            self.retry()
        elif not self._flush_held():  # a fresh store replaced a corrupted one
            self._enter(RuntimeError(self.last_error))

    def _write_each(self, exc: BaseException, nodes, edges, events, findings,
                    traces) -> None:
        """One record per transaction, to drop only the one LMDB refuses."""
        log.error("store refused a record (%s): writing the batch record by record", exc)
        parts: list[tuple] = [([n], [], [], [], {}) for n in nodes]
        parts += [([], [e], [], [], {}) for e in edges]
        parts += [([], [], [ev], [], {}) for ev in events]
        parts += [([], [], [], [f], {}) for f in findings]
        parts += [([], [], [], [], {k: v}) for k, v in traces.items()]
        for i, part in enumerate(parts):
            try:
                self.store.write_batch(*part)
            except BAD_RECORD_ERRORS as err:
                self.counters["records_refused"] += 1
                self.last_error = f"record refused: {err}"
            except FAULT_ERRORS as err:  # the disk failed meanwhile: hold the rest
                self._enter(err)
                for rest in parts[i:]:
                    self._hold(*rest)
                return

    def put_meta(self, key: str, value: Any) -> None:
        if not self.fault:
            try:
                self.store.put_meta(key, value)
                return
            except FAULT_ERRORS as exc:
                self._enter(exc)
        self.held.meta[key] = value

    def maintain(self, fn: Callable[[Store], Any]) -> Any:
        """Run store maintenance (retention) unless degraded; a fault degrades, returns None."""
        if self.fault:
            return None
        try:
            return fn(self.store)
        except FAULT_ERRORS as exc:
            self._enter(exc)
            return None

    def _hold(self, nodes, edges, events, findings, traces) -> None:
        h, lim = self.held, self.limits
        for n in nodes:
            h.nodes[n.id] = n
            h.nodes.move_to_end(n.id)
        h.edges.extend(edges)
        if len(h.nodes) > lim.max_nodes or len(h.edges) > 2 * lim.max_nodes:
            # the graph backlog goes as a whole: half of it would leave dangling edges
            self.counters["nodes_not_stored"] += len(h.nodes)
            h.nodes.clear()
            h.edges.clear()
        h.events.extend(events)
        while len(h.events) > lim.max_events:
            h.events.popleft()
            self.counters["events_not_stored"] += 1
        for f in findings:
            h.findings[f.id] = f
            h.findings.move_to_end(f.id)
        while len(h.findings) > lim.max_findings:
            h.findings.popitem(last=False)
            self.counters["findings_not_stored"] += 1
        h.traces.update(traces)

    def _hold_extra(self, extra: Callable[[Any], None]) -> None:
        self.held.extras.append(extra)
        while len(self.held.extras) > MAX_HELD_EXTRAS:
            self.held.extras.pop(0)
            self.counters["fleet_batches_not_stored"] += 1

    # -- fault and recovery ----------------------------------------------------------------

    def _enter(self, exc: BaseException) -> None:
        if isinstance(exc, CORRUPT_ERRORS) and self._replace_corrupt(exc):
            return
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.fault:
            return
        self.fault = describe(exc, self.store.path)
        self.fault_since = time.time()
        self.counters["faults"] += 1
        self._backoff = self.limits.retry_min
        self._next_retry = self.clock() + self._backoff
        self._next_report = self.clock() + self.limits.report_every
        log.error("store: %s (%s); capture and detection go on, findings still reach "
                  "journald; writes are held in memory and retried", self.fault,
                  self.last_error, extra=self._fields())

    def _replace_corrupt(self, exc: BaseException) -> bool:
        """Swap in a fresh store when the open one is corrupted; False if that failed."""
        if self.on_corrupt is None:
            return False
        self.counters["corrupt"] += 1
        try:
            fresh = self.on_corrupt(exc)
        except Exception as err:  # noqa: BLE001 - stay degraded rather than die
            log.critical("store corrupted (%s) and no fresh store could be made: %s", exc, err)
            return False
        old, self.store = self.store, fresh
        try:
            old.close()
        except lmdb.Error:
            pass
        self.fault, self._next_retry = "", 0.0
        self._flush_held()
        return True

    def retry(self, force: bool = False) -> bool:
        """Try to write what is held (when due); True once the store is healthy again."""
        if not self.fault:
            return True
        now = self.clock()
        if not force and now < self._next_retry:
            return False
        self.counters["retries"] += 1
        if self.fault in ("disk full", "disk quota exceeded", "map full"):
            self.emergency_prune()
        if self._flush_held():
            self._recover()
            return True
        self._backoff = min(self._backoff * 2, self.limits.retry_max)
        self._next_retry = now + self._backoff
        return False

    def _flush_held(self) -> bool:
        """Write what is held, most valuable first, each part in its own transaction so
        a little room still lets findings through: findings and traces, then the graph,
        then raw events in chunks. Written parts leave the backlog at once."""
        h = self.held
        try:
            if h.findings or h.traces:
                self.store.write_batch([], [], [], list(h.findings.values()), h.traces)
                h.findings, h.traces = OrderedDict(), {}
            if h.nodes or h.edges:
                self.store.write_batch(list(h.nodes.values()), h.edges, [], [], {})
                h.nodes, h.edges = OrderedDict(), []
            while h.extras:
                self.store.write_batch([], [], [], [], {}, extra=h.extras[0])
                h.extras.pop(0)
            while h.events:
                chunk = [h.events[i] for i in range(min(EVENT_CHUNK, len(h.events)))]
                self.store.write_batch([], [], chunk, [], {})
                for _ in chunk:
                    h.events.popleft()
            for k in list(h.meta):
                self.store.put_meta(k, h.meta[k])
                del h.meta[k]  # only once written: a failed put keeps it held
        except FAULT_ERRORS as exc:
            if isinstance(exc, CORRUPT_ERRORS) and not self.fault:
                self._enter(exc)
            self.last_error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, lmdb.PanicError):
                self._reopen()
            return False
        return True

    def _reopen(self) -> None:
        """A failed meta-page write leaves LMDB's environment fatal (MDB_PANIC) until it is
        closed: every later transaction fails even once space is back. Open it again."""
        if self.reopen is None:
            return
        try:
            self.store.close()
        except lmdb.Error:
            pass
        try:
            self.store = self.reopen()
            log.info("store: environment reopened after MDB_PANIC")
        except Exception as exc:  # noqa: BLE001 - stay degraded, retry later
            self.last_error = f"reopen: {exc}"

    def _recover(self) -> None:
        down = time.time() - self.fault_since
        log.warning("store: writing again after %.0f s of %s; %d events, %d findings and %d "
                    "graph records could not be stored meanwhile", down, self.fault,
                    self.counters["events_not_stored"], self.counters["findings_not_stored"],
                    self.counters["nodes_not_stored"],
                    extra={**self._fields(), "MESSAGE_ID": MSG_STORE_RECOVERED})
        self.fault = ""

    def emergency_prune(self) -> int:
        """Free room inside the store: drop the oldest raw events (findings, traces and
        the graph stay), then commit twice more so LMDB can reuse the freed pages."""
        n = 0
        try:
            n = self._drop_oldest_events(self.limits.prune_blocks)
            for _ in range(2):
                with self.store.env.begin(write=True) as txn:
                    txn.put(b"emergency_pruned", str(n).encode(), db=self.store.db["meta"])
        except FAULT_ERRORS as exc:
            self.last_error = f"emergency prune: {exc}"
        if n:
            self.counters["pruned_blocks"] += n
            log.warning("store: emergency pruning deleted the %d oldest event blocks", n,
                        extra={"MESSAGE_ID": MSG_STORE_FAULT, "SPYDER_STORE_PRUNED": str(n)})
        return n

    def _drop_oldest_events(self, blocks: int) -> int:
        """The store's own `drop_oldest_events` where it has one (its block layout decides
        what an event block is), else the oldest records of its `events` database."""
        drop = getattr(self.store, "drop_oldest_events", None)
        if drop is not None:
            return int(drop(blocks))
        if "events" not in self.store.db:
            return 0
        n = 0
        with self.store.env.begin(write=True) as txn, \
                txn.cursor(db=self.store.db["events"]) as cur:
            while n < blocks and cur.first():
                cur.delete()
                n += 1
        return n

    # -- periodic --------------------------------------------------------------------------

    def tick(self) -> None:
        """From the daemon's 1 s tick: retry, report a lasting fault, watch free space."""
        now = self.clock()
        if self.fault:
            self.retry()
        if self.fault and now >= self._next_report:
            self._next_report = now + self.limits.report_every
            log.error("store: still %s since %s; %d events, %d findings not stored so far, "
                      "%d findings held", self.fault, _iso(self.fault_since),
                      self.counters["events_not_stored"], self.counters["findings_not_stored"],
                      len(self.held.findings), extra=self._fields())
        if now >= self._next_space:
            self._next_space = now + 5.0
            self.check_space()

    def check_space(self) -> str:
        """Compare free space with the thresholds, act on a crossing; the level reached."""
        sp = self.space
        free_mb = free_bytes(self.store.path) >> 20
        level, action, limit = "", "ignore", 0
        if sp.admin_space_left_mb > 0 and free_mb < sp.admin_space_left_mb:
            level, action, limit = ("admin_space_left", sp.admin_space_left_action,
                                    sp.admin_space_left_mb)
        elif sp.space_left_mb > 0 and free_mb < sp.space_left_mb:
            level, action, limit = "space_left", sp.space_left_action, sp.space_left_mb
        if level != sp.level and level and action != "ignore":
            log.warning("store: %d MiB free on the state directory's filesystem, below "
                        "store.%s_mb (%d); action: %s", free_mb, level, limit, action,
                        extra={"MESSAGE_ID": MSG_STORE_SPACE_LOW, "SPYDER_STORE_FREE_MB":
                               str(free_mb), "SPYDER_STORE_LEVEL": level})
        elif sp.level and not level:
            log.info("store: %d MiB free again, above the space_left thresholds", free_mb)
        sp.level = level
        if level and action == "prune" and not self.fault:
            self.emergency_prune()
        return level

    # -- reads that must not raise ---------------------------------------------------------

    def node(self, node_id: str) -> Node | None:
        held = self.held.nodes.get(node_id)
        if held is not None:
            return held
        return self._read(lambda: self.store.node(node_id), None)

    def edges(self, node_id: str, direction: str = "out") -> list[Edge]:
        return self._read(lambda: self.store.edges(node_id, direction), [])

    def processes_by_pid(self, pid: int) -> list[Node]:
        return self._read(lambda: self.store.processes_by_pid(pid), [])

    def trace(self, tid: str) -> dict | None:
        held = self.held.traces.get(tid)
        if held is not None:
            return held
        return self._read(lambda: self.store.trace(tid), None)

    def _read(self, fn: Callable[[], Any], default: Any) -> Any:
        try:
            return fn()
        except FAULT_ERRORS as exc:
            self.counters["read_errors"] += 1
            self.last_error = f"read: {type(exc).__name__}: {exc}"
            if isinstance(exc, CORRUPT_ERRORS):
                self._enter(exc)
            return default

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {"state": "degraded" if self.fault else "ok", "fault": self.fault,
                "since": self.fault_since if self.fault else 0, "last_error": self.last_error,
                "held_events": len(self.held.events), "held_findings": len(self.held.findings),
                "held_nodes": len(self.held.nodes), "free_mb": free_bytes(self.path) >> 20,
                "space_level": self.space.level, **self.counters}

    def _fields(self) -> dict[str, str]:
        return {"MESSAGE_ID": MSG_STORE_FAULT, "SPYDER_STORE_FAULT": self.fault,
                "SPYDER_STORE_PATH": str(self.store.path),
                "SPYDER_STORE_SINCE": _iso(self.fault_since),
                "SPYDER_STORE_EVENTS_NOT_STORED": str(self.counters["events_not_stored"]),
                "SPYDER_STORE_FINDINGS_NOT_STORED": str(self.counters["findings_not_stored"])}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t)) if t else ""
