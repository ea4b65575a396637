"""spyderctl: the command line over the store (history) and the control socket (live)."""
