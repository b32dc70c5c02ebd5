"""Run over run: flag history, review queue and decisions, deadlines."""
