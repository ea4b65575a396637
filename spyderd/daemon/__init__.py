"""The daemon: wiring of every stage, the event loop, status, control socket, systemd glue."""
