"""The model registry: registration by name, duplicates refused, lookup with suggestions.

Every test works inside `isolated_registry()`, so the toy models never reach the real
registry that other tests (and users) see."""
import pytest

import lucid
from lucid.models import (create_model, get_model, is_model, isolated_registry, list_models,
                          register_model, unregister_model)


@pytest.fixture
def registry():
    real = list_models()
    with isolated_registry() as reg:
        yield reg
    assert list_models() == real  # nothing leaked, nothing lost


class Toy:
    def __init__(self, width, depth):
        self.width, self.depth = width, depth


def test_register_returns_the_function_and_create_calls_it(registry):
    def toy_net(width=8, depth=2):
        return Toy(width, depth)

    assert register_model(toy_net) is toy_net
    model = create_model("toy_net", width=16)
    assert (model.width, model.depth) == (16, 2)
    assert get_model("toy_net") is toy_net
    assert is_model("toy_net") and not is_model("toy") and not is_model(3)
    assert "toy_net" in registry and len(registry) == 1


def test_decorator_form_and_sorted_listing(registry):
    @register_model
    def resnet_50():
        return "r50"

    @register_model
    def alexnet():
        return "alex"

    @register_model
    def resnet_18():
        return "r18"

    assert resnet_50() == "r50"  # the decorated function is unchanged
    assert list_models() == ["alexnet", "resnet_18", "resnet_50"]
    assert list_models("resnet*") == ["resnet_18", "resnet_50"]


def test_duplicates_are_refused(registry):
    @register_model
    def toy():
        return 1

    def make_other():
        def toy():
            return 2

        return toy

    with pytest.raises(lucid.LucidError, match="'toy' is already registered"):
        register_model(make_other())
    assert create_model("toy") == 1


def named(name):
    def factory():
        return name

    factory.__name__ = name
    return factory


def test_unknown_name_lists_close_matches(registry):
    for name in ("faster_rcnn_resnet_50_fpn", "resnet_50", "resnet_101"):
        register_model(named(name))
    assert create_model("resnet_101") == "resnet_101"
    with pytest.raises(lucid.LucidError, match=r"unknown model 'resnet50'; did you mean 'resnet_50'"):
        create_model("resnet50")
    with pytest.raises(lucid.LucidError, match="3 models are registered"):
        get_model("zzzzzz")
    with pytest.raises(lucid.LucidError, match="strings"):
        get_model(50)


def test_unregister_and_non_functions(registry):
    @register_model
    def tiny():
        return 0

    unregister_model("tiny")
    assert list_models() == []
    with pytest.raises(lucid.LucidError, match="unknown model 'tiny'"):
        unregister_model("tiny")
    with pytest.raises(lucid.LucidError, match="expected a function"):
        register_model(42)


def test_isolation_restores_the_real_registry():
    before = list_models()
    with isolated_registry():
        @register_model
        def leaky():
            return 0

        assert list_models() == ["leaky"]
    assert list_models() == before and not is_model("leaky")
