"""Shared test fixtures: a seeded numpy generator, and torch when it is installed."""
import numpy as np
import pytest


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
