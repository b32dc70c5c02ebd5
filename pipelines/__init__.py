"""The stages of a reconciliation run, each a plain function over files."""
