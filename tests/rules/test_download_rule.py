"""'Downloaded file executed' on scripts handed to an interpreter (`bash x.sh`): a download
tool wrote it -> finding; an interpreter wrote it (a build tool, a test harness, a CI agent;
even one that talked to the network) -> none; a binary an interpreter wrote and ran (a
dropper) -> finding, as before. Replayed through `spyderctl rules test` from recordings
made with the example builder."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from spyderd.ctl.cli import main as spyderctl

REPO = Path(__file__).resolve().parents[2]
RULE = "Downloaded file executed"


def _builder() -> ModuleType:
    path = REPO / "tests/rules/examples/build_examples.py"
    spec = importlib.util.spec_from_file_location("build_examples", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _recording(b: ModuleType, writer_exe: str, connects: bool, target: str,
               script: bool) -> object:  # fmt: skip
    rec = b.Rec(RULE, True, "")
    shell = b.login_shell(rec, 0)
    name = writer_exe.rsplit("/", 1)[-1]
    w = rec.spawn(shell, writer_exe, [name, "fetch"])
    if connects:
        rec.connect(w, "203.0.113.9", 443)
    rec.write(w, target)
    written = rec.t
    if script:
        run = rec.spawn(shell, "/usr/bin/bash", ["bash", target])
    else:
        run = rec.spawn(w, target, [target])
    rec.wrote_exec(run, target, w, written, script=script)
    return rec


CASES = [
    ("/usr/bin/curl", True, "/tmp/x.sh", True, True),
    ("/usr/bin/wget", True, "/var/lib/app/x.py", True, True),
    ("/usr/bin/python3", True, "/var/lib/app/x.sh", True, False),
    ("/usr/bin/python3", False, "/var/lib/app/x.sh", True, False),
    ("/usr/bin/python3", False, "/var/lib/app/x", False, True),
]


@pytest.mark.parametrize(("writer", "connects", "target", "script", "fires"), CASES)
def test_script_and_binary_writers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   writer: str, connects: bool, target: str, script: bool,
                                   fires: bool) -> None:  # fmt: skip
    b = _builder()
    rec = _recording(b, writer, connects, target, script)
    path = tmp_path / "rec.jsonl"
    path.write_text("".join(b.json.dumps(line) + "\n" for line in rec.lines()))
    code = spyderctl(["rules", "test", str(REPO / "rules"), "--events", str(path), "--rule", RULE])
    out = capsys.readouterr().out
    assert code == (0 if fires else 1), out
