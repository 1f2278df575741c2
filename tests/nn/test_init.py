"""lucid.nn.init: fans, gains, and the statistics of each initialiser."""
import math

import numpy as np
import pytest

import lucid
from lucid.errors import LucidError, ShapeError
from lucid.nn import init


@pytest.fixture(autouse=True)
def _seeded():
    """Initialisation and dropout draw from lucid's generator: seed it per test."""
    lucid.random.seed(1234)


def big(*shape, dtype=None):
    return lucid.zeros(*shape, dtype=dtype)


def test_fans_follow_pytorch_rule():
    assert init.calculate_fan_in_and_fan_out(big(5, 10)) == (10, 5)
    assert init.calculate_fan_in_and_fan_out(big(64, 3, 7, 7)) == (3 * 49, 64 * 49)
    assert init._calculate_fan_in_and_fan_out(big(8, 4, 3)) == (12, 24)
    with pytest.raises(ShapeError, match=r"at least 2 dims, got shape \(5,\)"):
        init.calculate_fan_in_and_fan_out(big(5))


def test_gains():
    assert init.calculate_gain("linear") == 1.0
    assert init.calculate_gain("conv2d") == 1.0
    assert init.calculate_gain("sigmoid") == 1.0
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(LucidError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")


def test_gains_match_torch():
    torch = pytest.importorskip("torch")
    for name, param in [("linear", None), ("tanh", None), ("relu", None), ("leaky_relu", None),
                        ("leaky_relu", 0.2), ("selu", None), ("conv_transpose2d", None)]:
        assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param))
    for shape in [(5, 10), (64, 3, 7, 7), (8, 4, 3)]:
        expect = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
        assert init.calculate_fan_in_and_fan_out(big(*shape)) == tuple(expect)


def check_uniform(t, bound):
    x = t.numpy()
    assert np.abs(x).max() <= bound * (1 + 1e-6)
    assert np.abs(x).max() > 0.99 * bound  # the whole range is used
    assert abs(x.mean()) < 0.02 * bound
    assert x.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def test_kaiming_uniform():
    t = big(400, 250)
    assert init.kaiming_uniform_(t) is t
    check_uniform(t, math.sqrt(3) * init.calculate_gain("leaky_relu", 0) / math.sqrt(250))
    init.kaiming_uniform_(t, a=math.sqrt(5))  # what Linear/Conv2d use: U(+-1/sqrt(fan_in))
    check_uniform(t, 1 / math.sqrt(250))
    init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu")
    check_uniform(t, math.sqrt(6 / 400))


def test_kaiming_normal():
    t = big(64, 32, 3, 3)
    init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu")
    x = t.numpy()
    assert abs(x.mean()) < 5 * x.std() / math.sqrt(x.size)
    assert x.std() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.02)
    with pytest.raises(LucidError, match="mode must be 'fan_in' or 'fan_out'"):
        init.kaiming_normal_(t, mode="fan_avg")


def test_xavier():
    t = big(300, 200)
    init.xavier_uniform_(t, gain=2.0)
    check_uniform(t, 2.0 * math.sqrt(6 / 500))
    init.xavier_normal_(t)
    assert t.numpy().std() == pytest.approx(math.sqrt(2 / 500), rel=0.02)


def test_simple_fills_keep_identity_and_dtype():
    t = big(200, 300, dtype=lucid.float64)
    data_before = t
    init.normal_(t, mean=2.0, std=0.5)
    assert t is data_before and t.dtype == lucid.float64
    assert t.numpy().mean() == pytest.approx(2.0, abs=0.01)
    assert t.numpy().std() == pytest.approx(0.5, rel=0.02)
    init.uniform_(t, -3.0, 1.0)
    assert t.numpy().min() >= -3.0 and t.numpy().max() < 1.0
    assert t.numpy().mean() == pytest.approx(-1.0, abs=0.02)
    init.constant_(t, 0.25)
    assert np.all(t.numpy() == 0.25)
    init.ones_(t)
    assert np.all(t.numpy() == 1)
    init.zeros_(t)
    assert np.all(t.numpy() == 0) and t.dtype == lucid.float64
    f32 = big(3)
    init.normal_(f32)
    assert f32.dtype == lucid.float32


def test_trunc_normal_stays_in_range():
    t = big(100, 100)
    init.trunc_normal_(t, std=1.0, a=-0.5, b=0.5)
    x = t.numpy()
    assert x.min() >= -0.5 and x.max() <= 0.5 and x.std() > 0.2


def test_init_on_parameter_keeps_gradient_flag():
    p = lucid.nn.Parameter(np.zeros((4, 4)))
    init.kaiming_uniform_(p)
    assert p.requires_grad and p.dtype == lucid.float32 and p.numpy().any()


def test_seed_makes_init_reproducible():
    a, b = big(10, 10), big(10, 10)
    lucid.random.seed(123)
    init.kaiming_uniform_(a)
    lucid.random.seed(123)
    init.kaiming_uniform_(b)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_init_refuses_non_tensors():
    with pytest.raises(LucidError, match="lucid Tensor"):
        init.zeros_(np.ones(3))
