"""Shared test fixtures: a seeded numpy generator, and torch when it is installed."""
import os
import tempfile

import numpy as np
import pytest

# Compiled programs are cached on disk; the tests use a cache of their own.
os.environ.setdefault("LUCID_CACHE_DIR", tempfile.mkdtemp(prefix="lucid-test-cache-"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def optional_torch():
    """The torch module, or None (tests that compare with torch skip without it)."""
    try:
        import torch
    except ImportError:
        return None
    return torch
