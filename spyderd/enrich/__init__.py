"""Enrichment: container, namespace, machine/VM, user and session context for processes.

`Enricher` is what `spyderd.graph.Graph(..., enricher=...)` calls for every new process
node; the modules next to it each parse one kind of source (cgroup paths, runtime state
files, /proc, netlink, firmware tables) and are tested from recorded fixtures.
"""

from spyderd.enrich.enricher import Enricher

__all__ = ["Enricher"]
