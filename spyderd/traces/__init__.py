"""Cut traces out of the graph: a finding's readable chain and a trace's node/edge view."""

from spyderd.traces.build import TraceView, build_trace, chain_for, resolve, trace_id_for

__all__ = ["TraceView", "build_trace", "chain_for", "resolve", "trace_id_for"]
