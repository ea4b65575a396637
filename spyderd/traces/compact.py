"""Chains small enough for journald: `SPYDER_CHAIN_JSON` always under 4,096 bytes.

`journalctl -o json` prints a field of 4,096 bytes or more as `null` (unless `--all`). So a
chain sent to journald is cut, in this order, until it fits:

1. each node record is compact: empty fields dropped, at most 8 arguments of at most 64
   characters each, then 4 of 32, then 2 of 24 (`args_cut: true` and `argc`, the real
   count, mark a node whose arguments were cut; a cut argument ends in `…`);
2. nodes from the middle of the line between the root and the subject are left out, and
   one `elided` record (with how many and their names) stands in their place; the root,
   the first node below it and the last nodes down to the subject stay;
3. the nodes the rule referred to off the line (`ref`) are left out;
4. the records keep only id, role, pid and name.

The full chain stays in the store: `spyderctl trace <finding id>` shows it, and the journald
entry says so in `SPYDER_TRACE_CMD`.
"""

from __future__ import annotations

import json
import re
from typing import Any

FIELD_MAX = 4096  # journald's JSON output shows bigger fields as null
BUDGET = FIELD_MAX - 96  # the field name and some slack for its framing
ARG_STEPS = ((8, 64), (4, 32), (2, 24))  # (arguments kept, characters per argument)
MAX_EXE = 160
KEEP = ("id", "role", "kind", "pid", "ppid", "name", "exe", "args", "uid", "user",
        "container_id", "container_name", "start", "count", "names")
MINIMAL = ("id", "role", "pid", "name", "count")
TAIL = 4  # nodes kept above and including the subject when the middle is left out


_ESCAPE = re.compile("[\x7f-\x9f\ud800-\udfff]")


def dumps(chain: list[dict[str, Any]]) -> str:
    """Compact JSON; DEL, the C1 controls and lone surrogates (an argv is any bytes) escaped
    as JSON does other controls, so the text is printable and its size is what is sent."""
    text = json.dumps(chain, separators=(",", ":"), ensure_ascii=False)
    return _ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def size(chain: list[dict[str, Any]]) -> int:
    return len(dumps(chain).encode())


def compact_node(c: dict[str, Any], max_args: int, max_len: int) -> dict[str, Any]:
    """One chain record without empty fields, its arguments cut and marked as cut."""
    out = {k: c[k] for k in KEEP if k in c and c[k] not in ("", None, [])}
    exe = out.get("exe")
    if isinstance(exe, str) and len(exe) > MAX_EXE:
        out["exe"] = exe[:MAX_EXE - 1] + "…"
    args = [str(a) for a in c.get("args") or []]
    cut = [a if len(a) <= max_len else a[:max_len - 1] + "…" for a in args[:max_args]]
    if cut != args:
        out["args"] = cut
        out["args_cut"] = True
        out["argc"] = len(args)
    return out


def journal_chain(chain: list[dict[str, Any]], budget: int = BUDGET) -> list[dict[str, Any]]:
    """The chain cut to fit `budget` bytes of JSON (see the module docstring)."""
    out: list[dict[str, Any]] = []
    for max_args, max_len in ARG_STEPS:
        out = [compact_node(c, max_args, max_len) for c in chain]
        if size(out) <= budget:
            return out
    out = _drop_middle(out)
    if size(out) > budget:
        out = [c for c in out if c.get("role") != "ref"]
    if size(out) > budget:
        out = [{k: c[k] for k in MINIMAL if k in c} for c in out]
    if size(out) > budget:
        out = _drop_middle(out, keep_tail=1)
    if size(out) > budget:  # only absurdly long ids or names, or deep descendants, get here
        out = [{"role": c.get("role"), "pid": c.get("pid")} for c in out]
    while size(out) > budget and len(out) > 1:
        out.pop(len(out) // 2)
        out[len(out) // 2] = {"role": "elided", "pid": 0, "name": "…"}
    return out


def _drop_middle(chain: list[dict[str, Any]], keep_tail: int = TAIL) -> list[dict[str, Any]]:
    """Leave out the nodes between the head of the line (elided, root, one below) and its
    last `keep_tail` nodes; one `elided` record stands in their place."""
    line = [c for c in chain if c.get("role") not in ("ref", "descendant")]
    rest = [c for c in chain if c.get("role") in ("ref", "descendant")]
    head = 0
    while head < len(line) and line[head].get("role") == "elided":
        head += 1
    head = min(head + 2, len(line))
    tail = max(head, len(line) - keep_tail)
    if tail - head < 2:
        return chain
    return line[:head] + [_elided(line[head:tail])] + line[tail:] + rest


def _elided(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    names = [n.get("name") or "?" for n in nodes]
    first = nodes[0]
    return {"id": first.get("id", ""), "role": "elided", "pid": first.get("pid", 0),
            "name": "…", "count": sum(n.get("count", 1) if n.get("role") == "elided" else 1
                                      for n in nodes),
            "names": names[:2] + ["…"] + names[-2:] if len(names) > 5 else names}
