"""Tensor basics, creation functions, dtypes and promotion."""
import numpy as np
import pytest

import lucid
from lucid.errors import DTypeError, LucidError


def test_properties_and_conversions():
    t = lucid.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert t.shape == (2, 3) and t.ndim == 2 and t.size == 6 and len(t) == 2
    assert t.dtype == lucid.float32 and t.dtype == np.float32 and t.dtype == "float32"
    assert isinstance(t.numpy(), np.ndarray) and t.data is t.numpy()
    assert t.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert t.sum().item() == 21.0
    assert t.T.shape == (3, 2)
    assert t.astype(lucid.int32).dtype == lucid.int32
    assert t.astype("float64").dtype is lucid.float64
    with pytest.raises(LucidError, match="one element"):
        t.item()
    with pytest.raises(LucidError, match="ambiguous"):
        bool(t)


def test_default_dtypes():
    assert lucid.tensor(1.5).dtype is lucid.float32
    assert lucid.tensor([1, 2]).dtype is lucid.int64
    assert lucid.tensor([True]).dtype is lucid.bool_
    assert lucid.tensor(np.zeros(2)).dtype is lucid.float64  # numpy arrays keep their dtype
    assert lucid.random.randn(2).dtype is lucid.float32
    assert lucid.zeros(2, 3).dtype is lucid.float32
    assert lucid.arange(5).dtype is lucid.int64
    assert lucid.arange(0.0, 1.0, 0.25).dtype is lucid.float32
    with pytest.raises(DTypeError):
        lucid.tensor([1, 2], requires_grad=True)


@pytest.mark.parametrize("a, b, expected", [
    (lucid.float32, 2.5, lucid.float32),
    (lucid.int64, 2.5, lucid.float32),
    (lucid.int32, 2, lucid.int32),
    (lucid.float32, lucid.float64, lucid.float64),
    (lucid.int32, lucid.float32, lucid.float32),
    (lucid.int32, lucid.int64, lucid.int64),
])
def test_promotion(a, b, expected):
    x = lucid.ones(3, dtype=a)
    y = lucid.ones(3, dtype=b) if isinstance(b, lucid.DType) else b
    assert (x + y).dtype is expected
    assert (y + x).dtype is expected


def test_integer_division_is_true_division():
    out = lucid.tensor([1, 2, 3]) / lucid.tensor([2, 2, 2])
    assert out.dtype is lucid.float32
    np.testing.assert_allclose(out.data, [0.5, 1.0, 1.5])


def test_operators_match_numpy(rng):
    a = rng.normal(size=(3, 4)).astype(np.float32)
    b = rng.uniform(0.5, 2, size=(4,)).astype(np.float32)
    ta, tb = lucid.tensor(a), lucid.tensor(b)
    for got, want in [(ta + tb, a + b), (ta - tb, a - b), (ta * tb, a * b), (ta / tb, a / b),
                      (tb ** 2.0, b ** 2), (2.0 ** tb, 2.0 ** b), (-ta, -a), (abs(ta), np.abs(a)),
                      (1.0 - ta, 1.0 - a), (ta @ tb, a @ b), (ta // tb, a // b), (ta % tb, np.mod(a, b)),
                      (ta > tb, a > b), (ta <= 0.0, a <= 0), ((ta > 0) & (ta < 1), (a > 0) & (a < 1)),
                      (a + tb, a + b)]:
        assert isinstance(got, lucid.Tensor)
        np.testing.assert_allclose(got.data, want, rtol=1e-6)


def test_creation_functions():
    np.testing.assert_array_equal(lucid.eye(3).data, np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(lucid.full((2, 2), 7).data, np.full((2, 2), 7))
    np.testing.assert_allclose(lucid.linspace(0, 1, 5).data, np.linspace(0, 1, 5))
    x = lucid.ones(2, 3)
    assert lucid.zeros_like(x).shape == (2, 3) and lucid.ones_like(x).data.sum() == 6
    assert lucid.full_like(x, 3.0).data.sum() == 18.0
    assert lucid.empty(4).shape == (4,)
    assert lucid.zeros((2, 5)).shape == (2, 5)


def test_random_is_seeded():
    lucid.random.seed(5)
    a = lucid.random.randn(4).data
    u = lucid.random.uniform(-1, 1, (1000,)).data
    lucid.random.seed(5)
    assert np.array_equal(a, lucid.random.randn(4).data)
    assert u.min() >= -1 and u.max() < 1
    assert lucid.random.randint(0, 3, (100,)).data.max() <= 2
    assert sorted(lucid.random.permutation(6).tolist()) == list(range(6))
    b = lucid.random.bernoulli(0.3, size=(20000,)).data
    assert abs(b.mean() - 0.3) < 0.02
    assert lucid.random.rand(2, 2).dtype is lucid.float32


def test_repr_is_informative():
    assert "requires_grad=True" in repr(lucid.ones(2, requires_grad=True))
    assert "float32" in repr(lucid.ones(2))
