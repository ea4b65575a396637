"""Where findings go: journald (always), JSON lines (optional)."""
