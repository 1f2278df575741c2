"""The detection losses against numpy and torch (torchvision's formulas on the gathered
samples), their gradients against central finite differences, and their shape checks."""
import numpy as np
import pytest

import lucid
from lucid.errors import DTypeError, ShapeError
from lucid.models.detection.losses import roi_loss, rpn_loss

BETA = 1.0 / 9.0


def np_smooth_l1(d):
    d = np.abs(d)
    return np.where(d < BETA, 0.5 * d * d / BETA, d - 0.5 * BETA)


def np_bce_logits(x, t):
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def np_rpn_loss(obj, deltas, labels, sampled, reg):
    """torchvision: the sampled anchors of all images gathered, BCE mean over them; smooth
    L1 summed over the sampled positives, divided by the number of sampled anchors."""
    s = sampled.astype(bool)
    pos = s & (labels == 1)
    cls = np_bce_logits(obj[s], labels[s]).mean()
    box = np_smooth_l1(deltas[pos] - reg[pos]).sum() / s.sum()
    return cls, box


def np_roi_loss(logits, boxreg, labels, reg, sampled):
    s = sampled.astype(bool)
    lg, lab = logits[s], labels[s]
    logp = lg - lg.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    cls = -logp[np.arange(len(lab)), lab].mean()
    br, rg = boxreg[s], reg[s]
    pos = lab > 0
    box = np_smooth_l1(br[pos, lab[pos]] - rg[pos]).sum() / s.sum()
    return cls, box


def rpn_case(rng, n=2, a=30, dtype=np.float64):
    obj = rng.normal(size=(n, a)) * 2
    deltas = rng.normal(size=(n, a, 4)) * 0.3
    labels = (rng.random((n, a)) < 0.3).astype(dtype)
    sampled = (rng.random((n, a)) < 0.6).astype(dtype)
    reg = rng.normal(size=(n, a, 4)) * 0.3 * labels[..., None]
    return [x.astype(dtype) for x in (obj, deltas, labels, sampled, reg)]


def roi_case(rng, n=2, s=12, c=4, dtype=np.float64):
    logits = rng.normal(size=(n, s, c)) * 2
    boxreg = rng.normal(size=(n, s, c, 4)) * 0.3
    sampled = (rng.random((n, s)) < 0.7).astype(dtype)
    labels = np.where(rng.random((n, s)) < 0.4, rng.integers(1, c, (n, s)), 0) * sampled.astype(np.int64)
    reg = rng.normal(size=(n, s, 4)) * 0.3 * (labels > 0)[..., None]
    return logits.astype(dtype), boxreg.astype(dtype), labels.astype(np.int64), reg.astype(dtype), sampled


def test_rpn_loss_matches_numpy(rng):
    args = rpn_case(rng, dtype=np.float32)
    cls, box = rpn_loss(*[lucid.tensor(x) for x in args])
    want = np_rpn_loss(*[x.astype(np.float64) for x in args])
    np.testing.assert_allclose([float(cls.data), float(box.data)], want, rtol=1e-5)
    assert cls.dtype is lucid.float32


def test_roi_loss_matches_numpy(rng):
    logits, boxreg, labels, reg, sampled = roi_case(rng, dtype=np.float32)
    cls, box = roi_loss(lucid.tensor(logits), lucid.tensor(boxreg), lucid.tensor(labels), lucid.tensor(reg),
                        lucid.tensor(sampled))
    want = np_roi_loss(logits.astype(np.float64), boxreg.astype(np.float64), labels, reg.astype(np.float64),
                       sampled)
    np.testing.assert_allclose([float(cls.data), float(box.data)], want, rtol=1e-5)


def test_losses_match_torch(rng):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    obj, deltas, labels, sampled, reg = rpn_case(rng)
    s = sampled.astype(bool)
    pos = torch.from_numpy(s & (labels == 1))
    ts = torch.from_numpy(s)
    want_cls = tF.binary_cross_entropy_with_logits(torch.from_numpy(obj)[ts], torch.from_numpy(labels)[ts])
    want_box = tF.smooth_l1_loss(torch.from_numpy(deltas)[pos], torch.from_numpy(reg)[pos], beta=BETA,
                                 reduction="sum") / ts.sum()
    cls, box = rpn_loss(*[lucid.tensor(x) for x in (obj, deltas, labels, sampled, reg)])
    np.testing.assert_allclose([float(cls.data), float(box.data)], [want_cls.item(), want_box.item()], rtol=1e-10)

    logits, boxreg, labels, reg, sampled = roi_case(rng)
    ts = torch.from_numpy(sampled.astype(bool))
    lab = torch.from_numpy(labels)[ts]
    want_cls = tF.cross_entropy(torch.from_numpy(logits)[ts], lab)
    p = torch.where(lab > 0)[0]
    br = torch.from_numpy(boxreg)[ts]
    want_box = tF.smooth_l1_loss(br[p, lab[p]], torch.from_numpy(reg)[ts][p], beta=BETA, reduction="sum") / lab.numel()
    cls, box = roi_loss(*[lucid.tensor(x) for x in (logits, boxreg, labels, reg, sampled)])
    np.testing.assert_allclose([float(cls.data), float(box.data)], [want_cls.item(), want_box.item()], rtol=1e-10)


def _fd_check(loss_fn, args, diff, eps=1e-6):
    """Autodiff of sum(losses) against central differences, for the inputs at `diff`."""
    ts = [lucid.tensor(x, requires_grad=(i in diff)) for i, x in enumerate(args)]
    total = sum(loss_fn(*ts), lucid.tensor(0.0, dtype=lucid.float64))
    total.backward()

    def value(arrays):
        return sum(float(v.data) for v in loss_fn(*[lucid.tensor(x) for x in arrays]))

    for i in diff:
        x = args[i]
        num = np.zeros_like(x)
        for j in range(x.size):
            up, down = [a.copy() for a in args], [a.copy() for a in args]
            up[i].flat[j] += eps
            down[i].flat[j] -= eps
            num.flat[j] = (value(up) - value(down)) / (2 * eps)
        np.testing.assert_allclose(ts[i].grad.data, num, rtol=1e-5, atol=1e-7)


def test_rpn_loss_gradients(rng):
    _fd_check(rpn_loss, rpn_case(rng, n=2, a=6), diff=(0, 1))


def test_roi_loss_gradients(rng):
    _fd_check(roi_loss, list(roi_case(rng, n=1, s=5, c=3)), diff=(0, 1))


def test_nothing_sampled_gives_zero_not_nan():
    z = np.zeros((1, 3))
    cls, box = rpn_loss(lucid.randn(1, 3), lucid.randn(1, 3, 4), z, z, np.zeros((1, 3, 4)))
    assert float(cls.data) == 0.0 and float(box.data) == 0.0
    cls, box = roi_loss(lucid.randn(1, 3, 2), lucid.randn(1, 3, 2, 4), np.zeros((1, 3), np.int64), np.zeros((1, 3, 4)),
                        z)
    assert float(cls.data) == 0.0 and float(box.data) == 0.0


def test_loss_shape_errors():
    with pytest.raises(ShapeError, match="rpn_loss: rpn_deltas"):
        rpn_loss(lucid.randn(1, 3), lucid.randn(1, 4, 4), np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 3, 4)))
    with pytest.raises(ShapeError, match="rpn_loss: objectness"):
        rpn_loss(lucid.randn(3), lucid.randn(3, 4), np.zeros(3), np.zeros(3), np.zeros((3, 4)))
    with pytest.raises(ShapeError, match="roi_loss: box_regression"):
        roi_loss(lucid.randn(1, 3, 2), lucid.randn(1, 3, 4), np.zeros((1, 3), np.int64), np.zeros((1, 3, 4)),
                 np.zeros((1, 3)))
    with pytest.raises(DTypeError, match="roi_loss: labels"):
        roi_loss(lucid.randn(1, 3, 2), lucid.randn(1, 3, 2, 4), np.zeros((1, 3)), np.zeros((1, 3, 4)),
                 np.zeros((1, 3)))
