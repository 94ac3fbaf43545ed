"""Evaluate pipelines: datasets, variants, assertions, thresholds and reports (`orchestrai eval`)."""
