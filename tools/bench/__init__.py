"""Benchmarks that print figures (docs/BENCHMARKS.md quotes them with their commands)."""
