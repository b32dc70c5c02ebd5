"""A run's results as a dataset: where they are written and how they are read."""
