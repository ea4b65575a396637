"""Which OCI runtime state directory owns a cgroup: runc and crun used directly.

`runc run` and `crun run` put a container in whatever cgroup its config says (by default
`/<id>`), a path that names no runtime. Their state directories do say it: runc's
`state.json` lists the container's cgroup paths, crun's `status` its `cgroup-path`. This
index maps those cgroup paths to (runtime, state directory). A lookup miss rescans the
roots only if one changed (mtime) or a directory had no state file yet at the last scan.

Runtimes create the state directory first and write the state file only once the
container's init process is already in its cgroup. A process seen in that window is
matched *provisionally* when its cgroup's last component is the name of such a pending
directory (the default `cgroupsPath` is `/<id>`); its metadata follows once the state
file exists (`state_ready`).
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

from spyderd.enrich.cgroups import CgroupMount, relative_path

# (glob below fs_root, runtime). Docker's and containerd's own runc roots come after
# the cgroup patterns for those runtimes, but also cover custom cgroup parents.
STATE_ROOTS = (
    ("/run/runc", "runc"),
    ("/run/crun", "crun"),
    ("/run/user/*/runc", "runc"),
    ("/run/user/*/crun", "crun"),
    ("/run/docker/runtime-runc/*", "docker"),
    ("/run/containerd/runc/*", "containerd"),
)
STATE_FILES = {"crun": "status"}  # else state.json
ROOT_PARENTS = ("/run", "/run/user", "/run/docker", "/run/docker/runtime-runc", "/run/containerd",
                "/run/containerd/runc")


@dataclass(frozen=True, slots=True)
class StateEntry:
    runtime: str
    state_dir: Path
    cgroup_paths: frozenset[str]
    provisional: bool = False  # matched by directory name; no state file yet


class StateIndex:
    def __init__(self, fs_root: str, mounts: list[CgroupMount]) -> None:
        self.fs_root = fs_root.rstrip("/")
        self.mounts = mounts
        self._mtimes: dict[str, float] = {}
        self._entries: dict[str, StateEntry] = {}  # state dir -> entry
        self._by_path: dict[str, StateEntry] = {}
        self._pending: dict[str, tuple[str, Path]] = {}  # dir name -> (runtime, dir)
        self._roots_sig: list[int] = []
        self._roots_cache: list[tuple[str, str]] = []
        self.scans = 0

    @property
    def incomplete(self) -> bool:
        """A state directory existed without its state file at the last scan."""
        return bool(self._pending)

    def lookup(self, cgroup_paths: list[str]) -> StateEntry | None:
        """The state entry whose container owns one of these cgroup paths."""
        if not cgroup_paths:
            return None
        hit = self._find(cgroup_paths)
        if hit is None and self._stale():
            self.rescan()
            hit = self._find(cgroup_paths)
        return hit or self._provisional(cgroup_paths)

    def find(self, cid: str, runtime: str = "") -> Path | None:
        """The state directory of container `cid` (of `runtime`, if given)."""
        def match() -> Path | None:
            for e in self._entries.values():
                if e.state_dir.name == cid and (not runtime or e.runtime == runtime):
                    return e.state_dir
            return None

        found = match()
        if found is None and self._stale():
            self.rescan()
            found = match()
        return found

    def state_ready(self, cid: str) -> bool:
        """Has the pending directory of `cid` got its state file by now? (one stat)"""
        pending = self._pending.get(cid)
        if pending is None:
            return False
        runtime, d = pending
        return (d / STATE_FILES.get(runtime, "state.json")).exists()

    def _find(self, paths: list[str]) -> StateEntry | None:
        for p in paths:
            e = self._by_path.get(p)
            if e is not None:
                return e
        return None

    def _provisional(self, paths: list[str]) -> StateEntry | None:
        for p in paths:
            pending = self._pending.get(p.rsplit("/", 1)[-1])
            if pending is not None:
                return StateEntry(pending[0], pending[1], frozenset({p}), provisional=True)
        return None

    def _roots(self) -> list[tuple[str, str]]:
        """Existing state roots; the globs are expanded again only when a directory they
        walk through changed (a stat each), since globbing is the costly part of a check."""
        sig = []
        for parent in ROOT_PARENTS:
            try:
                sig.append(os.stat(self.fs_root + parent).st_mtime_ns)
            except OSError:
                sig.append(0)
        if sig != self._roots_sig:
            self._roots_sig = sig
            self._roots_cache = [(d, runtime) for pattern, runtime in STATE_ROOTS
                                 for d in glob.glob(self.fs_root + pattern)]
        return self._roots_cache

    def _stale(self) -> bool:
        """Cheap check (a glob and a stat per root), run only on a lookup miss."""
        if self._pending:
            return True
        roots = self._roots()
        if {d for d, _ in roots} != set(self._mtimes):
            return True
        for d, _ in roots:
            try:
                if os.stat(d).st_mtime != self._mtimes.get(d):
                    return True
            except OSError:
                return True
        return False

    def rescan(self) -> None:
        self.scans += 1
        self._mtimes, entries, pending = {}, {}, {}
        for d, runtime in self._roots():
            try:
                self._mtimes[d] = os.stat(d).st_mtime
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                sd = Path(d) / name
                e = self._entries.get(str(sd)) or self._read(runtime, sd)
                if e is not None:
                    entries[str(sd)] = e
                elif sd.is_dir() and not (sd / STATE_FILES.get(runtime, "state.json")).exists():
                    pending[name] = (runtime, sd)  # a broken state file is not "pending"
        self._entries, self._pending = entries, pending
        self._by_path = {p: e for e in entries.values() for p in e.cgroup_paths}

    def _read(self, runtime: str, sd: Path) -> StateEntry | None:
        paths: set[str] = set()
        try:
            if runtime == "crun":
                st = json.loads((sd / "status").read_bytes())
                cg = st.get("cgroup-path") or ""
                if cg:
                    paths.add(relative_path(cg, self.mounts) if cg.startswith("/sys/") else cg)
            else:
                st = json.loads((sd / "state.json").read_bytes())
                for p in (st.get("cgroup_paths") or {}).values():
                    if p:
                        paths.add(relative_path(p, self.mounts))
        except (OSError, ValueError, AttributeError):
            return None
        paths.discard("/")
        return StateEntry(runtime, sd, frozenset(paths)) if paths else None
