"""Genome-wide scoring: zero-shot variant effects (ESM-1v style) and fine-tuned tracks."""
