"""Benchmark episodes: seeded jobs, their runner (local processes or Ray), summaries and reports."""
