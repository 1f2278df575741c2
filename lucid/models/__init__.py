"""lucid.models (being written)."""
