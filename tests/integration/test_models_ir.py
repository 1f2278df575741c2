"""An MLP and a small CNN through the whole IR: trace, print, parse, verify, interpret."""
import numpy as np
import pytest

import lucid
import lucid.nn as nn


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 3 * 3, 10)

    def forward(self, x):
        x = lucid.relu(self.bn1(self.conv1(x)))
        x = self.pool(lucid.relu(self.bn2(self.conv2(x))))
        return self.fc(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize("make, shape", [(MLP, (4, 8)), (SmallCNN, (2, 1, 12, 12))])
@pytest.mark.parametrize("training", [False, True])
def test_model_graph_round_trip_and_interpretation(make, shape, training):
    lucid.random.seed(0)
    model = make()
    model.train(training)
    x = lucid.random.randn(*shape)
    g = lucid.trace(model, x)
    lucid.ir.verify(g)
    text = str(g)
    parsed = lucid.ir.parse(text, params=g.params)
    assert parsed == g
    assert str(parsed) == text
    expected = model(x)
    np.testing.assert_allclose(lucid.ir.interpret(g, x), expected.data, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lucid.ir.interpret(parsed, x), expected.data, rtol=1e-5, atol=1e-5)
    names = {n.name for n in g.param_nodes}
    assert {"fc1.weight", "fc2.bias"} <= names or {"conv1.weight", "bn1.running_mean", "fc.bias"} <= names


def test_training_mode_batch_norm_records_running_stat_updates():
    model = SmallCNN()
    model.train()
    g = lucid.trace(model, lucid.random.randn(2, 1, 12, 12))
    assert set(g.meta["updates"]) >= {"bn1.running_mean", "bn1.running_var", "bn2.running_mean"}
    text = str(g)
    assert "  update %bn1.running_mean = %" in text
    parsed = lucid.ir.parse(text, params=g.params)
    assert parsed == g and parsed.meta["updates"] == g.meta["updates"]


def test_state_dict_save_load_round_trip_is_exact(tmp_path):
    lucid.random.seed(4)
    model = SmallCNN()
    model.train()
    model(lucid.random.randn(2, 1, 12, 12))  # move the running statistics off their defaults
    path = tmp_path / "cnn.lucid"
    lucid.save(model.state_dict(), path)
    fresh = SmallCNN()
    fresh.load_state_dict(lucid.load(path))
    for (name, a), (name_b, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert name == name_b
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
    x = lucid.random.randn(2, 1, 12, 12)
    model.eval(), fresh.eval()
    assert np.array_equal(model(x).data, fresh(x).data)
