"""lucid.nn (being written)."""
