"""spyderd: eBPF system auditing over a causal graph, with trace-attached findings."""

__version__ = "0.2.0"
