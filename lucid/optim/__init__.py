"""lucid.optim (being written)."""
