"""Artifacts shared by the AOT tests, exported once per session (tests/aot/_aot_helpers.py)."""
import lucid
import pytest

from _aot_helpers import TwoHeads


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    """(artifact folder, input array, eager outputs) of TwoHeads at 2x3x8x8."""
    lucid.random.seed(3)
    model = TwoHeads()
    x = lucid.random.randn(2, 3, 8, 8)
    folder = str(tmp_path_factory.mktemp("aot") / "small")
    lucid.export(model, x, folder, name="twoheads")
    ref = tuple(t.numpy() for t in model.eval()(x))
    return folder, x.numpy(), ref


@pytest.fixture(scope="session")
def resnet(tmp_path_factory):
    """(artifact folder, input array, eager output) of resnet_18 (10 classes) at 1x3x32x32."""
    lucid.random.seed(4)
    model = lucid.models.resnet_18(num_classes=10)
    x = lucid.random.randn(1, 3, 32, 32)
    folder = str(tmp_path_factory.mktemp("aot") / "resnet18")
    lucid.export(model, x, folder)
    return folder, x.numpy(), model.eval()(x).numpy()
