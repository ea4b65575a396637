"""Findings from rule match to sink: intake (suppress, fold, trace) and delivery with retry."""
