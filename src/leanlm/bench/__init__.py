"""Benchmarks: each compares a leanlm path with its baseline or peer in the same run."""
