"""Evaluation: frozen-encoder linear probes and their metrics."""
