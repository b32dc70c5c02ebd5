"""Data-quality gates: Great Expectations suites run over each boundary's data."""
