"""lucid.nn.functional against torch.nn.functional (forward and gradients, float64), plus
checks that need no torch: batch-norm running statistics, dropout's statistics, exact
interpolation indices, error messages, and tracing."""
import math

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid.errors import DTypeError, LucidError, ShapeError
from lucid.tensor import Tensor


def _torch():
    return pytest.importorskip("torch")


def compare(lucid_fn, torch_fn, arrays, grad=None, rtol=1e-9, atol=1e-11, seed=0):
    """Run both functions on the same arrays; compare the outputs and the gradients of
    sum(out * cotangent) with respect to the floating arrays (or the positions `grad`)."""
    torch = _torch()
    arrays = [np.asarray(a) for a in arrays]
    positions = [i for i, a in enumerate(arrays) if a.dtype.kind == "f"] if grad is None else list(grad)
    lt = [Tensor(a.copy(), requires_grad=i in positions) for i, a in enumerate(arrays)]
    tt = [torch.tensor(a.copy(), requires_grad=i in positions) for i, a in enumerate(arrays)]
    lo, to = lucid_fn(*lt), torch_fn(*tt)
    want = to.detach().numpy()
    assert lo.shape == want.shape, f"shape {lo.shape} vs torch {want.shape}"
    np.testing.assert_allclose(lo.numpy(), want, rtol=rtol, atol=atol)
    if not positions:
        return
    cot = np.random.default_rng(seed).normal(size=want.shape)
    lucid.sum(lo * Tensor(cot.astype(lo.dtype.np))).backward()
    to.backward(torch.tensor(cot, dtype=to.dtype))
    for p in positions:
        tg = tt[p].grad.numpy() if tt[p].grad is not None else np.zeros_like(arrays[p])
        assert lt[p].grad is not None, f"no gradient for input {p}"
        np.testing.assert_allclose(lt[p].grad.numpy(), tg, rtol=rtol, atol=atol, err_msg=f"gradient of input {p}")


@pytest.fixture
def tF():
    return _torch().nn.functional


# ---- linear and convolution --------------------------------------------------------------------------

def test_linear(rng, tF):
    x, w, b = rng.normal(size=(4, 3, 5)), rng.normal(size=(6, 5)), rng.normal(size=6)
    compare(F.linear, tF.linear, [x, w, b])
    compare(lambda x, w: F.linear(x, w), lambda x, w: tF.linear(x, w), [rng.normal(size=5), w])


@pytest.mark.parametrize("kw", [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(2, 1), padding=(0, 2), dilation=(1, 2)),
    dict(padding=1, groups=2),
    dict(padding="same", dilation=2),
    dict(padding="valid"),
])
def test_conv2d(rng, tF, kw):
    x = rng.normal(size=(2, 4, 7, 6))
    w = rng.normal(size=(6, 4 // kw.get("groups", 1), 3, 3))
    b = rng.normal(size=6)
    compare(lambda x, w, b: F.conv2d(x, w, b, **kw), lambda x, w, b: tF.conv2d(x, w, b, **kw), [x, w, b])


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_conv2d_same_padding_odd_total_and_unbatched(rng, tF):
    w = rng.normal(size=(3, 2, 2, 4))  # even kernels: the extra padding goes bottom/right
    compare(lambda x, w: F.conv2d(x, w, padding="same"), lambda x, w: tF.conv2d(x, w, padding="same"),
            [rng.normal(size=(1, 2, 5, 6)), w])
    compare(lambda x, w: F.conv2d(x, w, padding=1), lambda x, w: tF.conv2d(x, w, padding=1),
            [rng.normal(size=(2, 5, 6)), w])


@pytest.mark.parametrize("kw", [
    dict(stride=2, padding=1, output_padding=1),
    dict(stride=(2, 3), groups=2, dilation=(1, 2)),
    dict(stride=1, padding=0, output_padding=1, dilation=2),
])
def test_conv_transpose2d(rng, tF, kw):
    x = rng.normal(size=(2, 4, 4, 3))
    w = rng.normal(size=(4, 3, 3, 2))
    b = rng.normal(size=3 * kw.get("groups", 1))
    compare(lambda x, w, b: F.conv_transpose2d(x, w, b, **kw),
            lambda x, w, b: tF.conv_transpose2d(x, w, b, **kw), [x, w, b])


# ---- pooling ---------------------------------------------------------------------------------------------

def _distinct(rng, shape):
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0


@pytest.mark.parametrize("args,kw", [
    ((2,), {}),
    ((3,), dict(stride=2, padding=1)),
    (((3, 2),), dict(stride=(1, 2), padding=(1, 0))),
    ((3,), dict(stride=2, ceil_mode=True)),
    ((2,), dict(stride=2, padding=1, ceil_mode=True)),
    ((2,), dict(stride=1, dilation=2, padding=1)),
])
def test_max_pool2d(rng, tF, args, kw):
    x = _distinct(rng, (2, 3, 7, 8))
    compare(lambda x: F.max_pool2d(x, *args, **kw), lambda x: tF.max_pool2d(x, *args, **kw), [x])


@pytest.mark.parametrize("args,kw", [
    ((2,), {}),
    ((3,), dict(stride=2, padding=1)),
    ((3,), dict(stride=2, padding=1, count_include_pad=False)),
    (((3, 2),), dict(stride=(2, 1), padding=(1, 1), ceil_mode=True)),
    ((3,), dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ((2,), dict(stride=2, ceil_mode=True)),
    ((3,), dict(stride=2, padding=1, divisor_override=4)),
])
def test_avg_pool2d(rng, tF, args, kw):
    x = rng.normal(size=(2, 3, 7, 8))
    compare(lambda x: F.avg_pool2d(x, *args, **kw), lambda x: tF.avg_pool2d(x, *args, **kw), [x])


@pytest.mark.parametrize("in_hw,out", [((7, 7), 1), ((8, 6), (4, 3)), ((7, 5), (3, 4)), ((5, 7), (None, 3)),
                                       ((4, 4), 6), ((10, 3), (4, 3))])
def test_adaptive_avg_pool2d(rng, tF, in_hw, out):
    x = rng.normal(size=(2, 3) + in_hw)
    compare(lambda x: F.adaptive_avg_pool2d(x, out), lambda x: tF.adaptive_avg_pool2d(x, out), [x])


def test_adaptive_avg_pool2d_bins_without_torch():
    x = np.arange(5.0).reshape(1, 1, 1, 5)
    y = F.adaptive_avg_pool2d(Tensor(x), (1, 3)).numpy().ravel()
    # torch's bins for 5 -> 3: [0, 2), [1, 4), [3, 5)
    np.testing.assert_allclose(y, [0.5, 2.0, 3.5])


# ---- interpolation ---------------------------------------------------------------------------------------

INTERP_CASES = [
    dict(size=(7, 9)), dict(size=(3, 2)), dict(size=5), dict(scale_factor=2), dict(scale_factor=(1.5, 0.5)),
    dict(scale_factor=3.3), dict(scale_factor=0.7), dict(size=(6, 10)), dict(scale_factor=2.5,
                                                                           recompute_scale_factor=True),
]


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact", "bilinear-ac", "bilinear"])
@pytest.mark.parametrize("kw", INTERP_CASES)
def test_interpolate(rng, tF, mode, kw):
    extra = {}
    if mode.startswith("bilinear"):
        extra = {"align_corners": mode == "bilinear-ac"}
        mode = "bilinear"
    x = rng.normal(size=(2, 3, 5, 6))
    compare(lambda x: F.interpolate(x, mode=mode, **kw, **extra),
            lambda x: tF.interpolate(x, mode=mode, **kw, **extra), [x])


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_interpolate_float32_matches_torch(rng, tF, mode):
    torch = _torch()
    for in_hw, kw in [((13, 17), dict(size=(50, 34))), ((25, 38), dict(scale_factor=2)),
                      ((50, 76), dict(size=(25, 38))), ((7, 11), dict(scale_factor=1.7))]:
        x = rng.normal(size=(1, 2) + in_hw).astype(np.float32)
        got = F.interpolate(Tensor(x), mode=mode, **kw).numpy()
        want = tF.interpolate(torch.tensor(x), mode=mode, **kw).numpy()
        assert got.dtype == np.float32
        if mode == "nearest":
            np.testing.assert_array_equal(got, want)  # the same source pixels, exactly
        else:
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_interpolate_without_torch():
    x = Tensor(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    np.testing.assert_array_equal(F.interpolate(x, scale_factor=2).numpy()[0, 0],
                                  [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    y = F.interpolate(x, size=(3, 3), mode="bilinear", align_corners=True).numpy()[0, 0]
    np.testing.assert_allclose(y, [[1, 1.5, 2], [2, 2.5, 3], [3, 3.5, 4]])
    y = F.interpolate(x, size=(4, 4), mode="bilinear").numpy()[0, 0]
    np.testing.assert_allclose(y[0], [1, 1.25, 1.75, 2])  # half-pixel centres, clamped at the edges


# ---- activations ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,kw", [
    ("relu", {}), ("leaky_relu", {}), ("leaky_relu", {"negative_slope": 0.2}), ("gelu", {}),
    ("gelu", {"approximate": "tanh"}), ("silu", {}), ("sigmoid", {}), ("tanh", {}), ("softplus", {}),
    ("softplus", {"beta": 2.0, "threshold": 3.0}), ("logsigmoid", {}),
])
def test_activations(rng, tF, name, kw):
    torch = _torch()
    x = rng.normal(size=(3, 4, 5)) * 3
    x[0, 0, :3] = [30.0, -40.0, 0.5]
    tfn = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}.get(name) or getattr(tF, name)
    compare(lambda x: getattr(F, name)(x, **kw), lambda x: tfn(x, **kw), [x])


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_and_log_softmax(rng, tF, axis):
    x = rng.normal(size=(3, 4, 5)) * 4
    x[0, 0, 0] = 800.0  # stability: exp would overflow without the max shift
    compare(lambda x: F.softmax(x, axis), lambda x: tF.softmax(x, dim=axis), [x])
    compare(lambda x: F.log_softmax(x, axis=axis), lambda x: tF.log_softmax(x, dim=axis), [x])
    compare(lambda x: F.softmax(x, dim=axis), lambda x: tF.softmax(x, dim=axis), [x])


# ---- dropout -------------------------------------------------------------------------------------------------

def test_dropout_statistics_scaling_and_identity():
    lucid.random.seed(3)
    x = Tensor(np.ones((200, 500)))
    y = F.dropout(x, p=0.3).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7)
    assert abs(y.mean() - 1.0) < 0.02
    assert F.dropout(x, 0.3, training=False) is x
    assert F.dropout(x, 0.0) is x
    assert not F.dropout(x, 1.0).numpy().any()
    lucid.random.seed(3)
    np.testing.assert_array_equal(F.dropout(x, p=0.3).numpy(), y)  # the mask comes from lucid's generator


def test_dropout_gradient_uses_the_mask():
    lucid.random.seed(0)
    x = Tensor(np.ones((50, 40)), requires_grad=True)
    y = F.dropout(x, 0.5)
    lucid.sum(y).backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())


@pytest.mark.parametrize("p", [-0.1, 1.5, "0.5"])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(LucidError, match="dropout: p"):
        F.dropout(Tensor(np.ones(3)), p)


# ---- normalisation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(rng, tF, shape, training):
    torch = _torch()
    x = rng.normal(size=shape) * 2 + 1
    w, b = rng.normal(size=3), rng.normal(size=3)
    rm, rv = rng.normal(size=3), rng.uniform(0.5, 2, size=3)
    lm, lv = Tensor(rm.copy()), Tensor(rv.copy())
    tm, tv = torch.tensor(rm.copy()), torch.tensor(rv.copy())
    compare(lambda x, w, b: F.batch_norm(x, lm, lv, w, b, training=training, momentum=0.2, eps=1e-3),
            lambda x, w, b: tF.batch_norm(x, tm, tv, w, b, training=training, momentum=0.2, eps=1e-3),
            [x, w, b])
    np.testing.assert_allclose(lm.numpy(), tm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(lv.numpy(), tv.numpy(), rtol=1e-12)


def test_batch_norm_without_affine_or_running_stats(rng, tF):
    x = rng.normal(size=(5, 2, 3))
    compare(lambda x: F.batch_norm(x, None, None, training=True),
            lambda x: tF.batch_norm(x, None, None, training=True), [x])


def test_batch_norm_running_stats_without_torch(rng):
    x = rng.normal(size=(6, 2, 3, 3)).astype(np.float32)
    rm, rv = Tensor(np.zeros(2, np.float32)), Tensor(np.ones(2, np.float32))
    y = F.batch_norm(Tensor(x), rm, rv, training=True, momentum=0.1).numpy()
    mu, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    n = x.size // 2
    np.testing.assert_allclose(rm.numpy(), 0.1 * mu, rtol=1e-5)
    np.testing.assert_allclose(rv.numpy(), 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
    assert rm.dtype == lucid.float32 and rv.dtype == lucid.float32
    np.testing.assert_allclose(y, (x - mu[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5), atol=1e-5)
    # eval uses the running statistics and leaves them alone
    before = rm.numpy().copy()
    y = F.batch_norm(Tensor(x), rm, rv, training=False).numpy()
    np.testing.assert_allclose(y, (x - before[:, None, None]) / np.sqrt(rv.numpy()[:, None, None] + 1e-5),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(rm.numpy(), before)


def test_batch_norm_updates_are_not_differentiated(rng):
    x = Tensor(rng.normal(size=(4, 2)), requires_grad=True)
    rm, rv = Tensor(np.zeros(2)), Tensor(np.ones(2))
    F.batch_norm(x, rm, rv, training=True)
    assert not rm.requires_grad and rm.is_leaf and not rv.requires_grad


def test_batch_norm_trace_records_running_stat_updates(rng):
    rm, rv = Tensor(np.zeros(3, np.float32)), Tensor(np.ones(3, np.float32))
    x = rng.normal(size=(4, 3, 2, 2)).astype(np.float32)
    graph = lucid.trace(lambda x: F.batch_norm(x, rm, rv, training=True), x,
                        param_names={id(rm): "running_mean", id(rv): "running_var"})
    assert graph.meta["updates"] == ["running_mean", "running_var"]
    outs = lucid.ir.Interpreter(graph).run(x)
    np.testing.assert_allclose(outs[1], 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_array_equal(rm.numpy(), np.zeros(3))  # tracing itself changes nothing


@pytest.mark.parametrize("shape,ns", [((3, 4, 5), (5,)), ((2, 3, 4, 5), (4, 5)), ((6, 7), 7)])
def test_layer_norm(rng, tF, shape, ns):
    x = rng.normal(size=shape) * 3
    ns_t = (ns,) if isinstance(ns, int) else ns
    w, b = rng.normal(size=ns_t), rng.normal(size=ns_t)
    compare(lambda x, w, b: F.layer_norm(x, ns, w, b, eps=1e-4),
            lambda x, w, b: tF.layer_norm(x, ns_t, w, b, eps=1e-4), [x, w, b])
    compare(lambda x: F.layer_norm(x, ns), lambda x: tF.layer_norm(x, ns_t), [x])


@pytest.mark.parametrize("shape,groups", [((2, 6, 4, 3), 3), ((3, 4, 5), 2), ((2, 4), 4), ((2, 6, 3, 3), 1)])
def test_group_norm(rng, tF, shape, groups):
    x = rng.normal(size=shape) * 2
    w, b = rng.normal(size=shape[1]), rng.normal(size=shape[1])
    compare(lambda x, w, b: F.group_norm(x, groups, w, b), lambda x, w, b: tF.group_norm(x, groups, w, b),
            [x, w, b])


def test_embedding(rng, tF):
    w = rng.normal(size=(10, 4))
    idx = np.array([[1, 3, 3], [9, 0, 1]])
    compare(F.embedding, lambda i, w: tF.embedding(i, w), [idx, w], grad=[1])


# ---- losses -----------------------------------------------------------------------------------------------

REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,kw", [("mse_loss", {}), ("l1_loss", {}), ("smooth_l1_loss", {}),
                                     ("smooth_l1_loss", {"beta": 0.5}), ("smooth_l1_loss", {"beta": 0.0}),
                                     ("huber_loss", {}), ("huber_loss", {"delta": 0.3})])
def test_regression_losses(rng, tF, name, kw, reduction):
    x, t = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    compare(lambda x, t: getattr(F, name)(x, t, reduction=reduction, **kw),
            lambda x, t: getattr(tF, name)(x, t, reduction=reduction, **kw), [x, t])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy(rng, tF, reduction):
    p, t, w = rng.uniform(0.05, 0.95, size=(4, 3)), rng.uniform(size=(4, 3)), rng.uniform(size=(3,))
    compare(lambda p, t: F.binary_cross_entropy(p, t, reduction=reduction),
            lambda p, t: tF.binary_cross_entropy(p, t, reduction=reduction), [p, t])
    compare(lambda p, t, w: F.binary_cross_entropy(p, t, w, reduction=reduction),
            lambda p, t, w: tF.binary_cross_entropy(p, t, w, reduction=reduction), [p, t, np.broadcast_to(w, (4, 3))],
            grad=[0, 1])
    # log is clamped at -100: a confident wrong answer costs 100, not inf
    edge = F.binary_cross_entropy(Tensor(np.array([0.0, 1.0])), Tensor(np.array([1.0, 0.0])), reduction="none")
    np.testing.assert_array_equal(edge.numpy(), [100.0, 100.0])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_logits(rng, tF, reduction):
    x, t = rng.normal(size=(4, 3)) * 5, rng.uniform(size=(4, 3))
    x[0, :] = [80.0, -90.0, 0.0]  # stable at large |x|
    w, pw = rng.uniform(size=(4, 3)), rng.uniform(0.5, 3, size=(3,))
    compare(lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction=reduction),
            lambda x, t: tF.binary_cross_entropy_with_logits(x, t, reduction=reduction), [x, t])
    compare(lambda x, t, w, pw: F.binary_cross_entropy_with_logits(x, t, w, reduction=reduction, pos_weight=pw),
            lambda x, t, w, pw: tF.binary_cross_entropy_with_logits(x, t, w, reduction=reduction, pos_weight=pw),
            [x, t, w, pw], grad=[0, 1])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kw", [{}, {"ignore_index": 2}, {"weight": True}, {"weight": True, "ignore_index": 0},
                                {"label_smoothing": 0.1}, {"label_smoothing": 0.2, "weight": True},
                                {"label_smoothing": 0.3, "weight": True, "ignore_index": 1}])
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 2, 3)])
def test_cross_entropy_and_nll(rng, tF, reduction, kw, shape):
    torch = _torch()
    logits = rng.normal(size=shape) * 3
    target = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
    target.flat[0] = kw.get("ignore_index", 0)
    kw = dict(kw)
    arrays = [logits, target]
    if kw.pop("weight", False):
        arrays.append(rng.uniform(0.2, 2.0, size=shape[1]))
    compare(lambda x, t, *w: F.cross_entropy(x, t, *w, reduction=reduction, **kw),
            lambda x, t, *w: tF.cross_entropy(x, t, *w, reduction=reduction, **kw), arrays, grad=[0])
    if kw.get("label_smoothing"):
        return
    logp = torch.log_softmax(torch.tensor(logits), 1).numpy()
    compare(lambda x, t, *w: F.nll_loss(x, t, *w, reduction=reduction, **kw),
            lambda x, t, *w: tF.nll_loss(x, t, *w, reduction=reduction, **kw), [logp] + arrays[1:], grad=[0])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kw", [{}, {"label_smoothing": 0.2}, {"weight": True}])
def test_cross_entropy_with_probabilities(rng, tF, reduction, kw):
    logits = rng.normal(size=(5, 4, 3))
    probs = rng.dirichlet(np.ones(4), size=(5, 3)).transpose(0, 2, 1).copy()
    kw = dict(kw)
    arrays = [logits, probs] + ([rng.uniform(0.5, 2, size=4)] if kw.pop("weight", False) else [])
    compare(lambda x, t, *w: F.cross_entropy(x, t, *w, reduction=reduction, **kw),
            lambda x, t, *w: tF.cross_entropy(x, t, *w, reduction=reduction, **kw), arrays, grad=[0, 1])


def test_cross_entropy_unbatched(rng, tF):
    x = rng.normal(size=5)
    compare(lambda x, t: F.cross_entropy(x, t), lambda x, t: tF.cross_entropy(x, t), [x, np.array(3)], grad=[0])
    compare(lambda x, t: F.cross_entropy(x, t, reduction="none"),
            lambda x, t: tF.cross_entropy(x, t, reduction="none"), [x, np.array(3)], grad=[0])


def test_cross_entropy_without_torch():
    logits = Tensor(np.array([[0.0, 0.0], [math.log(3.0), 0.0]]))
    loss = F.cross_entropy(logits, Tensor(np.array([1, 0])), reduction="none").numpy()
    np.testing.assert_allclose(loss, [math.log(2.0), -math.log(0.75)])
    ignored = F.cross_entropy(logits, Tensor(np.array([1, -100]))).numpy()
    np.testing.assert_allclose(ignored, math.log(2.0))


# ---- errors ------------------------------------------------------------------------------------------------

def _x(*shape):
    return Tensor(np.zeros(shape))


@pytest.mark.parametrize("call,err,pattern", [
    (lambda: F.mse_loss(_x(3), _x(3), reduction="avg"), LucidError, "mse_loss: unknown reduction 'avg'"),
    (lambda: F.cross_entropy(_x(3, 4), Tensor(np.zeros(3, np.int64)), reduction="all"), LucidError,
     "cross_entropy: unknown reduction"),
    (lambda: F.mse_loss(_x(3), _x(4)), ShapeError, r"mse_loss: input \(3,\) and target \(4,\)"),
    (lambda: F.cross_entropy(_x(3, 4), Tensor(np.zeros(4, np.int64))), ShapeError,
     r"cross_entropy: input \(3, 4\) needs a target of shape \(3,\)"),
    (lambda: F.cross_entropy(_x(3, 4), Tensor(np.array([0, 1, 4]))), LucidError, "cross_entropy: target class 4"),
    (lambda: F.nll_loss(_x(3, 4), Tensor(np.zeros(3))), DTypeError, "nll_loss: target must hold integer"),
    (lambda: F.cross_entropy(_x(3, 4), Tensor(np.zeros(3, np.int64)), weight=np.ones(3)), ShapeError,
     r"cross_entropy: weight must have shape \(4,\)"),
    (lambda: F.interpolate(_x(1, 1, 2, 2), size=3, mode="bicubic"), LucidError,
     "interpolate: unknown mode 'bicubic'"),
    (lambda: F.interpolate(_x(1, 1, 2, 2)), LucidError, "interpolate: give exactly one of size and scale_factor"),
    (lambda: F.interpolate(_x(1, 2, 2), size=3), ShapeError, "interpolate: input must be 4-D"),
    (lambda: F.interpolate(_x(1, 1, 2, 2), size=3, align_corners=True), LucidError, "interpolate: align_corners"),
    (lambda: F.conv2d(_x(1, 3, 5, 5), _x(2, 2, 3, 3)), ShapeError, r"conv2d.*\(1, 3, 5, 5\).*\(2, 2, 3, 3\)"),
    (lambda: F.conv2d(_x(3, 5), _x(2, 3, 3, 3)), ShapeError, "conv2d: input must be 4-D"),
    (lambda: F.conv2d(_x(1, 3, 5, 5), _x(2, 3, 3, 3), stride=(1, 2, 3)), LucidError, "conv2d: stride must be"),
    (lambda: F.conv2d(_x(1, 3, 5, 5), _x(2, 3, 3, 3), padding="full"), LucidError, "conv2d: padding must be"),
    (lambda: F.conv2d(_x(1, 3, 5, 5), _x(2, 3, 3, 3), bias=np.zeros(3)), ShapeError,
     r"conv2d: bias must have shape \(2,\)"),
    (lambda: F.conv2d(_x(1, 3, 5, 5), _x(2, 3, 3, 3), stride=2, padding="same"), LucidError,
     "conv2d: padding='same' needs stride 1"),
    (lambda: F.max_pool2d(_x(1, 1, 4, 4), 2, padding=2), LucidError, "max_pool2d: padding"),
    (lambda: F.avg_pool2d(_x(1, 1, 4, 4), 0), LucidError, "avg_pool2d: kernel_size must be >= 1"),
    (lambda: F.adaptive_avg_pool2d(_x(1, 1, 4, 4), (2, 0)), LucidError, "adaptive_avg_pool2d: output_size"),
    (lambda: F.linear(_x(2, 3), _x(4, 5)), ShapeError, r"linear: input x \(2, 3\) has 3 features"),
    (lambda: F.linear(_x(2, 3), _x(3)), ShapeError, "linear: weight must be 2-D"),
    (lambda: F.batch_norm(_x(4, 3), _x(2), _x(2)), ShapeError, r"batch_norm: running_mean must have shape \(3,\)"),
    (lambda: F.batch_norm(_x(1, 3), None, None, training=True), LucidError,
     "batch_norm: training needs more than one value"),
    (lambda: F.batch_norm(_x(4, 3), None, None), LucidError, "batch_norm: training=False needs running"),
    (lambda: F.layer_norm(_x(2, 3), (4,)), ShapeError, r"layer_norm: normalized_shape \(4,\)"),
    (lambda: F.group_norm(_x(2, 6, 3), 4), ShapeError, "group_norm: 6 channels"),
    (lambda: F.gelu(_x(3), approximate="fast"), LucidError, "gelu: approximate"),
    (lambda: F.embedding(_x(3), _x(4, 2)), DTypeError, "embedding: indices must be integers"),
    (lambda: F.binary_cross_entropy(Tensor(np.array([1.5])), _x(1)), LucidError, "binary_cross_entropy: input"),
    (lambda: F.smooth_l1_loss(_x(2), _x(2), beta=-1.0), LucidError, "smooth_l1_loss: beta"),
    (lambda: F.cross_entropy(_x(2, 3), Tensor(np.zeros(2, np.int64)), label_smoothing=1.5), LucidError,
     "cross_entropy: label_smoothing"),
    (lambda: F.max_pool2d(_x(1, 1, 4, 4), 2, return_indices=True), LucidError, "max_pool2d: return_indices"),
])
def test_bad_arguments_raise_named_errors(call, err, pattern):
    with pytest.raises(err, match=pattern):
        call()


# ---- tracing -------------------------------------------------------------------------------------------------

def test_functional_network_traces_like_eager(rng):
    w1 = Tensor(rng.normal(size=(8, 3, 3, 3)).astype(np.float32) * 0.2)
    w2 = Tensor(rng.normal(size=(5, 8)).astype(np.float32) * 0.2)
    gamma, beta = Tensor(np.ones(8, np.float32)), Tensor(np.zeros(8, np.float32))
    rm, rv = Tensor(np.zeros(8, np.float32)), Tensor(np.ones(8, np.float32))

    def net(x, target):
        y = F.conv2d(x, w1, padding=1, stride=2)
        y = F.relu(F.batch_norm(y, rm, rv, gamma, beta, training=False))
        y = F.max_pool2d(y, 3, stride=2, padding=1)
        y = F.interpolate(y, scale_factor=2, mode="bilinear")
        y = F.adaptive_avg_pool2d(y, 1).reshape(x.shape[0], -1)
        return F.cross_entropy(F.linear(y, w2), target)

    x = rng.normal(size=(2, 3, 12, 10)).astype(np.float32)
    t = np.array([1, 4])
    graph = lucid.trace(net, x, t)
    assert {"conv2d", "max_pool2d", "take"} <= {n.op for n in graph.compute_nodes}
    np.testing.assert_allclose(lucid.ir.interpret(graph, x, t), net(Tensor(x), Tensor(t)).numpy(), rtol=1e-6)
