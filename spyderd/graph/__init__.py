"""The causal graph: an in-memory index of live processes over a durable LMDB store."""

from spyderd.graph.index import Graph
from spyderd.graph.store import Store

__all__ = ["Graph", "Store"]
