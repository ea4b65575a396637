"""The attack catalogue run for real against ONE spyderd with the default rules.

The module fixture starts spyderd once, runs every benign look-alike, then every technique
followed by its cleanup (all as root, all against loopback), and leaves the findings in
journald. With `-k` selecting some techniques' tests only, only those techniques (and their
look-alikes) run. Each technique's test then waits for a finding of each of its rules whose chain
holds the technique's own script process; each look-alike's test checks its rules stayed
quiet on it (after the technique's findings arrived, so the look-alike's events, which came
first, were all evaluated). The run rewrites docs/detections.md from the catalogue.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from catalogue import PRELUDE, TECHNIQUES, Technique, render_doc
from conftest import REPO, Spyderd, journal_entries, wait_for

from spyderd.graph.query import History
from spyderd.graph.store import Store

pytestmark = pytest.mark.root
WAIT = 30  # seconds a finding may take to reach journald once the daemon caught up
CATCH_UP = 600  # seconds the daemon may lag behind the whole catalogue on a loaded machine


@dataclass
class Ran:
    """What the fixture ran: the daemon, the run's tag and each script's outcome."""

    daemon: Spyderd
    tag: str
    scripts: dict[str, Path]
    results: dict[str, subprocess.CompletedProcess]


def _script(base: Path, tag: str, name: str, body: str) -> Path:
    """/var/lib/atk-XXXX/TAG-a07.sh, run by its name (journald cuts long arguments)."""
    path = base / f"{tag}-{name}.sh"
    path.write_text(PRELUDE + "\n" + body + "\ntrue\n", encoding="utf-8")
    return path


def _run(path: Path, env: dict) -> subprocess.CompletedProcess:
    """`bash TAG-a07.sh` from the scripts' directory: the name is short enough to survive
    the cut of arguments in journald's compact chain."""
    return subprocess.run(["bash", path.name], cwd=path.parent, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=90, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def attack_daemon(journald):
    """One spyderd for the catalogue and the benign workload (starting one costs seconds):
    findings sent 0.3 s after their match and never folded (two techniques may run the
    same command line). They are told apart by the processes in the findings' chains."""
    base = Path(tempfile.mkdtemp(prefix="spyder-attacks-"))
    cfg = base / "spyderd.yaml"
    cfg.write_text("findings:\n  settle: 0.3\n  fold_window: 0\n")
    daemon = Spyderd(base, [str(REPO / "rules")], cfg)
    daemon.start(wait=300)  # bcc compiles the probes where no CO-RE objects were built
    yield daemon
    try:
        daemon.stop()
    except subprocess.TimeoutExpired:  # a loaded machine: the flush may outlast 30 s
        daemon.kill(signal.SIGKILL)
    shutil.rmtree(base, ignore_errors=True)


def _selected(request: pytest.FixtureRequest) -> set[str] | None:
    """Slugs of the techniques whose tests this session runs (`-k`), or None for all of
    them: the whole module (CI), or a test that needs the whole catalogue to have run."""
    slugs: set[str] = set()
    for item in request.session.items:
        if getattr(item, "module", None) is not request.module:
            continue
        callspec = getattr(item, "callspec", None)
        if callspec is None or "t" not in callspec.params:
            if item.name != "test_benign_workload_raises_nothing_high":
                return None
            continue
        slugs.add(callspec.params["t"].slug)
    return None if len(slugs) == len(TECHNIQUES) else slugs


@pytest.fixture(scope="module")
def ran(attack_daemon: Spyderd, request: pytest.FixtureRequest):
    daemon = attack_daemon
    pid = daemon.proc.pid if daemon.proc else 0
    tag = uuid.uuid4().hex[:8]
    scripts_dir = Path(tempfile.mkdtemp(prefix="atk-", dir="/var/lib"))
    scripts: dict[str, Path] = {}
    results: dict[str, subprocess.CompletedProcess] = {}
    only = _selected(request)
    chosen = [(i, t) for i, t in enumerate(TECHNIQUES) if only is None or t.slug in only]
    try:
        for i, t in chosen:  # look-alikes first: their events precede the findings waited on
            if t.benign:
                _prepare(t, i, "benign", t.benign, scripts_dir, tag, scripts, results, pid)
        for i, t in chosen:
            _prepare(t, i, "attack", t.script, scripts_dir, tag, scripts, results, pid)
        _caught_up(daemon, scripts_dir / f"{tag}-end")
        yield Ran(daemon, tag, scripts, results)
        (REPO / "docs/detections.md").write_text(render_doc(), encoding="utf-8")
    finally:
        shutil.rmtree(scripts_dir, ignore_errors=True)


def _caught_up(daemon: Spyderd, marker: Path) -> None:
    """Wait until the daemon's findings have caught up with the scripts: on a loaded machine
    it may lag minutes behind a burst of 80 techniques. A marker's finding comes after every
    technique's events (findings leave in order), so the per-technique wait can stay short."""
    subprocess.run(["touch", "-t", "200001010000", str(marker)], check=True)
    assert daemon.proc is not None
    got = wait_for(lambda: [e for e in journal_entries(
        SYSLOG_IDENTIFIER="spyderd", SPYDER_RULE="File timestamps set explicitly",
        _PID=str(daemon.proc.pid)) if marker.name in e.get("MESSAGE", "")], CATCH_UP, interval=1)
    assert got, f"spyderd did not report the end marker within {CATCH_UP} s"


def _prepare(t: Technique, index: int, role: str, body: str, scripts_dir: Path, tag: str,
             scripts: dict, results: dict, daemon_pid: int) -> None:  # fmt: skip
    """Write and run one script (then the technique's cleanup, for an attack)."""
    key = f"{role}:{t.slug}"
    state = scripts_dir / f"{index:02d}.{role}.state"
    state.mkdir()
    env = dict(os.environ, TAG=tag, S=str(state), SPYDERD_PID=str(daemon_pid))
    path = _script(scripts_dir, tag, f"{role[0]}{index:02d}", body)
    scripts[key] = path
    results[key] = _run(path, env)
    if role == "attack" and t.cleanup:
        done = _run(_script(scripts_dir, tag, f"c{index:02d}", t.cleanup), env)
        assert done.returncode == 0, f"cleanup of {t.slug} failed: {done.stderr}"


_ANCESTRY: dict[str, list[str]] = {}  # process id -> its stored ancestry's arguments


def _stored_ancestry(daemon: Spyderd, process_id: str) -> list[str]:
    """The arguments of the process and every ancestor, read from the daemon's store (what
    `spyderctl trace` shows an analyst when journald's chain was cut to fit)."""
    if process_id not in _ANCESTRY:
        store = Store(daemon.state, readonly=True)
        try:
            history = History(store)
            node = history.node(process_id)
            if node is None:  # not flushed yet: ask again on the next wait round
                return []
            _ANCESTRY[process_id] = [" ".join(map(str, n.attrs.get("args") or []))
                                     for n in (node, *history.ancestors(node))]  # fmt: skip
        finally:
            store.close()
    return _ANCESTRY[process_id]


def _holds(daemon: Spyderd, entry: dict, needle: str) -> bool:
    """Does the finding's chain hold a process whose arguments name `needle`? journald's
    chain is cut to 4 KiB (arguments shortened, long exec chains such as pyenv's shims
    elided in the middle); when it was, the stored trace decides."""
    try:
        chain = json.loads(entry.get("SPYDER_CHAIN_JSON", "[]"))
    except ValueError:
        chain = []
    if any(needle in " ".join(map(str, node.get("args") or [])) for node in chain):
        return True
    roles = [node.get("role") for node in chain]
    below = chain[roles.index("root") if "root" in roles else 0:]
    if not any(node.get("role") == "elided" or node.get("args_cut") for node in below):
        return False  # nothing cut from the trace's root down
    return any(needle in args for args in _stored_ancestry(daemon, entry["SPYDER_PROCESS_ID"]))


def _findings(daemon: Spyderd, rule: str, needle: str) -> list[dict]:
    """This daemon's findings of `rule` about `needle` (journald keeps earlier runs' too)."""
    assert daemon.proc is not None
    return [e for e in journal_entries(SYSLOG_IDENTIFIER="spyderd", SPYDER_RULE=rule,
                                       _PID=str(daemon.proc.pid))
            if _holds(daemon, e, needle)]  # fmt: skip


def _expect(ran: Ran, t: Technique) -> dict[str, dict]:
    needle = ran.scripts[f"attack:{t.slug}"].name
    found: dict[str, dict] = {}
    deadline = time.monotonic() + WAIT
    for rule in t.rules:
        left = max(1.0, deadline - time.monotonic())
        got = wait_for(lambda rule=rule: _findings(ran.daemon, rule, needle), left, interval=0.5)
        if got:
            found[rule] = got[-1]
    return found


@pytest.mark.parametrize("t", [pytest.param(t, id=t.slug) for t in TECHNIQUES])
def test_technique_detected(ran: Ran, t: Technique) -> None:
    found = _expect(ran, t)
    missing = [r for r in t.rules if r not in found]
    result = ran.results[f"attack:{t.slug}"]
    assert not missing, (
        f"{t.id} {t.name}: no finding of {missing} whose chain holds "
        f"{ran.scripts[f'attack:{t.slug}'].name}\nscript exit {result.returncode}, stderr:\n"
        f"{result.stderr[-2000:]}\nspyderd log:\n{ran.daemon.log.read_text()[-2000:]}"
    )
    for rule, entry in found.items():
        assert entry["SPYDER_MITRE"], f"{rule}: no ATT&CK ids"
        assert entry["SPYDER_FINDING_ID"] and entry["SPYDER_TRACE_ID"]


BENIGN = [t for t in TECHNIQUES if t.benign]


@pytest.mark.parametrize("t", [pytest.param(t, id=t.slug) for t in BENIGN])
def test_lookalike_is_quiet(ran: Ran, t: Technique) -> None:
    assert _expect(ran, t), f"{t.slug}: the technique itself was not seen, cannot judge"
    needle = ran.scripts[f"benign:{t.slug}"].name
    noisy = {rule: _findings(ran.daemon, rule, needle) for rule in t.quiet_rules}
    noisy = {rule: [e["MESSAGE"] for e in got] for rule, got in noisy.items() if got}
    assert not noisy, f"{t.slug}: the benign look-alike raised {noisy}"


def test_aggregates_are_counted_in_status(ran: Ran) -> None:
    r = ran.daemon.ctl("status", "-o", "json", check=True)
    aggs = json.loads(r.stdout)["rules_stats"]["aggregates"]
    assert aggs["Discovery burst from one shell"]["fired"] >= 4, aggs
    assert aggs["Port sweep from one process"]["fired"] >= 1, aggs
    text = ran.daemon.ctl("status", check=True).stdout
    assert "aggregate rules: " in text and "fired " in text, text


# -- the benign workload ---------------------------------------------------------------------

BLOCKING = ("high", "critical")


def _stored_findings(d: Spyderd, since: float) -> list[dict]:
    r = d.ctl("findings", "--since", f"@{since:.0f}", "-o", "json", "--no-pager", check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def _below(history: History, process_id: str, needle: str) -> bool:
    """Does the process descend from (or is it) a process whose arguments name `needle`?"""
    node = history.node(process_id)
    if node is None:
        return False
    return any(needle in " ".join(map(str, n.attrs.get("args") or []))
               for n in (node, *history.ancestors(node)))  # fmt: skip


def test_benign_workload_raises_nothing_high(attack_daemon: Spyderd, tmp_path: Path) -> None:
    """apt, pip, a compiler, git, an HTTP server, cron.daily, sudo/su, logrotate, adduser and
    runc, as an admin does them: 0 high or critical findings; the rest listed and counted."""
    d = attack_daemon
    tag = uuid.uuid4().hex[:8]
    script = tmp_path / f"benign-workload-{tag}.sh"
    shutil.copy(Path(__file__).with_name("benign_workload.sh"), script)
    since = time.time() - 1
    r = subprocess.run(["bash", str(script)], env=dict(os.environ, TAG=tag),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900,
                       check=False)  # fmt: skip
    assert r.returncode == 0, f"the workload failed:\n{r.stdout}\n{r.stderr[-3000:]}"
    # a marker after the workload: once its finding is stored, so is everything before it
    # (apt, pip and gcc make a burst of events: on a loaded machine the daemon may lag
    # minutes behind, as for the catalogue)
    marker = tmp_path / f"benign-marker-{tag}"
    subprocess.run(["touch", "-t", "200001010000", str(marker)], check=True)
    assert wait_for(lambda: [f for f in _stored_findings(d, since)
                             if str(marker) in json.dumps(f)], CATCH_UP, interval=2), (
        f"marker finding not stored within {CATCH_UP} s")
    history = History(Store(d.state, readonly=True))
    ours = [f for f in _stored_findings(d, since) if _below(history, f["process_id"], script.name)]
    counts: dict[str, int] = {}
    for f in ours:
        counts[f"{f['severity']}: {f['rule']}"] = counts.get(f"{f['severity']}: {f['rule']}", 0) + 1
    print(f"benign workload: {len(ours)} findings", json.dumps(counts, indent=1, sort_keys=True))
    blocking = [f"{f['severity']} {f['rule']}: {f.get('message', '')}" for f in ours
                if f["severity"] in BLOCKING]  # fmt: skip
    assert not blocking, "high or critical findings on benign work:\n" + "\n".join(blocking)
