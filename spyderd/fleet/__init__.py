"""The fleet: graph deltas and findings shipped to NATS JetStream, connection ends stitched
across hosts (`spyderd-stitch`), and traces that follow an attack from host to host."""
