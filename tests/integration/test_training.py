"""Models learn: MLPs reach high accuracy on generated data; a small CNN's loss falls."""
import numpy as np
import pytest

import lucid
import lucid.nn as nn
import lucid.nn.functional as F


def two_spirals(n, rng):
    """Two interleaved spirals (n points each) with a little noise: not linearly separable."""
    t = np.sqrt(rng.uniform(0, 1, n)) * 3 * np.pi
    a = np.stack([t * np.cos(t), t * np.sin(t)], 1) / (3 * np.pi)
    x = np.concatenate([a, -a]) + rng.normal(0, 0.02, (2 * n, 2))
    y = np.concatenate([np.zeros(n), np.ones(n)]).astype(np.int64)
    return x.astype(np.float32), y


def blobs(n, rng, k=4):
    centres = rng.uniform(-4, 4, (k, 2))
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(0, 0.6, (n, 2))).astype(np.float32), y.astype(np.int64)


def accuracy(model, x, y):
    with lucid.no_grad():
        return float((lucid.argmax(model(lucid.tensor(x)), axis=1).data == y).mean())


def train(model, opt, x, y, steps, batch=None, rng=None):
    losses = []
    for _ in range(steps):
        if batch:
            idx = rng.integers(0, len(x), batch)
            xb, yb = x[idx], y[idx]
        else:
            xb, yb = x, y
        loss = F.cross_entropy(model(lucid.tensor(xb)), lucid.tensor(yb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mlp_learns_two_spirals(optimizer):
    rng = np.random.default_rng(1)
    lucid.random.seed(1)
    x, y = two_spirals(200, rng)
    model = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))
    if optimizer == "sgd":
        opt = lucid.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = lucid.optim.Adam(model.parameters(), lr=0.01)
    train(model, opt, x, y, steps=700)
    assert accuracy(model, x, y) >= 0.95


def test_mlp_learns_blobs_with_minibatches():
    rng = np.random.default_rng(2)
    lucid.random.seed(2)
    x, y = blobs(400, rng)
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = lucid.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train(model, opt, x, y, steps=300, batch=64, rng=rng)
    assert accuracy(model, x, y) >= 0.95


def test_small_cnn_loss_falls_steadily():
    rng = np.random.default_rng(3)
    lucid.random.seed(3)
    # Images of horizontal vs vertical bars at random positions.
    n = 64
    x = rng.normal(0, 0.3, (n, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 2, n)
    pos = rng.integers(2, 10, n)
    for i in range(n):
        if y[i]:
            x[i, 0, :, pos[i]] += 1.5
        else:
            x[i, 0, pos[i], :] += 1.5
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(16, 2))
    opt = lucid.optim.Adam(model.parameters(), lr=0.01)
    losses = train(model, opt, x, y.astype(np.int64), steps=50, batch=16, rng=rng)
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.5 * first, (first, last)
    # "steadily": the loss averaged over windows of ten steps keeps falling.
    windows = [np.mean(losses[k:k + 10]) for k in range(0, 50, 10)]
    assert all(b < a * 1.05 for a, b in zip(windows, windows[1:])), windows
