"""Layers: parameter names, shapes, counts and default initialisation; forward values and
gradients against PyTorch (weights copied through the state dict, which also checks that
the names match PyTorch's)."""
import math
from collections import OrderedDict

import numpy as np
import pytest

import lucid
import lucid.nn as nn
from lucid.errors import LucidError, ShapeError


@pytest.fixture(autouse=True)
def _seeded():
    """Initialisation and dropout draw from lucid's generator: seed it per test."""
    lucid.random.seed(1234)


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def torch_copy(torch, lmod, tmod):
    """Load the lucid module's state into the torch module (the names must agree)."""
    tmod.load_state_dict({k: torch.from_numpy(v) for k, v in lmod.state_dict().items()})
    return tmod


def compare(lmod, tmod, *inputs, rng, atol=1e-5, rtol=1e-4, grad=True, int_inputs=()):
    """Run both modules on the same inputs; compare outputs, input and parameter grads."""
    torch = pytest.importorskip("torch")
    torch_copy(torch, lmod, tmod)
    lx = [lucid.tensor(x, requires_grad=grad and i not in int_inputs) for i, x in enumerate(inputs)]
    tx = [torch.tensor(x, requires_grad=grad and i not in int_inputs) for i, x in enumerate(inputs)]
    ly, ty = lmod(*lx), tmod(*tx)
    assert tuple(ly.shape) == tuple(ty.shape)
    np.testing.assert_allclose(ly.numpy(), ty.detach().numpy(), atol=atol, rtol=rtol)
    if not grad:
        return ly
    g = randn(rng, *ty.shape) if ty.ndim else np.float32(1.0)
    (ly * lucid.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    for i, (a, b) in enumerate(zip(lx, tx)):
        if i not in int_inputs:
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=atol, rtol=rtol,
                                       err_msg=f"input {i} grad")
    tparams = dict(tmod.named_parameters())
    for name, p in lmod.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tparams[name].grad.numpy(), atol=atol, rtol=rtol,
                                   err_msg=f"grad of {name}")
    return ly


def shapes(mod):
    return {k: tuple(v.shape) for k, v in mod.state_dict().items()}


# ---- parameter counts ------------------------------------------------------------

def test_parameter_counts_of_known_layers():
    assert nn.Linear(10, 5).parameter_size == 55
    assert nn.Linear(10, 5, bias=False).parameter_size == 50
    assert nn.Conv2d(3, 64, 7, bias=False).parameter_size == 9408
    assert nn.Conv2d(3, 64, 3).parameter_size == 64 * 27 + 64
    assert nn.Conv2d(8, 16, 3, groups=4).parameter_size == 16 * 2 * 9 + 16
    assert nn.ConvTranspose2d(16, 8, 4, groups=2).parameter_size == 16 * 4 * 16 + 8
    assert nn.BatchNorm2d(64).parameter_size == 128
    assert nn.LayerNorm((4, 5)).parameter_size == 40
    assert nn.GroupNorm(4, 32).parameter_size == 64
    assert nn.Embedding(100, 16).parameter_size == 1600
    assert nn.ReLU().parameter_size == 0
    # the classic ResNet stem
    stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.MaxPool2d(3, 2, 1))
    assert stem.parameter_size == 9408 + 128


# ---- Linear ----------------------------------------------------------------------

def test_linear_parameters_and_init():
    lin = nn.Linear(200, 300)
    assert shapes(lin) == {"weight": (300, 200), "bias": (300,)}
    assert lin.weight.dtype == lucid.float32 and lin.weight.requires_grad
    bound = 1 / math.sqrt(200)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert np.abs(b).max() <= bound and b.std() > 0.4 * bound
    assert nn.Linear(3, 2, bias=False).bias is None
    assert nn.Linear(3, 2, dtype=lucid.float64).weight.dtype == lucid.float64
    assert repr(lin) == "Linear(in_features=200, out_features=300, bias=True)"


def test_linear_matches_torch(rng):
    torch = pytest.importorskip("torch")
    compare(nn.Linear(6, 4), torch.nn.Linear(6, 4), randn(rng, 3, 6), rng=rng)
    compare(nn.Linear(6, 4, bias=False), torch.nn.Linear(6, 4, bias=False), randn(rng, 2, 5, 6), rng=rng)


# ---- convolutions ----------------------------------------------------------------

def test_conv2d_parameters_and_init():
    conv = nn.Conv2d(6, 32, (3, 5), groups=2)
    assert shapes(conv) == {"weight": (32, 3, 3, 5), "bias": (32,)}
    bound = 1 / math.sqrt(3 * 15)
    assert np.abs(conv.weight.numpy()).max() <= bound
    assert np.abs(conv.bias.numpy()).max() <= bound
    assert conv.weight.numpy().std() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert conv.kernel_size == (3, 5) and conv.stride == (1, 1) and conv.padding == (0, 0)
    with pytest.raises(ShapeError, match="divisible by groups"):
        nn.Conv2d(6, 32, 3, groups=4)
    with pytest.raises(LucidError, match="padding"):
        nn.Conv2d(3, 4, 3, padding="full")
    with pytest.raises(LucidError, match="stride 1"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 1), stride=(2, 1), padding=(1, 0), bias=False),
    dict(kernel_size=3, dilation=2, padding=2),
    dict(kernel_size=3, groups=2, padding=1),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=4, padding="same", dilation=1),
    dict(kernel_size=2, padding="valid"),
])
@pytest.mark.filterwarnings("ignore:Using padding=.same.")
def test_conv2d_matches_torch(rng, kwargs):
    torch = pytest.importorskip("torch")
    x = randn(rng, 2, 4, 9, 8)
    ly = compare(nn.Conv2d(4, 6, **kwargs), torch.nn.Conv2d(4, 6, **kwargs), x, rng=rng, atol=1e-4)
    if kwargs.get("padding") == "same":
        assert ly.shape[2:] == x.shape[2:]


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3),
    dict(kernel_size=3, stride=2, padding=1, output_padding=1),
    dict(kernel_size=4, stride=2, padding=1, groups=2, bias=False),
    dict(kernel_size=3, stride=2, dilation=2),
])
def test_conv_transpose2d_matches_torch(rng, kwargs):
    torch = pytest.importorskip("torch")
    lmod = nn.ConvTranspose2d(4, 6, **kwargs)
    k = kwargs["kernel_size"]
    groups = kwargs.get("groups", 1)
    assert lmod.weight.shape == (4, 6 // groups, k, k)
    compare(lmod, torch.nn.ConvTranspose2d(4, 6, **kwargs), randn(rng, 2, 4, 5, 6), rng=rng, atol=1e-4)


def test_conv_transpose2d_output_size(rng):
    up = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    x = lucid.tensor(randn(rng, 1, 3, 4, 4))
    assert up(x).shape == (1, 2, 7, 7)
    assert up(x, output_size=(8, 8)).shape == (1, 2, 8, 8)
    with pytest.raises(ShapeError, match="output_size"):
        up(x, output_size=(10, 10))
    with pytest.raises(ShapeError, match="output_padding"):
        nn.ConvTranspose2d(3, 2, 3, stride=2, output_padding=2)


# ---- normalisation ---------------------------------------------------------------

def test_batchnorm_state_matches_torch_names():
    torch = pytest.importorskip("torch")
    bn = nn.BatchNorm2d(8)
    assert list(bn.state_dict()) == list(torch.nn.BatchNorm2d(8).state_dict())
    assert bn.num_batches_tracked.dtype == lucid.int64 and bn.num_batches_tracked.shape == ()
    assert np.all(bn.weight.numpy() == 1) and np.all(bn.bias.numpy() == 0)
    assert np.all(bn.running_mean.numpy() == 0) and np.all(bn.running_var.numpy() == 1)
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    assert repr(bn) == repr(torch.nn.BatchNorm2d(8))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm2d_train_and_eval_match_torch(rng, momentum):
    torch = pytest.importorskip("torch")
    lbn, tbn = nn.BatchNorm2d(3, momentum=momentum), torch.nn.BatchNorm2d(3, momentum=momentum)
    lbn.weight.data = randn(rng, 3)
    lbn.bias.data = randn(rng, 3)
    torch_copy(torch, lbn, tbn)
    for step in range(3):
        x = randn(rng, 4, 3, 5, 5) * 2 + 1
        ly = lbn(lucid.tensor(x))
        ty = tbn(torch.tensor(x))
        np.testing.assert_allclose(ly.numpy(), ty.detach().numpy(), atol=1e-5)
    assert lbn.num_batches_tracked.item() == 3
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(getattr(lbn, name).numpy(), getattr(tbn, name).numpy(), atol=1e-5)
    lbn.eval()
    tbn.eval()
    x = randn(rng, 2, 3, 4, 4)
    before = lbn.running_mean.numpy().copy()
    compare(lbn, tbn, x, rng=rng)
    np.testing.assert_array_equal(lbn.running_mean.numpy(), before)  # eval leaves the stats
    assert lbn.num_batches_tracked.item() == 3


def test_batchnorm_train_gradients_match_torch(rng):
    torch = pytest.importorskip("torch")
    compare(nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3), randn(rng, 4, 3, 3, 3), rng=rng, atol=1e-4)
    compare(nn.BatchNorm1d(5), torch.nn.BatchNorm1d(5), randn(rng, 6, 5), rng=rng, atol=1e-4)
    compare(nn.BatchNorm1d(5), torch.nn.BatchNorm1d(5), randn(rng, 6, 5, 7), rng=rng, atol=1e-4)


def test_batchnorm_without_running_stats_or_affine(rng):
    torch = pytest.importorskip("torch")
    lbn = nn.BatchNorm2d(3, affine=False, track_running_stats=False)
    assert list(lbn.state_dict()) == [] and lbn.parameter_size == 0
    lbn.eval()  # no running stats: batch statistics even in eval mode
    tbn = torch.nn.BatchNorm2d(3, affine=False, track_running_stats=False).eval()
    compare(lbn, tbn, randn(rng, 4, 3, 3, 3), rng=rng, atol=1e-4)


def test_batchnorm_checks_input():
    with pytest.raises(ShapeError, match=r"BatchNorm2d: expected 4D input, got shape \(2, 3\)"):
        nn.BatchNorm2d(3)(lucid.zeros(2, 3))
    with pytest.raises(ShapeError, match="expected 3 channels"):
        nn.BatchNorm2d(3)(lucid.zeros(2, 4, 2, 2))
    with pytest.raises(ShapeError, match="2D or 3D"):
        nn.BatchNorm1d(3)(lucid.zeros(2, 3, 2, 2))


def test_norm_options_and_reprs_match_torch():
    torch = pytest.importorskip("torch")
    for make in (lambda m: m.BatchNorm2d(4, bias=False), lambda m: m.BatchNorm1d(4, affine=False),
                 lambda m: m.BatchNorm2d(4, momentum=None, track_running_stats=False),
                 lambda m: m.LayerNorm((2, 3), bias=False), lambda m: m.LayerNorm(3, eps=1e-3),
                 lambda m: m.GroupNorm(2, 4, bias=False), lambda m: m.GroupNorm(1, 4, affine=False)):
        lmod, tmod = make(nn), make(torch.nn)
        assert repr(lmod) == repr(tmod)
        assert shapes(lmod) == {k: tuple(v.shape) for k, v in tmod.state_dict().items()}


def test_layer_norm_and_group_norm_match_torch(rng):
    torch = pytest.importorskip("torch")
    ln, tln = nn.LayerNorm(6), torch.nn.LayerNorm(6)
    ln.weight.data, ln.bias.data = randn(rng, 6), randn(rng, 6)
    compare(ln, tln, randn(rng, 2, 3, 6), rng=rng, atol=1e-4)
    compare(nn.LayerNorm((3, 6), eps=1e-3), torch.nn.LayerNorm((3, 6), eps=1e-3), randn(rng, 2, 3, 6),
            rng=rng, atol=1e-4)
    compare(nn.LayerNorm(6, elementwise_affine=False), torch.nn.LayerNorm(6, elementwise_affine=False),
            randn(rng, 4, 6), rng=rng, atol=1e-4)
    gn, tgn = nn.GroupNorm(2, 6), torch.nn.GroupNorm(2, 6)
    gn.weight.data, gn.bias.data = randn(rng, 6), randn(rng, 6)
    compare(gn, tgn, randn(rng, 2, 6, 3, 4), rng=rng, atol=1e-4)
    assert shapes(gn) == {"weight": (6,), "bias": (6,)}
    with pytest.raises(ShapeError, match="divisible by num_groups"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ShapeError, match="normalized_shape"):
        nn.LayerNorm(5)(lucid.zeros(2, 6))


# ---- activations -----------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda m: m.ReLU(), lambda m: m.LeakyReLU(0.2), lambda m: m.GELU(), lambda m: m.GELU(approximate="tanh"),
    lambda m: m.SiLU(), lambda m: m.Sigmoid(), lambda m: m.Tanh(),
])
def test_activations_match_torch(rng, make):
    torch = pytest.importorskip("torch")
    x = randn(rng, 3, 7) * 3
    x[np.abs(x) < 1e-3] = 0.5  # keep away from relu's kink
    compare(make(nn), make(torch.nn), x, rng=rng)


def test_softmax_layers_match_torch(rng):
    torch = pytest.importorskip("torch")
    x = randn(rng, 3, 4, 5)
    compare(nn.Softmax(axis=1), torch.nn.Softmax(dim=1), x, rng=rng)
    compare(nn.Softmax(dim=0), torch.nn.Softmax(dim=0), x, rng=rng)
    compare(nn.Softmax(), torch.nn.Softmax(dim=-1), x, rng=rng)
    compare(nn.LogSoftmax(axis=-1), torch.nn.LogSoftmax(dim=-1), x, rng=rng)
    assert nn.Softmax(dim=2).axis == 2
    with pytest.raises(LucidError, match="not both"):
        nn.Softmax(axis=1, dim=2)


def test_activation_reprs():
    assert repr(nn.ReLU()) == "ReLU()" and repr(nn.ReLU(inplace=True)) == "ReLU(inplace=True)"
    assert repr(nn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(nn.GELU()) == "GELU(approximate='none')"
    with pytest.raises(LucidError):
        nn.GELU(approximate="fast")


# ---- dropout ---------------------------------------------------------------------

def test_dropout_uses_training_flag():
    drop = nn.Dropout(0.3)
    x = lucid.ones(200, 200)
    y = drop(x).numpy()
    zero = (y == 0).mean()
    assert zero == pytest.approx(0.3, abs=0.02)
    np.testing.assert_allclose(y[y != 0], 1 / 0.7, rtol=1e-6)
    drop.eval()
    np.testing.assert_array_equal(drop(x).numpy(), x.numpy())
    assert np.all(nn.Dropout(0.0)(x).numpy() == 1)
    with pytest.raises(LucidError, match=r"\[0, 1\]"):
        nn.Dropout(1.5)
    assert repr(nn.Dropout()) == "Dropout(p=0.5, inplace=False)"


# ---- pooling, shapes, resizing -----------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda m: m.MaxPool2d(2), lambda m: m.MaxPool2d(3, 2, 1), lambda m: m.MaxPool2d((2, 3), stride=(1, 2)),
    lambda m: m.MaxPool2d(3, 2, ceil_mode=True), lambda m: m.MaxPool2d(2, 1, dilation=2),
    lambda m: m.AvgPool2d(2), lambda m: m.AvgPool2d(3, 2, 1),
    lambda m: m.AvgPool2d(3, 2, 1, count_include_pad=False), lambda m: m.AvgPool2d(2, ceil_mode=True),
    lambda m: m.AdaptiveAvgPool2d((1, 1)), lambda m: m.AdaptiveAvgPool2d(1), lambda m: m.AdaptiveAvgPool2d((3, 2)),
])
def test_pooling_matches_torch(rng, make):
    torch = pytest.importorskip("torch")
    compare(make(nn), make(torch.nn), randn(rng, 2, 3, 7, 6), rng=rng)


def test_pooling_reprs_match_torch():
    torch = pytest.importorskip("torch")
    for make in (lambda m: m.MaxPool2d(3, 2, 1), lambda m: m.AdaptiveAvgPool2d((1, 1))):
        assert repr(make(nn)) == repr(make(torch.nn))


def test_flatten_and_identity():
    x = lucid.zeros(2, 3, 4, 5)
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    assert nn.Flatten(start_dim=2)(x).shape == (2, 3, 20)
    assert nn.Identity(54, unused="x")(x) is x


@pytest.mark.parametrize("kwargs", [
    dict(scale_factor=2, mode="nearest"), dict(size=(5, 7)),
    dict(scale_factor=2, mode="bilinear", align_corners=False),
    dict(size=(6, 9), mode="bilinear", align_corners=True),
])
def test_upsample_matches_torch(rng, kwargs):
    torch = pytest.importorskip("torch")
    compare(nn.Upsample(**kwargs), torch.nn.Upsample(**kwargs), randn(rng, 1, 2, 3, 4), rng=rng)


def test_upsample_needs_one_of_size_and_scale():
    with pytest.raises(LucidError, match="exactly one"):
        nn.Upsample()


# ---- embedding -------------------------------------------------------------------

def test_embedding(rng):
    emb = nn.Embedding(1000, 64, padding_idx=-1)
    assert emb.padding_idx == 999
    w = emb.weight.numpy()
    assert np.all(w[999] == 0)
    assert w[:999].std() == pytest.approx(1.0, rel=0.02) and abs(w[:999].mean()) < 0.02
    idx = np.array([[1, 5, 999], [0, 0, 7]])
    out = emb(lucid.tensor(idx))
    np.testing.assert_array_equal(out.numpy(), w[idx])
    assert repr(emb) == "Embedding(1000, 64, padding_idx=999)"
    pre = nn.Embedding.from_pretrained(lucid.tensor(randn(rng, 4, 3)))
    assert pre.weight.shape == (4, 3) and not pre.weight.requires_grad


def test_embedding_gradients_match_torch(rng):
    torch = pytest.importorskip("torch")
    idx = np.array([[1, 2, 1], [0, 3, 3]])
    compare(nn.Embedding(5, 4), torch.nn.Embedding(5, 4), idx, rng=rng, int_inputs=(0,))


# ---- losses ----------------------------------------------------------------------

def test_cross_entropy_and_nll_losses_match_torch(rng):
    torch = pytest.importorskip("torch")
    logits = randn(rng, 6, 4)
    target = np.array([0, 3, 1, -100, 2, 3])
    w = np.array([1.0, 2.0, 0.5, 1.5], np.float32)
    for kwargs in (dict(), dict(reduction="sum"), dict(reduction="none"), dict(label_smoothing=0.1),
                   dict(weight=w), dict(weight=w, ignore_index=3)):
        tkw = dict(kwargs, weight=torch.tensor(w)) if "weight" in kwargs else kwargs
        t = np.where(target == -100, 0, target) if kwargs.get("ignore_index") == 3 else target
        compare(nn.CrossEntropyLoss(**kwargs), torch.nn.CrossEntropyLoss(**tkw), logits, t,
                rng=rng, int_inputs=(1,))
    logp = np.log(np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    compare(nn.NLLLoss(), torch.nn.NLLLoss(), logp, target, rng=rng, int_inputs=(1,))
    compare(nn.NLLLoss(weight=w, reduction="sum"), torch.nn.NLLLoss(weight=torch.tensor(w), reduction="sum"),
            logp, target, rng=rng, int_inputs=(1,))
    ce = nn.CrossEntropyLoss(weight=w)
    assert [n for n, _ in ce.named_buffers()] == ["weight"] and ce.weight.dtype == lucid.float32


def test_regression_losses_match_torch(rng):
    torch = pytest.importorskip("torch")
    a, b = randn(rng, 5, 3), randn(rng, 5, 3)
    for reduction in ("mean", "sum", "none"):
        compare(nn.MSELoss(reduction=reduction), torch.nn.MSELoss(reduction=reduction), a, b, rng=rng)
        compare(nn.L1Loss(reduction=reduction), torch.nn.L1Loss(reduction=reduction), a, b, rng=rng)
    compare(nn.SmoothL1Loss(beta=0.5), torch.nn.SmoothL1Loss(beta=0.5), a, b, rng=rng)
    compare(nn.HuberLoss(delta=2.0), torch.nn.HuberLoss(delta=2.0), a * 3, b, rng=rng)
    with pytest.raises(LucidError, match="reduction"):
        nn.MSELoss(reduction="avg")


def test_binary_losses_match_torch(rng):
    torch = pytest.importorskip("torch")
    logits = randn(rng, 4, 3)
    target = (rng.random((4, 3)) > 0.5).astype(np.float32)
    compare(nn.BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss(), logits, target, rng=rng)
    pw = np.array([1.0, 2.0, 3.0], np.float32)
    compare(nn.BCEWithLogitsLoss(pos_weight=pw), torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pw)),
            logits, target, rng=rng)
    probs = (1 / (1 + np.exp(-logits))).astype(np.float32)
    compare(nn.BCELoss(reduction="sum"), torch.nn.BCELoss(reduction="sum"), probs, target, rng=rng)


# ---- a small network end to end ----------------------------------------------------

def small_cnn(m):
    return m.Sequential(OrderedDict([
        ("conv", m.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)),
        ("bn", m.BatchNorm2d(8)),
        ("act", m.ReLU(inplace=True)),
        ("pool", m.MaxPool2d(2)),
        ("gap", m.AdaptiveAvgPool2d((1, 1))),
        ("flat", m.Flatten()),
        ("drop", m.Dropout(0.2)),
        ("fc", m.Linear(8, 5)),
    ]))


def test_small_cnn_matches_torch_and_repr(rng):
    torch = pytest.importorskip("torch")
    net, tnet = small_cnn(nn), small_cnn(torch.nn)
    assert shapes(net) == {k: tuple(v.shape) for k, v in tnet.state_dict().items()}
    assert net.parameter_size == sum(p.numel() for p in tnet.parameters())
    text = repr(net).replace("Flatten(start_axis=1, end_axis=-1)", "Flatten(start_dim=1, end_dim=-1)")
    assert text == repr(tnet)
    net.eval()
    tnet.eval()
    compare(net, tnet, randn(rng, 2, 3, 16, 16), rng=rng, atol=1e-4)
    # and back: a torch state dict loads into the lucid net
    tnet.fc.weight.data.fill_(0.5)
    net.load_state_dict(tnet.state_dict())
    assert np.all(net.fc.weight.numpy() == 0.5)


def test_traced_model_names_its_tensors_like_the_state_dict(rng):
    net = small_cnn(nn).eval()
    x = randn(rng, 1, 3, 8, 8)
    graph = lucid.trace(net, x)
    assert set(graph.params) <= set(net.state_dict())
    assert {"conv.weight", "bn.weight", "bn.running_mean", "fc.weight"} <= set(graph.params)
    np.testing.assert_allclose(lucid.ir.interpret(graph, x), net(lucid.tensor(x)).numpy(), atol=1e-5)


def test_traced_batchnorm_records_running_stat_updates(rng):
    bn = nn.BatchNorm2d(2)
    graph = lucid.trace(bn, randn(rng, 2, 2, 3, 3))
    assert set(graph.meta.get("updates", [])) == {"running_mean", "running_var", "num_batches_tracked"}
    assert bn.num_batches_tracked.item() == 0  # tracing does not move state
