"""The probes: one module per probes/<name>.bpf.c, each registering itself (hooks, record
kinds, decoders, layouts, configuration, self-test) with `spyderd.capture.registry`.
The registry imports every module of this package; nothing else lists them.
How to add one: docs/probes.md."""
