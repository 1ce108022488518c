"""Benchmark suites: one script per subject, results appended to benchmarks/results/results.csv."""
