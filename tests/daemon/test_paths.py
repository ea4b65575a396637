"""Where the daemon's directories and rules come from: command line, then the
environment (SPYDERD_STATE_DIR, SPYDERD_RUNTIME_DIR), then the config file."""

from __future__ import annotations

from pathlib import Path

from spyderd.common.config import load_config
from spyderd.daemon.wiring import resolve_paths


def test_command_line_beats_environment_beats_config(tmp_path, monkeypatch):
    cfg_file = tmp_path / "spyderd.yaml"
    cfg_file.write_text("state_dir: /cfg/state\nruntime_dir: /cfg/run\nrules: [/cfg/rules]\n")
    cfg = load_config(str(cfg_file))
    monkeypatch.delenv("SPYDERD_STATE_DIR", raising=False)
    monkeypatch.delenv("SPYDERD_RUNTIME_DIR", raising=False)
    p = resolve_paths(cfg, None, None, None)
    assert (p.state_dir, p.runtime_dir, p.rules) == (Path("/cfg/state"), Path("/cfg/run"),
                                                     ["/cfg/rules"])
    monkeypatch.setenv("SPYDERD_STATE_DIR", "/env/state")
    monkeypatch.setenv("SPYDERD_RUNTIME_DIR", "/env/run")
    p = resolve_paths(cfg, None, None, None)
    assert (p.state_dir, p.runtime_dir) == (Path("/env/state"), Path("/env/run"))
    p = resolve_paths(cfg, "/cli/state", "/cli/run", ["/cli/rules"])
    assert (p.state_dir, p.runtime_dir, p.rules) == (Path("/cli/state"), Path("/cli/run"),
                                                     ["/cli/rules"])

