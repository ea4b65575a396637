"""Enrichment: container, machine and user context for processes."""
