"""Daemon configuration: YAML with every error located as `file:line:col: message`.

The file is read once into a frozen `Config`: one typed dataclass per section of
spyderd.yaml (`cfg.store.max_size_mb`, `cfg.capture.watch_reads`), the defaults being
the dataclasses' own. The schema the YAML is checked against is derived from those
classes: a field's type says which YAML type it takes (a tuple field takes a list, or
one scalar as a list of one), its metadata which strings ("choices") or list items
("items": a type or a checker) it accepts.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spyderd.capture.config import CaptureConfig
from spyderd.errors import ConfigError

DEFAULT_CONFIG = "/etc/spyderd/spyderd.yaml"
DEFAULT_RULES = ("/usr/share/spyderd/rules", "/etc/spyderd/rules.d")

# What to do when free space falls below store.space_left_mb / admin_space_left_mb.
ACTIONS = ("ignore", "warn", "prune")


def _choice(default: str, choices: tuple[str, ...]) -> Any:
    return field(default=default, metadata={"choices": choices})


@dataclass(frozen=True)
class StoreConfig:
    """`store:` LMDB commits and size, retention, free-space levels, degraded limits."""

    batch_delay: float = 0.5
    map_size_mb: int = 1024
    retention_days: float = 90.0
    max_size_mb: int = 10240
    events_retention_days: float = 0.0
    findings_retention_days: float = 0.0
    max_memory_nodes: int = 200_000
    check_seconds: float = 30.0
    space_left_mb: int = 256
    space_left_action: str = _choice("warn", ACTIONS)
    admin_space_left_mb: int = 64
    admin_space_left_action: str = _choice("prune", ACTIONS)
    degraded_max_events: int = 100_000
    degraded_max_findings: int = 10_000
    fault_report_seconds: float = 60.0


@dataclass(frozen=True)
class FindingsConfig:
    """`findings:` the sinks, the settle delay, traces, folding and suppressions."""

    settle: float = 1.0
    journald: bool = True
    jsonl: str = ""
    trace_threshold: int = 40
    trace_settle: float = 3.0
    trace_idle: float = 3600.0
    fold_window: float = 60.0
    suppressions: tuple[str, ...] = ("/etc/spyderd/suppress.d",)


@dataclass(frozen=True)
class AlertsConfig:
    """`alerts:` other services' journal warnings attached to the process that wrote them."""

    journal: bool = True
    max_priority: int = 4


@dataclass(frozen=True)
class AccessConfig:
    """`access:` the group (besides root) that may read the store and use the socket."""

    group: str = "spyder"


@dataclass(frozen=True)
class FleetConfig:
    """`fleet:` the NATS bus this host publishes to ("" url: no fleet)."""

    url: str = ""
    name: str = ""
    user: str = ""
    password: str = ""
    token: str = ""
    creds: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    outbox_max: int = 200_000
    nat: bool = True


@dataclass(frozen=True)
class Config:
    """Effective settings; `source` says where they came from, for messages."""

    state_dir: str = "/var/lib/spyderd"
    runtime_dir: str = "/run/spyderd"
    rules: tuple[str, ...] = DEFAULT_RULES
    log_level: str = "info"
    machine_id: str = ""  # overrides /etc/machine-id (several scoped daemons, one kernel)
    store: StoreConfig = field(default_factory=StoreConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    findings: FindingsConfig = field(default_factory=FindingsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)
    source: str = field(default="<defaults>", metadata={"setting": False})


@dataclass(frozen=True)
class Setting:
    """How one key is checked: YAML type, allowed strings, list item type or checker."""

    typ: type
    choices: tuple[str, ...] = ()
    items: Any = None


def schema(cls: type = Config) -> dict[str, Any]:
    """key -> Setting, or -> the section's own schema, derived from the dataclasses."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.metadata.get("setting", True):
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out[f.name] = schema(hint)
            continue
        typ = list if typing.get_origin(hint) is tuple else hint
        out[f.name] = Setting(typ, f.metadata.get("choices", ()), f.metadata.get("items"))
    return out


def _where(path: str, node: yaml.Node) -> str:
    m = node.start_mark
    return f"{path}:{m.line + 1}:{m.column + 1}"


def _check(path: str, node: yaml.Node, spec: dict[str, Any], out: dict[str, Any],
           errors: list[str], prefix: str = "") -> None:
    """Check one mapping against its schema; put the good values in `out`."""
    if not isinstance(node, yaml.MappingNode):
        errors.append(f"{_where(path, node)}: expected a mapping for "
                      f"{prefix.rstrip('.') or 'the top level'}")
        return
    for knode, vnode in node.value:
        key = knode.value
        setting = spec.get(key)
        if setting is None:
            near = difflib.get_close_matches(key, list(spec), n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            errors.append(f"{_where(path, knode)}: unknown setting '{prefix}{key}'{hint}; "
                          f"expected one of: {', '.join(sorted(spec))}")
            continue
        if isinstance(setting, dict):
            _check(path, vnode, setting, out.setdefault(key, {}), errors, f"{prefix}{key}.")
            continue
        problem, value = _value(path, vnode, setting, f"{prefix}{key}")
        if problem:
            errors.extend(problem)
        else:
            out[key] = value


def _value(path: str, vnode: yaml.Node, setting: Setting, name: str) -> tuple[list[str], Any]:
    """(located problems, the value converted to the setting's type)."""
    try:
        value = yaml.safe_load(yaml.serialize(vnode))
    except yaml.YAMLError as exc:  # pragma: no cover - composed already
        return [f"{_where(path, vnode)}: {exc}"], None
    typ = setting.typ
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if typ is list and isinstance(value, str):
        value = [value]
    where = _where(path, vnode)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        why = f"must be {typ.__name__}, got {type(value).__name__} {value!r}"
        return [f"{where}: '{name}' {why}"], None
    if typ is str and setting.choices and value not in setting.choices:
        why = f"must be one of {', '.join(setting.choices)}, got {value!r}"
        return [f"{where}: '{name}' {why}"], None
    if typ is list and setting.items is not None and isinstance(vnode, yaml.SequenceNode):
        why = _item_check(setting.items)  # every element, located
        bad = [f"{_where(path, n)}: '{name}' {why(v)}"
               for n, v in zip(vnode.value, value, strict=False) if why(v)]
        if bad:
            return bad, None
    return [], value


def _item_check(item: Any) -> Any:
    """A list item's type as a checker: None when fine, else the problem."""
    if not isinstance(item, type):
        return item
    return (lambda v: None if isinstance(v, item) and not isinstance(v, bool)
            else f"items must be {item.__name__}, got {type(v).__name__} {v!r}")


def _build(cls: type, values: dict[str, Any], **extra: Any) -> Any:
    """The frozen dataclass from checked values; what the file leaves out keeps its default."""
    hints = typing.get_type_hints(cls)
    kw: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        if dataclasses.is_dataclass(hints[f.name]):
            kw[f.name] = _build(hints[f.name], value)
        else:
            kw[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**kw, **extra)


def _line_col(prefix: str) -> str:
    """`line:col` (1-based) of the character right after `prefix`."""
    return f"{prefix.count(chr(10)) + 1}:{len(prefix) - prefix.rfind(chr(10))}"


def _compose(path: str) -> yaml.Node | None:
    """The file's YAML node tree; unreadable, non-UTF-8 or malformed text is located."""
    text = ""
    try:
        text = Path(path).read_bytes().decode("utf-8")
        return yaml.compose(text)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        where = _line_col(exc.object[:exc.start].decode("utf-8", "replace"))
        raise ConfigError(f"{path}:{where}: not UTF-8 text (byte "
                          f"{exc.object[exc.start]:#04x})") from None
    except yaml.MarkedYAMLError as exc:
        m = exc.problem_mark
        loc = f"{path}:{m.line + 1}:{m.column + 1}" if m else path
        raise ConfigError(f"{loc}: {exc.problem}") from None
    except yaml.YAMLError as exc:  # the reader's "special characters are not allowed"
        where = _line_col(text[:getattr(exc, "position", 0)])
        raise ConfigError(f"{path}:{where}: character {getattr(exc, 'character', 0):#04x} "
                          "is not allowed in YAML") from None


def load_config(path: str | None, *, required: bool = False) -> Config:
    """Read the config file (absent default file means defaults); raise ConfigError."""
    path = path or DEFAULT_CONFIG
    if not os.path.exists(path):
        if required:
            raise ConfigError(f"{path}: no such file")
        return Config()
    node = _compose(path)
    if node is None:
        return Config(source=path)
    errors: list[str] = []
    values: dict[str, Any] = {}
    _check(path, node, schema(), values, errors)
    if errors:
        raise ConfigError("\n".join(errors))
    return _build(Config, values, source=path)
