"""The typed config: the shipped spyderd.yaml and the dataclasses agree key for key and
default for default, and bad files get located errors (file:line:col)."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from spyderd.capture.config import CaptureConfig
from spyderd.common.config import (
    Config,
    FleetConfig,
    Setting,
    StoreConfig,
    load_config,
    schema,
)
from spyderd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PACKAGED = REPO / "packaging/spyderd.yaml"


def _keys(tree: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted keys of a nested mapping: 'store.max_size_mb', 'log_level', ..."""
    out: set[str] = set()
    for k, v in tree.items():
        if isinstance(v, dict) and not prefix:  # a section; deeper dicts are values
            out |= _keys(v, f"{prefix}{k}.")
        else:
            out.add(f"{prefix}{k}")
    return out


def _plain(value: Any) -> Any:
    """A config value as YAML gives it (tuples are lists there)."""
    return [_plain(v) for v in value] if isinstance(value, tuple) else value


def _fields(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of every setting of a Config (source is not a setting)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if not f.metadata.get("setting", True):
            continue
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_fields(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = _plain(value)
    return out


def test_every_documented_key_is_a_typed_field_and_back():
    documented = _keys(yaml.safe_load(PACKAGED.read_text()))
    typed = set(_fields(Config()))
    assert documented - typed == set(), "documented in spyderd.yaml, no field"
    assert typed - documented == set(), "a field spyderd.yaml does not document"
    assert set(schema()) == {k.split(".")[0] for k in typed}


def test_documented_values_are_the_defaults():
    documented = yaml.safe_load(PACKAGED.read_text())
    for key, value in _fields(Config()).items():
        section, _, name = key.rpartition(".")
        shipped = documented[section][name] if section else documented[name]
        assert shipped == value, key
    assert load_config(str(PACKAGED)) == Config(source=str(PACKAGED))


def _sections(cfg: Config) -> list[Any]:
    """The top level and every section object of a Config."""
    return [cfg] + [getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                    if dataclasses.is_dataclass(getattr(cfg, f.name))]


def test_defaults_have_their_declared_types():
    for section in _sections(Config()):
        hints = typing.get_type_hints(type(section))
        for f in dataclasses.fields(section):
            value, hint = getattr(section, f.name), hints[f.name]
            if dataclasses.is_dataclass(value):
                continue
            want = tuple if typing.get_origin(hint) is tuple else hint
            assert type(value) is want, f"{f.name}: {value!r} is not {want}"


def test_config_is_frozen_and_hashable():
    cfg = load_config(str(PACKAGED))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.store.max_size_mb = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.capture = CaptureConfig()  # type: ignore[misc]
    assert hash(cfg.fleet) == hash(FleetConfig())


def test_the_schema_comes_from_the_fields():
    s = schema()
    assert s["store"]["space_left_action"] == Setting(str, ("ignore", "warn", "prune"))
    assert s["capture"]["udp_ports"] == Setting(list, (), int)
    assert s["capture"]["batch_ms"].typ is float
    assert s["rules"] == Setting(list)
    assert "source" not in s and "state_dir" not in s["capture"]  # not keys of the file
    flat = [v for v in s.values() if isinstance(v, Setting)] + [
        v for sec in s.values() if isinstance(sec, dict) for v in sec.values()]
    assert {v.typ for v in flat} <= {bool, int, float, str, list}  # what the loader checks


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "spyderd.yaml"
    p.write_text(text)
    return str(p)


def test_values_land_in_their_sections(tmp_path):
    path = write(tmp_path, "store:\n  max_size_mb: 5\n  retention_days: 2\n"
                           "capture:\n  udp_ports: [53]\n  ignore_comms: chronyd\n"
                           "rules: /x.yaml\nfleet: {url: 'nats://a:4222'}\n")
    cfg = load_config(path)
    assert cfg.source == path
    assert cfg.store == StoreConfig(max_size_mb=5, retention_days=2.0)
    assert cfg.store.retention_days == 2.0 and isinstance(cfg.store.retention_days, float)
    assert cfg.capture.udp_ports == (53,)
    assert cfg.capture.ignore_comms == ("chronyd",)  # one scalar: a list of one
    assert cfg.rules == ("/x.yaml",)
    assert cfg.fleet == FleetConfig(url="nats://a:4222")
    assert cfg.findings == Config().findings


@pytest.mark.parametrize(("text", "errors"), [
    ("log_levl: debug\n",
     [(":1:1: unknown setting 'log_levl' (did you mean log_level?); expected one of: access, "
      "alerts, capture, findings, fleet, log_level, machine_id, rules, runtime_dir, state_dir, "
      "store")]),
    ("store:\n  max_sise_mb: 3\n",
     [":2:3: unknown setting 'store.max_sise_mb' (did you mean max_size_mb, map_size_mb"]),
    ("store:\n  space_left_action: nope\n  max_size_mb: true\n",
     [":2:22: 'store.space_left_action' must be one of ignore, warn, prune, got 'nope'",
      ":3:16: 'store.max_size_mb' must be int, got bool True"]),
    ("capture:\n  udp_ports: [1, x, true]\n",
     [":2:18: 'capture.udp_ports' items must be int, got str 'x'",
      ":2:21: 'capture.udp_ports' items must be int, got bool True"]),
    ("capture:\n  watch_paths: [rel]\n",
     [":2:17: 'capture.watch_paths' 'rel' is not an absolute path"]),
    ("store: 3\n", [":1:8: expected a mapping for store"]),
    ("- a\n", [":1:1: expected a mapping for the top level"]),
    ("a: [\n", [":2:1: expected the node content"]),
])
def test_bad_settings_are_located(tmp_path, text, errors):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    lines = str(exc.value).splitlines()
    assert len(lines) == len(errors), lines
    for line, want in zip(lines, errors, strict=True):
        assert line.startswith(path + want), line


def test_absent_empty_and_required_files(tmp_path):
    assert load_config(str(tmp_path / "none.yaml")) == Config()
    with pytest.raises(ConfigError, match="none.yaml: no such file"):
        load_config(str(tmp_path / "none.yaml"), required=True)
    empty = write(tmp_path, "")
    assert load_config(empty) == Config(source=empty)
    (tmp_path / "bin.yaml").write_bytes(b"store:\n  x: \xff\n")
    with pytest.raises(ConfigError, match=r"bin\.yaml:2:6: not UTF-8 text \(byte 0xff\)"):
        load_config(str(tmp_path / "bin.yaml"))
