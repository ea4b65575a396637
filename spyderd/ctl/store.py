"""spyderctl store check | salvage: read every record of a store; copy out what is readable.

Both walk the store in forked children (see spyderd.graph.salvage): LMDB aborts on some
damaged pages, and spyderctl must survive that to report it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spyderd.ctl.common import check_readable, dirs
from spyderd.ctl.output import EXIT_FAILURE
from spyderd.graph.salvage import Verdict, check_store, salvage


def add_parsers(sub) -> None:
    p = sub.add_parser("store", help="check a store, or salvage a corrupted one")
    ssub = p.add_subparsers(dest="store_cmd", required=True)
    c = ssub.add_parser("check", help="read and decode every record, check the graph "
                        "invariants (the state dir's store, or PATH)")
    c.add_argument("path", nargs="?", help="a state dir (default: --state-dir) or store dir")
    c.add_argument("-o", "--output", choices=["text", "json"], default="text")
    c.set_defaults(fn=cmd_check)
    s = ssub.add_parser("salvage", help="copy every readable node, edge, event, finding and "
                        "trace of SRC into a fresh store under DIR")
    s.add_argument("src", help="a state dir, store dir or store.corrupt-* directory")
    s.add_argument("-o", "--out", required=True, metavar="DIR")
    s.set_defaults(fn=cmd_salvage)


def _state_of(path: Path) -> Path:
    """check_store takes a state dir; accept a store dir (or store.corrupt-*) too."""
    return path if (path / "store" / "data.mdb").exists() else _aside(path)


def _aside(path: Path) -> Path:
    """A store directory not named `store`: link it as `<tmp>/store` for check_store."""
    if path.name == "store":
        return path.parent
    import tempfile  # only for this rare case

    tmp = Path(tempfile.mkdtemp(prefix="spyderctl-check-"))
    (tmp / "store").symlink_to(path.resolve())
    return tmp


def cmd_check(args: argparse.Namespace) -> int:
    state = Path(args.path) if args.path else dirs(args)[0]
    check_readable(state)
    v = check_store(_state_of(state))
    if args.output == "json":
        print(json.dumps({"ok": v.ok, "complete": v.complete, "problems": v.problems,
                          "records": {k: w.records for k, w in v.walks.items()}}, indent=1))
    else:
        _print_verdict(state, v)
    return 0 if v.ok else EXIT_FAILURE


def _print_verdict(state: Path, v: Verdict) -> None:
    total = sum(w.records for w in v.walks.values())
    print(f"store {state}: {total} records in {len(v.walks)} databases")
    for name, w in v.walks.items():
        if w.records or w.stopped:
            print(f"  {name}: {w.records} records" + (f" ({w.stopped})" if w.stopped else ""))
    if v.ok:
        print("ok: every record reads and decodes, the graph invariants hold")
    for p in v.problems:
        print(f"problem: {p}")


def cmd_salvage(args: argparse.Namespace) -> int:
    src, out = Path(args.src), Path(args.out)
    report = salvage(src, out)
    print(f"salvaged {src} into {out / 'store'}:")
    for name, r in report.items():
        if name == "repair":
            continue
        if r.get("copied") or r.get("undecodable") or r.get("breaks"):
            print(f"  {name}: {r['copied']} copied, {r['undecodable']} unreadable"
                  + (f", walk broke {r['breaks']} times (read from both ends)"
                     if r.get("breaks") else ""))
    print(f"  dropped {report['repair']['dropped']} edges and index entries whose records "
          "were lost")
    print(f"read it with: SPYDERD_STATE_DIR={out} spyderctl findings")
    return 0
