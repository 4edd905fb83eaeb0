"""Benchmarks: plain scripts, each printing a table. See docs/benchmarks.md."""
