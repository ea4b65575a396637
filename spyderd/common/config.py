"""Daemon configuration: YAML with every error located as `file:line:col: message`."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spyderd.capture.execinfo import DEFAULT_ENV_VARS, env_name_problem
from spyderd.capture.watch import (
    DEFAULT_WATCH_PATHS,
    DEFAULT_WATCH_READS,
    watch_path_problem,
    watch_read_problem,
)
from spyderd.errors import ConfigError

DEFAULT_CONFIG = "/etc/spyderd/spyderd.yaml"
DEFAULT_RULES = ["/usr/share/spyderd/rules", "/etc/spyderd/rules.d"]

# What to do when free space falls below store.space_left_mb / admin_space_left_mb.
ACTIONS = ("ignore", "warn", "prune")

# section -> key -> (type, default[, allowed values or item checker])
SCHEMA: dict[str, Any] = {
    "state_dir": (str, "/var/lib/spyderd"),
    "runtime_dir": (str, "/run/spyderd"),
    "rules": (list, DEFAULT_RULES),
    "log_level": (str, "info"),
    "machine_id": (str, ""),  # overrides /etc/machine-id (several scoped daemons, one kernel)
    "store": {"batch_delay": (float, 0.5), "map_size_mb": (int, 1024),
              "retention_days": (float, 90.0), "max_size_mb": (int, 10240),
              "events_retention_days": (float, 0.0), "findings_retention_days": (float, 0.0),
              "max_memory_nodes": (int, 200_000), "check_seconds": (float, 30.0),
              "space_left_mb": (int, 256), "space_left_action": (str, "warn", ACTIONS),
              "admin_space_left_mb": (int, 64),
              "admin_space_left_action": (str, "prune", ACTIONS),
              "degraded_max_events": (int, 100_000), "degraded_max_findings": (int, 10_000),
              "fault_report_seconds": (float, 60.0)},
    "capture": {"ring_buffer_pages": (int, 1024), "max_args": (int, 32),
                "arg_bytes": (int, 2048), "ignore_self": (bool, True),
                "self_test": (bool, True), "threads": (bool, False),
                "ignore_comms": (list, [], str), "udp_ports": (list, [], int),
                "udp_repeat_seconds": (float, 1.0), "kill_signals": (list, [], int),
                "ptrace_requests": (list, [0, 4, 5, 6, 13, 15, 16, 0x4205, 0x4206], int),
                "bpf_cmds": (list, [5], int), "disable": (list, [], str),
                "batch_ms": (float, 20.0), "backlog_mb": (int, 64),
                "syscall_fallback": (bool, True),
                "loader": (str, "auto", ("auto", "libbpf", "bcc")),
                "watch_paths": (list, DEFAULT_WATCH_PATHS, watch_path_problem),
                "watch_reads": (list, DEFAULT_WATCH_READS, watch_read_problem),
                "failed_opens": (bool, True), "file_repeat_seconds": (float, 1.0),
                "scope": (str, ""),
                "env_vars": (list, DEFAULT_ENV_VARS, env_name_problem)},
    "findings": {"settle": (float, 1.0), "journald": (bool, True), "jsonl": (str, ""),
                 "trace_threshold": (int, 40), "trace_settle": (float, 3.0),
                 "trace_idle": (float, 3600.0), "fold_window": (float, 60.0),
                 "suppressions": (list, ["/etc/spyderd/suppress.d"])},
    "alerts": {"journal": (bool, True), "max_priority": (int, 4)},
    "access": {"group": (str, "spyder")},
    "fleet": {"url": (str, ""), "name": (str, ""), "user": (str, ""), "password": (str, ""),
              "token": (str, ""), "creds": (str, ""), "tls_ca": (str, ""),
              "tls_cert": (str, ""), "tls_key": (str, ""), "outbox_max": (int, 200_000), "nat": (bool, True)},
}


@dataclass
class Config:
    """Effective settings; `source` says where they came from, for messages."""

    values: dict[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"

    def get(self, dotted: str) -> Any:
        cur: Any = self.values
        for part in dotted.split("."):
            cur = cur[part]
        return cur


def _defaults(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: (_defaults(v) if isinstance(v, dict) else list(v[1]) if isinstance(v[1], list)
                else v[1]) for k, v in schema.items()}


def _where(path: str, node: yaml.Node) -> str:
    m = node.start_mark
    return f"{path}:{m.line + 1}:{m.column + 1}"


def _check(path: str, node: yaml.Node, schema: dict[str, Any], out: dict[str, Any],
           errors: list[str], prefix: str = "") -> None:
    if not isinstance(node, yaml.MappingNode):
        errors.append(f"{_where(path, node)}: expected a mapping for "
                      f"{prefix.rstrip('.') or 'the top level'}")
        return
    for knode, vnode in node.value:
        key = knode.value
        spec = schema.get(key)
        if spec is None:
            near = difflib.get_close_matches(key, list(schema), n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            errors.append(f"{_where(path, knode)}: unknown setting '{prefix}{key}'{hint}; "
                          f"expected one of: {', '.join(sorted(schema))}")
            continue
        if isinstance(spec, dict):
            _check(path, vnode, spec, out[key], errors, f"{prefix}{key}.")
            continue
        try:
            value = yaml.safe_load(yaml.serialize(vnode))
        except yaml.YAMLError as exc:  # pragma: no cover - composed already
            errors.append(f"{_where(path, vnode)}: {exc}")
            continue
        typ = spec[0]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if typ is list and isinstance(value, str):
            value = [value]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            errors.append(f"{_where(path, vnode)}: '{prefix}{key}' must be "
                          f"{typ.__name__}, got {type(value).__name__} {value!r}")
            continue
        if typ is str and len(spec) > 2 and value not in spec[2]:
            errors.append(f"{_where(path, vnode)}: '{prefix}{key}' must be one of "
                          f"{', '.join(spec[2])}, got {value!r}")
            continue
        if typ is list and len(spec) > 2 and isinstance(vnode, yaml.SequenceNode):
            item = spec[2]  # (list, default, item type or checker): every element, located
            why = (item if not isinstance(item, type) else
                   lambda v, t=item: None if isinstance(v, t) and not isinstance(v, bool)
                   else f"items must be {t.__name__}, got {type(v).__name__} {v!r}")
            bad = [(n, why(v)) for n, v in zip(vnode.value, value, strict=False) if why(v)]
            for n, msg in bad:
                errors.append(f"{_where(path, n)}: '{prefix}{key}' {msg}")
            if bad:
                continue
        out[key] = value


def _line_col(prefix: str) -> str:
    """`line:col` (1-based) of the character right after `prefix`."""
    return f"{prefix.count(chr(10)) + 1}:{len(prefix) - prefix.rfind(chr(10))}"


def load_config(path: str | None, *, required: bool = False) -> Config:
    """Read the config file (absent default file means defaults); raise ConfigError."""
    cfg = Config(values=_defaults(SCHEMA))
    path = path or DEFAULT_CONFIG
    if not os.path.exists(path):
        if required:
            raise ConfigError(f"{path}: no such file")
        return cfg
    text = ""
    try:
        text = Path(path).read_bytes().decode("utf-8")
        node = yaml.compose(text)
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
    cfg.source = path
    if node is None:
        return cfg
    errors: list[str] = []
    _check(path, node, SCHEMA, cfg.values, errors)
    if errors:
        raise ConfigError("\n".join(errors))
    return cfg
