"""Hostile input, property-tested: every parser answers garbage with a clear, counted
error or a sane value, never with an exception that would reach the daemon's loop.

Parsers covered: probe ring-buffer records (truncated, oversized, garbage), the config
file, rule YAML structure, journald alert entries (huge or binary MESSAGE), container
runtime state files, and /proc contents that a process controls (comm, argv)."""

from __future__ import annotations

import json
import string
import struct
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spyderd.capture.journal import JournalFollower
from spyderd.capture.registry import DecodeContext, probes
from spyderd.capture.snapshot import read_proc
from spyderd.common.config import load_config, schema
from spyderd.enrich import procfs
from spyderd.enrich.runtimes import ContainerInfo, StateReader
from spyderd.errors import ConfigError, RuleError
from spyderd.graph import Graph
from spyderd.model import AlertEvent, Event, event_to_dict
from spyderd.rules import load_rules

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
HDR = struct.Struct("<IIIIIIQQ16s")

# -- ring-buffer records -------------------------------------------------------------------

DECODERS = sorted({(kind, name, fn) for p in probes() for kind, (name, fn) in
                   p.decoders.items()}, key=lambda d: d[0])


def _record(kind: int, tail: bytes, comm: bytes) -> bytes:
    return HDR.pack(kind, 4242, 4242, 0, 0, 0, 10**9, 1, comm) + tail


@pytest.mark.parametrize(("kind", "name", "fn"), DECODERS, ids=[d[1] for d in DECODERS])
@SETTINGS
@given(tail=st.one_of(st.binary(max_size=64), st.binary(min_size=64, max_size=9000)),
       comm=st.binary(min_size=16, max_size=16), cut=st.integers(0, 200))
def test_records_decode_or_fail_cleanly(kind, name, fn, tail, comm, cut):
    """Truncated, oversized and garbage records: a decoder returns an event, None (a
    counted filter) or raises Exception (counted as a decode error by the capture); an
    event it returns is a storable one that the graph can apply."""
    buf = _record(kind, tail, comm)
    for raw in (buf, buf[:max(4, len(buf) - cut)], buf + tail * 3):
        try:
            ev = fn(raw, DecodeContext(boot_to_wall=0))
        except Exception:  # noqa: BLE001, S112 - what Capture._decode counts
            continue
        if ev is None:
            continue
        assert isinstance(ev, Event)
        json.dumps(event_to_dict(ev))  # storable: the store and journald take JSON
        Graph(None, "fuzz", boot_wall_ns=0).apply(ev)


# -- the config file -------------------------------------------------------------------------

def _values():
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                        st.floats(allow_nan=True), st.text(max_size=20))
    return st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=3),
                                                     st.dictionaries(st.text(max_size=8), c,
                                                                     max_size=3)),
                        max_leaves=6)


def _config_docs():
    keys = [k for k in schema()] + ["bogus"]
    section = st.dictionaries(st.sampled_from(
        sorted({k for v in schema().values() if isinstance(v, dict) for k in v} | {"x"})),
        _values(), max_size=4)
    return st.dictionaries(st.sampled_from(keys), st.one_of(section, _values()), max_size=5)


@SETTINGS
@given(doc=_config_docs(), raw=st.text(max_size=200))
def test_config_answers_with_located_errors(doc, raw):
    with tempfile.TemporaryDirectory() as d:
        for text in (yaml.safe_dump(doc), raw):
            p = Path(d) / "spyderd.yaml"
            p.write_text(text)
            try:
                cfg = load_config(str(p), required=True)
            except ConfigError as exc:
                assert str(exc).startswith(str(p)), exc
                continue
            assert isinstance(cfg.store.batch_delay, float)


# -- rule YAML structure ---------------------------------------------------------------------

RULE_KEYS = ["rule", "macro", "list", "description", "event", "condition", "severity",
             "priority", "tags", "output", "exceptions", "items", "enabled", "append",
             "aggregate", "desc", "override", "x"]


def _rule_docs():
    item = st.dictionaries(st.sampled_from(RULE_KEYS), _values(), max_size=6)
    good = st.fixed_dictionaries({"rule": st.text(min_size=1, max_size=10),
                                  "event": st.sampled_from(["exec", "connect", "x"]),
                                  "condition": st.sampled_from(["process.name = sh", "(", ""]),
                                  "severity": st.sampled_from(["high", "bogus", 3]),
                                  "output": st.text(max_size=20)})
    return st.one_of(st.lists(st.one_of(item, good, _values()), max_size=5), _values())


@SETTINGS
@given(doc=_rule_docs())
def test_rule_files_answer_with_rule_errors(doc):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "r.yaml"
        p.write_text(yaml.safe_dump(doc, allow_unicode=True))
        try:
            load_rules([str(p)])
        except RuleError as exc:
            assert str(p) in str(exc)


# -- journald alert entries ------------------------------------------------------------------

@SETTINGS
@given(msg=st.one_of(st.binary(max_size=300), st.text(max_size=300),
                     st.binary(min_size=70_000, max_size=70_100)),
       pid=st.one_of(st.integers(-5, 2**40), st.text(max_size=5), st.none()),
       prio=st.one_of(st.integers(-3, 12), st.binary(max_size=3), st.none()),
       ident=st.one_of(st.text(max_size=20), st.binary(max_size=20)),
       transport=st.sampled_from(["kernel", "stdout", "journal", "audit"]))
def test_journal_entries_become_bounded_alerts(msg, pid, prio, ident, transport):
    f = JournalFollower(lambda pid, t, unit: None)
    entry = {"MESSAGE": msg, "_PID": pid, "PRIORITY": prio, "SYSLOG_IDENTIFIER": ident,
             "_TRANSPORT": transport, "_COMM": ident,
             "__REALTIME_TIMESTAMP": datetime.now()}
    ev = f._event(entry)
    if ev is None:
        return
    assert isinstance(ev, AlertEvent)
    assert isinstance(ev.message, str) and len(ev.message) <= 4096
    assert isinstance(ev.pid, int) and isinstance(ev.priority, int)
    json.dumps(event_to_dict(ev))


# -- container runtime state files -----------------------------------------------------------

CID = "a" * 64
STATE_FILES = {
    "docker": f"var/lib/docker/containers/{CID}/config.v2.json",
    "containerd": f"run/containerd/io.containerd.runtime.v2.task/k8s.io/{CID}/config.json",
    "cri-o": f"run/containers/storage/overlay-containers/{CID}/userdata/config.json",
    "podman": "var/lib/containers/storage/overlay-containers/containers.json",
    "runc": f"run/runc/{CID}/state.json",
    "crun": f"run/crun/{CID}/status",
}


def _json_docs():
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**65, 2**65),
                     st.text(max_size=12))
    keys = st.sampled_from(["Config", "State", "Name", "Image", "Labels", "Pid", "StartedAt",
                            "annotations", "id", "names", "metadata", "created", "pid",
                            "init_process_pid", "config", "labels", "bundle", "image",
                            "io.kubernetes.pod.name", "name"])
    return st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                  st.dictionaries(keys, c, max_size=5)),
                        max_leaves=12)


@SETTINGS
@given(runtime=st.sampled_from(sorted(STATE_FILES)), doc=_json_docs(),
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_runtime_state_files_never_raise(runtime, doc, raw):
    """State files an attacker's image or container can influence (labels, annotations,
    names) or that a broken runtime left behind: a ContainerInfo or None, strings where
    strings belong, errors counted."""
    with tempfile.TemporaryDirectory() as root:
        p = Path(root) / STATE_FILES[runtime]
        p.parent.mkdir(parents=True)
        p.write_bytes(raw if raw is not None else json.dumps(doc).encode())
        reader = StateReader(root)
        if runtime == "docker":
            info = reader.docker(CID)
        elif runtime == "containerd":
            info = reader.containerd(CID)
        elif runtime in ("cri-o", "podman"):
            info = reader.containers_storage(CID, runtime)
        else:
            info = reader.oci_state(runtime, p.parent)
        if info is None:
            return
        assert isinstance(info, ContainerInfo)
        for name in ("id", "name", "image", "k8s_pod", "k8s_namespace", "k8s_pod_uid",
                     "k8s_container", "bundle"):
            assert isinstance(getattr(info, name), str), name
        assert isinstance(info.root_pid, int) and isinstance(info.created, int)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.labels.items())


# -- /proc contents a process controls ----------------------------------------------------------

HOSTILE_ARG = st.one_of(
    st.binary(min_size=1, max_size=60).filter(lambda b: b"\0" not in b),
    st.sampled_from([b"line1\nSPYDER_RULE=forged\nPRIORITY=0", b"\x1b[2J\x1b]0;owned\x07",
                     b"\xff\xfe invalid utf-8 \xc3\x28", b"x" * 131_000]))
COMM = st.binary(min_size=1, max_size=15).filter(lambda b: b"\0" not in b and b"\n" not in b)


@pytest.mark.root
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=st.lists(HOSTILE_ARG, min_size=1, max_size=3), comm=COMM)
def test_proc_of_a_hostile_process_parses(args, comm):
    """A real process with newlines, escapes, invalid UTF-8 or 128 KiB in its argv and a
    comm holding ') (' and spaces: the snapshot and the enricher read it back exactly."""
    assume(sum(len(a) for a in args) < 200_000)
    code = ("import sys, time; open('/proc/self/comm', 'wb').write(bytes.fromhex(sys.argv[1]));"
            " print('ready', flush=True); time.sleep(30)")
    proc = subprocess.Popen([sys.executable, "-c", code, comm.hex(), *args],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        info = read_proc(proc.pid)
        facts = procfs.read_facts(proc.pid)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert info is not None and facts is not None
    want_comm = comm.decode("utf-8", "backslashreplace")
    assert info.comm == want_comm and facts.comm == want_comm
    assert info.args[4:] == [a.decode("utf-8", "backslashreplace") for a in args]
    assert info.ppid == facts.ppid > 0


@given(comm=st.text(alphabet=string.printable + ")( ", max_size=15))
def test_stat_comm_with_parens_and_spaces(comm):
    stat = f"77 ({comm}) S 1 77 77 0 -1 4194560 " + " ".join(["0"] * 40)
    got, rest = procfs.parse_stat(stat)
    assert got == comm and rest[0] == "S" and rest[1] == "1"
