"""The shipped unit, catalog, sysusers/tmpfiles entries and .deb, checked with systemd's and
dpkg's own tools (fast: nothing boots). The booted-systemd acceptance test is test_systemd.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from spyderd.daemon import service

PKG = REPO / "packaging"
UNIT = PKG / "spyderd.service"
MAX_EXPOSURE = 4.0  # `systemd-analyze security` says 3.5 today (bench/README.md)


def unit_settings(path: Path) -> dict[str, list[str]]:
    """key -> every value it is given (unit files repeat keys, configparser cannot)."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.startswith(("#", ";", "[")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, **kw)


# Where systemd looks up the unit's bare `ExecStart=spyderd` (its fixed search path).
SYSTEMD_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin")


def test_systemd_analyze_verify_passes():
    found = [d for d in SYSTEMD_PATH if Path(d, "spyderd").exists()]
    assert found, "no spyderd in systemd's search path (run packaging/install.sh)"
    r = run("systemd-analyze", "verify", str(UNIT))
    assert r.returncode == 0, r.stderr
    assert "spyderd" not in r.stderr, r.stderr  # no warning about our unit either


def test_security_exposure_is_bounded():
    r = run("systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT))
    m = re.search(r"Overall exposure level for spyderd\.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, r.stdout


def test_unit_is_a_notify_service_with_watchdog_reload_and_hardening():
    s = unit_settings(UNIT)
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["Restart"] == "on-failure"
    assert one["ExecStart"] == "spyderd" and one["ExecReload"] == "spyderctl reload"
    assert int(one["WatchdogSec"]) >= 2  # the loop pings every second at most
    for key in ("StateDirectory", "RuntimeDirectory", "ConfigurationDirectory"):
        assert one[key] == "spyderd", key
    assert one["ProtectSystem"] == "strict" and one["ProtectHome"] == "read-only"
    assert one["NoNewPrivileges"] == "yes" and one["Group"] == "spyder"
    caps = one["CapabilityBoundingSet"].split()
    assert {"CAP_BPF", "CAP_PERFMON"} <= set(caps)
    assert not {"CAP_SYS_MODULE", "CAP_NET_ADMIN", "CAP_SYS_RAWIO"} & set(caps)
    allowed = s["SystemCallFilter"][0].split()
    assert {"bpf", "perf_event_open"} <= set(allowed)
    denied = s["SystemCallFilter"][1].lstrip("~").split()
    assert "@debug" not in denied  # it holds perf_event_open


def test_catalog_has_every_message_id(tmp_path):
    ids = {v for k, v in vars(service).items() if k.startswith("MSG_")}
    text = (PKG / "spyderd.catalog").read_text()
    entries = re.findall(r"^-- ([0-9a-f]{32})$", text, re.MULTILINE)
    assert len(entries) == len(set(entries)) and ids <= set(entries)
    cat = tmp_path / "usr/lib/systemd/catalog"
    cat.mkdir(parents=True)
    shutil.copy(PKG / "spyderd.catalog", cat)
    (tmp_path / "var/lib/systemd/catalog").mkdir(parents=True)
    r = run("journalctl", f"--root={tmp_path}", "--update-catalog")
    assert r.returncode == 0, r.stderr
    listed = run("journalctl", f"--root={tmp_path}", "--list-catalog").stdout
    for mid in ids:
        assert mid in listed, listed
    gap = run("journalctl", f"--root={tmp_path}", "--dump-catalog",
              service.MSG_GAP_UNCLEAN).stdout
    assert "@SPYDER_GAP_SECONDS@" in gap and "no system activity was recorded" in gap


def test_sysusers_and_tmpfiles_create_group_and_dirs(tmp_path):
    (tmp_path / "etc").mkdir()
    r = run("systemd-sysusers", f"--root={tmp_path}", str(PKG / "sysusers.conf"))
    assert r.returncode == 0, r.stderr
    assert re.search(r"^spyder:x:\d+:", (tmp_path / "etc/group").read_text(), re.MULTILINE)
    r = run("systemd-tmpfiles", f"--root={tmp_path}", "--create", str(PKG / "tmpfiles.conf"))
    assert r.returncode == 0, r.stderr
    for d in ("run/spyderd", "var/lib/spyderd", "var/log/spyderd"):
        assert oct((tmp_path / d).stat().st_mode & 0o7777) == "0o750", d


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    r = run("bash", str(PKG / "build-deb.sh"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.split()[-1])
    version = re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    assert version and path.name == f"spyderd_{version.group(1)}_all.deb"
    return path


def test_deb_control_and_contents(deb):
    info = run("dpkg-deb", "-f", str(deb)).stdout
    fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", info, re.MULTILINE))
    assert fields["Package"] == "spyderd" and fields["Architecture"] == "all"
    depends = fields["Depends"]
    for pkg in ("libbpf1", "python3-systemd", "python3-lark", "python3-yaml",
                "python3-lmdb", "python3-pyroute2"):
        assert pkg in depends, depends
    # no compiler on the host: bcc (clang, LLVM) only recommended, for kernels without BTF
    assert "bpfcc" not in depends and "clang" not in depends
    assert "graphviz" in fields["Recommends"] and "python3-bpfcc" in fields["Recommends"]
    files = run("dpkg-deb", "-c", str(deb)).stdout
    for path in ("./usr/sbin/spyderd", "./usr/bin/spyderctl",
                 "./usr/lib/python3/dist-packages/spyderd/daemon/wiring.py",
                 "./usr/lib/python3/dist-packages/spyderd/rules/condition.lark",
                 "./usr/share/spyderd/probes/common.h", "./usr/share/spyderd/rules/",
                 "./usr/share/spyderd/probes/build/process.bpf.o",
                 "./usr/share/spyderd/probes/build/files.bpf.o",
                 "./usr/share/spyderd/kernel-headers.sh", "./lib/systemd/system/spyderd.service",
                 "./usr/lib/sysusers.d/spyderd.conf", "./usr/lib/tmpfiles.d/spyderd.conf",
                 "./usr/lib/systemd/catalog/spyderd.catalog", "./etc/spyderd/spyderd.yaml"):
        assert path in files, path
    assert "__pycache__" not in files
    assert run("dpkg-deb", "-f", str(deb), "Installed-Size").stdout.strip().isdigit()


def test_deb_maintainer_scripts_and_conffiles(deb, tmp_path):
    ctrl = tmp_path / "DEBIAN"
    assert run("dpkg-deb", "-e", str(deb), str(ctrl)).returncode == 0
    assert (ctrl / "conffiles").read_text().split() == ["/etc/spyderd/spyderd.yaml"]
    for script in ("postinst", "prerm", "postrm"):
        r = run("sh", "-n", str(ctrl / script))
        assert r.returncode == 0, (script, r.stderr)
    assert run("sh", "-n", str(PKG / "kernel-headers.sh")).returncode == 0
    assert run("bash", "-n", str(PKG / "install.sh")).returncode == 0


def test_deb_payload_validates_shipped_rules(deb, tmp_path):
    """The packaged Python package (grammar included) loads the packaged rule pack."""
    root = tmp_path / "x"
    assert run("dpkg-deb", "-x", str(deb), str(root)).returncode == 0
    site = root / "usr/lib/python3/dist-packages"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import spyderd.daemon.wiring as d; "
            "assert d.__file__.startswith(sys.argv[1]), d.__file__; "
            "sys.exit(d.main(['--check', '--rules', sys.argv[2]]))")
    r = run(sys.executable, "-I", "-c", code, str(site), str(root / "usr/share/spyderd/rules"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rules ok" in r.stdout
    entry = (root / "usr/sbin/spyderd").read_text()
    assert entry.startswith("#!/usr/bin/python3 -I\n") and "spyderd.daemon" in entry
