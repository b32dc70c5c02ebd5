"""Seeded sample world (citizen registry + telco exports) with ground truth."""
