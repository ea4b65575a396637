"""Suppression policies: known-good activity that should not raise a trace.

Policies live in YAML files (by default every `*.yaml` in `/etc/spyderd/suppress.d`, set by
`findings.suppressions`), a list of entries:

    - suppress: ansible runs shells over ssh
      reason: configuration management, reviewed 2026-01 (ticket OPS-123)
      rule: [Shell spawned below a web server, "Recon *"]   # rule names, globs allowed
      ancestor: [ansible-playbook, /usr/bin/salt-*]         # name or exe of an ancestor
      container_image: ["registry.example.com/ci/*"]
      user: [deploy, 1001]                                 # user name or uid
      expires: 2026-12-31                                  # optional

Every key given must match (a list matches when any item does); at least one of `rule`,
`ancestor`, `container_image`, `user` is required. `ancestor` is tested against the
finding's subject and every ancestor of it (the trigger's ancestry), by program name or by
executable path.

A finding a policy matches is kept in the store with the policy's name (`spyderctl findings
--all` shows it) but weighs nothing in its trace's score and is not sent on its own. When
the trace's trigger (its first finding) is suppressed, the whole trace's score is zero:
later findings of other rules are still sent as findings, but the trace never raises an
alert of its own. Expired policies are ignored and listed as such.
"""

from __future__ import annotations

import difflib
import fnmatch
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import yaml

from spyderd.errors import ConfigError
from spyderd.model import Node

MATCH_KEYS = ("rule", "ancestor", "container_image", "user")
KEYS = ("suppress", "reason", *MATCH_KEYS, "expires")


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    reason: str
    where: str  # file:line
    rules: tuple[str, ...] = ()
    ancestors: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    expires: float = 0.0  # wall seconds; 0 = never

    def expired(self, now: float) -> bool:
        return bool(self.expires) and now >= self.expires

    def matches(self, rule: str, subject: Node, line: Iterable[Node]) -> bool:
        """`line` is the subject's ancestry (nearest first)."""
        if self.rules and not _any_glob(rule, self.rules):
            return False
        if self.images and not _any_glob(subject.attrs.get("container_image") or "",
                                         self.images):
            return False
        if self.users and not _user_matches(subject, self.users):
            return False
        if self.ancestors:
            nodes = [subject, *line]
            if not any(_any_glob(n.name, self.ancestors)
                       or _any_glob(n.attrs.get("exe") or "", self.ancestors) for n in nodes):
                return False
        return True

    def to_dict(self) -> dict:
        return {"name": self.name, "reason": self.reason, "where": self.where,
                "rule": list(self.rules), "ancestor": list(self.ancestors),
                "container_image": list(self.images), "user": list(self.users),
                "expires": self.expires}


def _any_glob(value: str, patterns: Iterable[str]) -> bool:
    return bool(value) and any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _user_matches(n: Node, users: Iterable[str]) -> bool:
    name = n.attrs.get("user") or ""
    return any(u == str(n.uid) or (name and u == name) for u in users)


@dataclass
class Suppressions:
    """The loaded policies, with a hit count per policy (shown by `spyderctl status`)."""

    policies: list[Policy] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)

    def match(self, rule: str, subject: Node, line: Iterable[Node],
              now: float | None = None) -> Policy | None:
        now = time.time() if now is None else now
        line = list(line)
        for p in self.policies:
            if not p.expired(now) and p.matches(rule, subject, line):
                self.hits[p.name] = self.hits.get(p.name, 0) + 1
                return p
        return None


def policy_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named by `paths`: a file as is, a directory's `*.yaml`/`*.yml` sorted; a missing
    path is skipped (an empty suppress.d is the normal case)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(x for x in p.iterdir() if x.suffix in (".yaml", ".yml"))
        elif p.exists():
            out.append(p)
    return out


def load_suppressions(paths: Iterable[str | Path]) -> Suppressions:
    """Read every policy file; raise ConfigError listing every `file:line:col:` problem."""
    errors: list[str] = []
    policies: list[Policy] = []
    for f in policy_files(paths):
        policies += _read_file(f, errors)
    names: dict[str, str] = {}
    for p in policies:
        if p.name in names:
            errors.append(f"{p.where}: suppression {p.name!r} already defined at {names[p.name]}")
        names.setdefault(p.name, p.where)
    if errors:
        raise ConfigError("\n".join(errors))
    return Suppressions(policies)


def _loc(path: Path, node: yaml.Node) -> str:
    m = node.start_mark
    return f"{path}:{m.line + 1}:{m.column + 1}"


def _read_file(path: Path, errors: list[str]) -> list[Policy]:
    try:
        root = yaml.compose(path.read_text())
    except OSError as exc:
        errors.append(f"{path}: {exc.strerror}")
        return []
    except yaml.MarkedYAMLError as exc:
        m = exc.problem_mark
        errors.append(f"{path}:{m.line + 1}:{m.column + 1}: {exc.problem}" if m
                      else f"{path}: {exc}")
        return []
    if root is None:
        return []
    if not isinstance(root, yaml.SequenceNode):
        errors.append(f"{_loc(path, root)}: expected a list of suppression entries "
                      "('- suppress: NAME ...')")
        return []
    out = []
    for item in root.value:
        p = _read_entry(path, item, errors)
        if p is not None:
            out.append(p)
    return out


def _read_entry(path: Path, node: yaml.Node, errors: list[str]) -> Policy | None:
    if not isinstance(node, yaml.MappingNode):
        errors.append(f"{_loc(path, node)}: expected a mapping with 'suppress: NAME'")
        return None
    values: dict[str, tuple[object, yaml.Node]] = {}
    ok = True
    for knode, vnode in node.value:
        key = knode.value
        if key not in KEYS:
            near = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            errors.append(f"{_loc(path, knode)}: unknown key '{key}'{hint}; expected one of: "
                          f"{', '.join(KEYS)}")
            ok = False
            continue
        values[key] = (yaml.safe_load(yaml.serialize(vnode)), vnode)
    name = values.get("suppress", (None, node))[0]
    if not isinstance(name, str) or not name.strip():
        errors.append(f"{_loc(path, node)}: every entry needs 'suppress: NAME' (a string)")
        return None
    if not any(k in values for k in MATCH_KEYS):
        errors.append(f"{_loc(path, node)}: suppression {name!r} matches everything; give at "
                      f"least one of: {', '.join(MATCH_KEYS)}")
        ok = False
    lists = {}
    for key in MATCH_KEYS:
        if key in values:
            items = _strings(path, key, *values[key], errors)
            ok = ok and items is not None
            lists[key] = items or ()
    expires = _expiry(path, values.get("expires"), errors)
    reason = values.get("reason", ("", node))[0]
    if not ok or expires is None:
        return None
    return Policy(name=name, reason=str(reason or ""), where=_loc(path, node),
                  rules=lists.get("rule", ()), ancestors=lists.get("ancestor", ()),
                  images=lists.get("container_image", ()), users=lists.get("user", ()),
                  expires=expires)


def _strings(path: Path, key: str, value: object, node: yaml.Node,
             errors: list[str]) -> tuple[str, ...] | None:
    items = value if isinstance(value, list) else [value]
    if not items or any(isinstance(v, (dict, list)) or v is None or v == "" for v in items):
        errors.append(f"{_loc(path, node)}: '{key}' must be a string or a list of strings")
        return None
    return tuple(str(v) for v in items)


def _expiry(path: Path, entry, errors: list[str]) -> float | None:
    if entry is None:
        return 0.0
    value, node = entry
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day).timestamp() + 86400
    errors.append(f"{_loc(path, node)}: 'expires' must be a date like 2026-12-31")
    return None
