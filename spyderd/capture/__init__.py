"""Kernel event capture: eBPF programs and their user-space loaders."""
