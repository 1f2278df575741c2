"""The registry of the command line tests: only the tiny models of _cli_models.py."""
import pytest

from lucid.models.registry import isolated_registry, register_model

from _cli_models import tiny_cnn, tiny_pair, undocumented


@pytest.fixture
def tiny_models():
    """The registry holds only the toy models above inside the test."""
    with isolated_registry():
        for fn in (tiny_cnn, tiny_pair, undocumented):
            register_model(fn)
        yield
