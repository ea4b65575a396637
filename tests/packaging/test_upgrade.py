"""A real upgrade, under a real systemd: the previous release's package, built from its source
(a fixture), installed and run until its store holds a finding, its conffile edited by hand; then
this checkout's package installed over it.

- the store is migrated: the old finding reads back through the new spyderctl, the schema
  is this version's;
- the conffile is handled the Debian way: the local edit is kept (`--force-confold`, what an
  unattended upgrade does), the new default lands next to it as `spyderd.yaml.dpkg-dist`,
  and the new daemon runs with the old file;
- the service restarts (a new main pid, active, a clean capture-gap report);
- `dpkg -r` keeps the data and the conffile, `dpkg -P` removes both.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
from conftest import REPO, wait_for
from nspawn import Container, cached_root

from spyderd.daemon.service import MSG_GAP_CLEAN
from spyderd.graph.store import SCHEMA_VERSION

pytestmark = [pytest.mark.root, pytest.mark.slow]
PREVIOUS = "0.1.0"
PREVIOUS_SOURCE = REPO / "tests/packaging/fixtures/spyderd-0.1.0.tar.xz"
UNIT = "spyderd.service"
RULE = "Program run from a temporary directory"
START_TIMEOUT = 330
EDIT = "# edited on this host: keep me\n"


def _version(text: str) -> str:
    m = re.search(r'^version = "(.+)"', text, re.MULTILINE)
    assert m, "no version in pyproject.toml"
    return m.group(1)


def build_previous(base) -> str:
    """The .deb of the previous release, built by that release's own build-deb.sh.

    Its source comes from a fixture, `git archive --prefix=spyderd-0.1.0/ v0.1.0 spyderd
    probes packaging pyproject.toml README.md rules`, not from the git tag: CI's clone of main
    need not carry tags or history.
    """
    subprocess.run(["tar", "-xJ", "-C", str(base), "-f", str(PREVIOUS_SOURCE)], check=True)
    src = base / "previous"
    (base / f"spyderd-{PREVIOUS}").rename(src)
    out = subprocess.run(["bash", str(src / "packaging/build-deb.sh"), "--out", str(base)],
                         capture_output=True, text=True, check=True).stdout.split()[-1]
    return out


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    base = tmp_path_factory.mktemp("upgrade")
    old = build_previous(base)
    new = subprocess.run(["bash", str(REPO / "packaging/build-deb.sh"), "--out",
                          str(base / "new")], capture_output=True, text=True,
                         check=True).stdout.split()[-1]
    assert _version((REPO / "pyproject.toml").read_text()) != \
        _version((base / "previous/pyproject.toml").read_text()), "bump the version"
    lower = cached_root(REPO / "packaging/debian/control.in", base / "debootstrap.log")
    c = Container(lower, base / "c")
    try:
        shutil.copy(old, c.root / "var/tmp/old.deb")
        shutil.copy(new, c.root / "var/tmp/new.deb")
        c.boot()
        yield c
    finally:
        c.close()


def journal(c: Container, *match: str) -> list[dict]:
    r = c.run("journalctl", "-u", "spyderd", "-o", "json", "--no-pager", *match, check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def show(c: Container, *props: str) -> dict[str, str]:
    r = c.run("systemctl", "show", UNIT, *(f"-p{p}" for p in props), check=True)
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def stored_findings(c: Container) -> list[dict]:
    r = c.run("spyderctl", "findings", "--rule", RULE, "-o", "json", "--no-pager")
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def schema(c: Container) -> int:
    r = c.run("python3", "-c", "from spyderd.graph import Store; "
              "print(Store('/var/lib/spyderd', readonly=True).get_meta('schema'))", check=True)
    return int(r.stdout.strip())


def test_previous_release_runs_and_stores_a_finding(box):
    # The root holds this version's Depends; apt brings in the previous release's own
    # (0.1.0 loaded its probes with bcc: python3-bpfcc) from the Debian mirror.
    assert box.run("apt-get", "update", "-qq", timeout=300).returncode == 0
    r = box.run("apt-get", "install", "-y", "-qq", "--no-install-recommends",
                "/var/tmp/old.deb", timeout=START_TIMEOUT + 300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert box.run("systemctl", "is-active", UNIT).stdout.strip() == "active"
    assert box.run("spyderctl", "status", "--wait", "60").returncode == 0
    box.run("sh", "-c", "cp /bin/true /tmp/upgrade-canary && /tmp/upgrade-canary", check=True)
    assert wait_for(lambda: stored_findings(box), 60), journal(box)[-5:]
    conf = box.root / "etc/spyderd/spyderd.yaml"
    conf.write_text(EDIT + conf.read_text())


def test_upgrade_migrates_keeps_the_edit_and_restarts(box):
    before = show(box, "MainPID")["MainPID"]
    old_ids = {f["id"] for f in stored_findings(box)}
    since = box.run("date", "+%Y-%m-%d %H:%M:%S", check=True).stdout.strip()
    r = box.run("dpkg", "-i", "--force-confold", "/var/tmp/new.deb", timeout=START_TIMEOUT + 60)
    assert r.returncode == 0, r.stdout + r.stderr
    p = show(box, "MainPID", "ActiveState")
    assert p["ActiveState"] == "active" and p["MainPID"] != before, p
    assert box.run("spyderctl", "status", "--wait", "60").returncode == 0
    version = json.loads(box.run("spyderctl", "status", "-o", "json", check=True).stdout)
    assert version["version"] == _version((REPO / "pyproject.toml").read_text())
    # the conffile: the local edit kept, the new default beside it
    conf = box.root / "etc/spyderd/spyderd.yaml"
    assert conf.read_text().startswith(EDIT)
    dist = box.root / "etc/spyderd/spyderd.yaml.dpkg-dist"
    assert dist.exists() and "space_left_mb" in dist.read_text()
    # the data: migrated, the old finding still there
    assert schema(box) == SCHEMA_VERSION
    assert old_ids <= {f["id"] for f in stored_findings(box)}
    gap = journal(box, f"MESSAGE_ID={MSG_GAP_CLEAN}", "--since", since)
    assert gap and gap[-1]["SPYDER_GAP_CLEAN"] == "1", gap


def test_remove_keeps_data_purge_removes_it(box):
    r = box.run("dpkg", "-r", "spyderd", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert box.run("systemctl", "is-active", UNIT).stdout.strip() != "active"
    assert (box.root / "var/lib/spyderd/store/data.mdb").exists()
    assert (box.root / "etc/spyderd/spyderd.yaml").read_text().startswith(EDIT)
    assert not (box.root / "usr/sbin/spyderd").exists()
    time.sleep(0.5)
    r = box.run("dpkg", "-P", "spyderd", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (box.root / "var/lib/spyderd").exists()
    assert not (box.root / "etc/spyderd").exists()
    assert "spyderd" not in box.run("dpkg", "-l").stdout.split()
