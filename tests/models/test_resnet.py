"""The ResNet family: exact sizes, registry, torchvision's layout and names, shapes, input
errors, compiled == eager, agreement with an independent PyTorch forward (and torchvision's
own models when it is installed), a finite training step, and the generated docs page."""
import time
from pathlib import Path

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid.models import create_model, list_models, resnet_18, resnet_50
from lucid.models import resnet as R

EXPECTED_PARAMETERS = {
    "resnet_18": 11_689_512,
    "resnet_34": 21_797_672,
    "resnet_50": 25_557_032,
    "resnet_101": 44_549_160,
    "resnet_152": 60_192_808,
}
BASIC_CHANNELS = (64, 128, 256, 512)
BOTTLENECK_CHANNELS = (256, 512, 1024, 2048)


@pytest.fixture(scope="module")
def built():
    """{name: (parameter count, seconds to build)}; each model is built once and dropped."""
    out = {}
    for name in EXPECTED_PARAMETERS:
        start = time.perf_counter()
        model = create_model(name)
        out[name] = (model.parameter_size, time.perf_counter() - start)
        del model
    return out


@pytest.fixture(scope="module")
def r18():
    lucid.random.seed(0)
    return resnet_18(num_classes=10)


@pytest.fixture(scope="module")
def r50():
    lucid.random.seed(1)
    return resnet_50(num_classes=10)


def image(n=1, c=3, size=64, seed=0):
    return lucid.tensor(np.random.default_rng(seed).standard_normal((n, c, size, size)).astype(np.float32))


# ---- size, registry, layout -----------------------------------------------------------------

def test_exact_parameter_counts_and_construction_time(built):
    assert {name: count for name, (count, _) in built.items()} == EXPECTED_PARAMETERS
    # Building draws one array per tensor; element-wise Python loops would take minutes.
    slow = {name: round(t, 2) for name, (_, t) in built.items() if t > 20}
    assert not slow, f"construction too slow: {slow}"


def test_registered_and_created_by_name():
    assert set(EXPECTED_PARAMETERS) <= set(list_models("resnet_*"))
    model = create_model("resnet_18", num_classes=7)
    assert isinstance(model, R.ResNet) and model.name == "resnet_18"
    assert model.fc.out_features == 7
    assert lucid.models.resnet_50 is R.resnet_50
    assert model.parameter_size == EXPECTED_PARAMETERS["resnet_18"] - 513 * (1000 - 7)


def test_layout_and_torchvision_parameter_names(r18, r50):
    stem_conv, stem_bn, stem_relu = r18.stem
    assert isinstance(stem_conv, lucid.nn.Conv2d) and stem_conv.weight.shape == (64, 3, 7, 7)
    assert (stem_conv.stride, stem_conv.padding, stem_conv.bias) == ((2, 2), (3, 3), None)
    assert isinstance(stem_bn, lucid.nn.BatchNorm2d) and isinstance(stem_relu, lucid.nn.ReLU)
    assert (r18.maxpool.kernel_size, r18.maxpool.stride, r18.maxpool.padding) == (3, 2, 1)
    assert isinstance(r18.avgpool, lucid.nn.AdaptiveAvgPool2d)
    assert [len(getattr(r18, f"layer{k}")) for k in range(1, 5)] == [2, 2, 2, 2]
    assert [len(getattr(r50, f"layer{k}")) for k in range(1, 5)] == [3, 4, 6, 3]
    assert r18.fc.in_features == 512 and r50.fc.in_features == 2048

    keys18 = set(r18.state_dict())
    assert {"stem.0.weight", "stem.1.running_var", "layer1.0.conv2.weight", "layer1.1.bn2.bias",
            "layer2.0.downsample.0.weight", "layer2.0.downsample.1.num_batches_tracked",
            "fc.weight", "fc.bias"} <= keys18
    assert r18.layer1[0].downsample is None  # 64 -> 64, stride 1: identity shortcut
    assert not any(k.startswith(("conv1", "bn1")) for k in keys18)

    block = r50.layer2[0]
    assert isinstance(block, R.Bottleneck)
    assert block.conv1.weight.shape == (128, 256, 1, 1) and block.conv1.stride == (1, 1)
    assert block.conv2.weight.shape == (128, 128, 3, 3) and block.conv2.stride == (2, 2)
    assert block.conv3.weight.shape == (512, 128, 1, 1)
    assert block.downsample[0].weight.shape == (512, 256, 1, 1) and block.downsample[0].stride == (2, 2)
    assert r50.layer1[0].downsample is not None and r50.layer1[1].downsample is None  # 64 -> 256


def test_initialisation_is_torchvisions(r50):
    w = r50.layer3[0].conv2.weight.data  # 256 x 256 x 3 x 3: fan_out = 2304
    assert w.dtype == np.float32
    assert abs(w.std() / np.sqrt(2.0 / 2304) - 1) < 0.02 and abs(w.mean()) < 1e-3
    for m in r50.modules():
        if isinstance(m, lucid.nn.BatchNorm2d):
            assert np.all(m.weight.data == 1) and np.all(m.bias.data == 0)
    bound = 1 / np.sqrt(2048)  # fc keeps Linear's default U(+-1/sqrt(fan_in))
    assert np.abs(r50.fc.weight.data).max() <= bound

    zero = resnet_18(zero_init_residual=True)
    assert all(np.all(b.bn2.weight.data == 0) for k in range(1, 5) for b in getattr(zero, f"layer{k}"))
    assert np.all(zero.stem[1].weight.data == 1)


def test_seed_makes_construction_reproducible():
    lucid.random.seed(5)
    a = resnet_18(num_classes=3).state_dict()
    lucid.random.seed(5)
    b = resnet_18(num_classes=3).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


# ---- shapes and errors ----------------------------------------------------------------------

@pytest.mark.parametrize("which, channels", [("r18", BASIC_CHANNELS), ("r50", BOTTLENECK_CHANNELS)])
def test_output_and_feature_shapes(which, channels, request):
    model = request.getfixturevalue(which)
    x = image()
    assert model(x).shape == (1, 10)
    feats = model.forward_features(x)
    assert [f.shape for f in feats] == [(1, c, 64 // s, 64 // s) for c, s in zip(channels, (4, 8, 16, 32))]
    assert model.feature_channels == channels


def test_other_input_channels_and_odd_sizes():
    model = resnet_18(num_classes=4, in_channels=1)
    assert model.stem[0].weight.shape == (64, 1, 7, 7)
    assert model(image(c=1, size=33)).shape == (1, 4)
    assert [f.shape[2] for f in model.forward_features(image(c=1, size=33))] == [9, 5, 3, 2]


def test_bad_inputs_and_arguments_raise_clear_errors(r50):
    with pytest.raises(lucid.ShapeError, match=r"resnet_50: expected 3 input channels .*\(1, 1, 64, 64\)"):
        r50(image(c=1))
    with pytest.raises(lucid.ShapeError, match=r"resnet_50: expected a 4D input .*\(3, 64, 64\)"):
        r50.forward_features(lucid.tensor(np.zeros((3, 64, 64), np.float32)))
    with pytest.raises(lucid.LucidError, match="resnet_18: num_classes must be a positive int"):
        resnet_18(num_classes=0)
    with pytest.raises(lucid.LucidError, match="layers must be four positive ints"):
        R.ResNet(R.BasicBlock, [2, 2, 2])


# ---- compiled == eager ----------------------------------------------------------------------

def randomise_batch_norms(model, seed):
    """Non-trivial running statistics and affine parameters, so eval-mode batch norm (and
    the compiler's folding of it into the convolutions) does real work."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, lucid.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.data = rng.normal(0, 0.1, c).astype(np.float32)
            m.running_var.data = rng.uniform(0.5, 1.5, c).astype(np.float32)
            m.weight.data = rng.uniform(0.5, 1.5, c).astype(np.float32)
            m.bias.data = rng.normal(0, 0.1, c).astype(np.float32)
    return model


def test_compiled_resnet_18_equals_eager_in_eval_mode():
    lucid.random.seed(2)
    model = randomise_batch_norms(resnet_18(), seed=3).eval()
    x = image(seed=4)
    eager = model(x).numpy()
    compiled = lucid.compile(model)
    logits = compiled(x)
    assert logits.shape == (1, 1000)
    np.testing.assert_allclose(logits.numpy(), eager, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(compiled(image(seed=5)).numpy(), model(image(seed=5)).numpy(),
                               rtol=1e-3, atol=1e-4)  # the same build, new values


# ---- PyTorch as the oracle ------------------------------------------------------------------

def torchvision_style_state(bottleneck, layers, num_classes, seed):
    """Random float64 values under torchvision's ResNet keys and shapes, written from
    torchvision's naming (not from lucid's module tree)."""
    rng = np.random.default_rng(seed)
    sd = {}

    def conv(key, cout, cin, k):
        sd[key + ".weight"] = rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k))

    def bn(key, c):
        sd[key + ".weight"] = rng.uniform(0.5, 1.5, c)
        sd[key + ".bias"] = rng.normal(0, 0.1, c)
        sd[key + ".running_mean"] = rng.normal(0, 0.1, c)
        sd[key + ".running_var"] = rng.uniform(0.5, 1.5, c)
        sd[key + ".num_batches_tracked"] = np.array(7, dtype=np.int64)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    cin, expansion = 64, 4 if bottleneck else 1
    for k, depth in enumerate(layers):
        width = 64 * 2 ** k
        cout = width * expansion
        for b in range(depth):
            p = f"layer{k + 1}.{b}"
            if bottleneck:
                shapes = [(width, cin, 1), (width, width, 3), (cout, width, 1)]
            else:
                shapes = [(width, cin, 3), (width, width, 3)]
            for i, (o, c, ks) in enumerate(shapes, 1):
                conv(f"{p}.conv{i}", o, c, ks)
                bn(f"{p}.bn{i}", o)
            if b == 0 and (k > 0 or cin != cout):
                conv(f"{p}.downsample.0", cout, cin, 1)
                bn(f"{p}.downsample.1", cout)
            cin = cout
    sd["fc.weight"] = rng.uniform(-1, 1, (num_classes, cin)) / np.sqrt(cin)
    sd["fc.bias"] = rng.uniform(-1, 1, num_classes) / np.sqrt(cin)
    return sd


def torch_resnet_forward(torch, t, layers, bottleneck, x, training):
    """The ResNet forward pass in plain torch.nn.functional over torchvision-named tensors."""
    tf = torch.nn.functional

    def bn(y, key):
        return tf.batch_norm(y, t[key + ".running_mean"].clone(), t[key + ".running_var"].clone(),
                             t[key + ".weight"], t[key + ".bias"], training, 0.1, 1e-5)

    y = tf.relu(bn(tf.conv2d(x, t["conv1.weight"], stride=2, padding=3), "bn1"))
    y = tf.max_pool2d(y, 3, 2, 1)
    for k, depth in enumerate(layers):
        for b in range(depth):
            p, stride = f"layer{k + 1}.{b}", 2 if k > 0 and b == 0 else 1
            shortcut = y
            if p + ".downsample.0.weight" in t:
                shortcut = bn(tf.conv2d(y, t[p + ".downsample.0.weight"], stride=stride), p + ".downsample.1")
            if bottleneck:
                z = tf.relu(bn(tf.conv2d(y, t[p + ".conv1.weight"]), p + ".bn1"))
                z = tf.relu(bn(tf.conv2d(z, t[p + ".conv2.weight"], stride=stride, padding=1), p + ".bn2"))
                z = bn(tf.conv2d(z, t[p + ".conv3.weight"]), p + ".bn3")
            else:
                z = tf.relu(bn(tf.conv2d(y, t[p + ".conv1.weight"], stride=stride, padding=1), p + ".bn1"))
                z = bn(tf.conv2d(z, t[p + ".conv2.weight"], padding=1), p + ".bn2")
            y = tf.relu(z + shortcut)
    return tf.linear(y.mean(dim=(2, 3)), t["fc.weight"], t["fc.bias"])


@pytest.mark.parametrize("name, bottleneck, layers", [("resnet_18", False, (2, 2, 2, 2)),
                                                      ("resnet_50", True, (3, 4, 6, 3))])
def test_eval_forward_matches_pytorch_through_the_torchvision_renaming(name, bottleneck, layers):
    torch = pytest.importorskip("torch")
    sd = torchvision_style_state(bottleneck, layers, num_classes=10, seed=6)
    model = create_model(name, num_classes=10).double()
    model.load_state_dict(R.convert_torchvision_state_dict(sd))  # strict: every key matches
    assert np.array_equal(model.stem[0].weight.data, sd["conv1.weight"])
    x = np.random.default_rng(7).standard_normal((1, 3, 32, 32))
    ours = model.eval()(lucid.tensor(x)).numpy()
    t = {k: torch.from_numpy(v) for k, v in sd.items()}
    want = torch_resnet_forward(torch, t, layers, bottleneck, torch.from_numpy(x), training=False).numpy()
    np.testing.assert_allclose(ours, want, rtol=1e-9, atol=1e-9)


def test_training_loss_and_gradients_match_pytorch():
    torch = pytest.importorskip("torch")
    layers = (2, 2, 2, 2)
    sd = torchvision_style_state(False, layers, num_classes=5, seed=8)
    model = resnet_18(num_classes=5).double()
    model.load_state_dict(R.convert_torchvision_state_dict(sd))
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((2, 3, 32, 32)), np.array([1, 4])

    loss = F.cross_entropy(model.train()(lucid.tensor(x)), lucid.tensor(y))
    loss.backward()

    t = {k: torch.from_numpy(v).requires_grad_(v.dtype == np.float64 and "running" not in k)
         for k, v in sd.items()}
    want = torch.nn.functional.cross_entropy(
        torch_resnet_forward(torch, t, layers, False, torch.from_numpy(x), training=True), torch.from_numpy(y))
    want.backward()
    np.testing.assert_allclose(loss.item(), want.item(), rtol=1e-9)
    pairs = {"stem.0.weight": "conv1.weight", "stem.1.weight": "bn1.weight",
             "layer2.0.downsample.0.weight": "layer2.0.downsample.0.weight",
             "layer3.1.bn2.bias": "layer3.1.bn2.bias", "fc.weight": "fc.weight"}
    params = dict(model.named_parameters())
    for ours, theirs in pairs.items():
        want = t[theirs].grad.numpy()  # batch norm's backward cancels: compare at the tensor's scale
        np.testing.assert_allclose(params[ours].grad.numpy(), want, rtol=1e-7,
                                   atol=1e-9 * np.abs(want).max(), err_msg=ours)


def test_torchvision_models_load_and_agree():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    for ours_fn, theirs_fn in ((resnet_18, torchvision.models.resnet18),
                               (resnet_50, torchvision.models.resnet50)):
        theirs = theirs_fn(weights=None).eval()
        with torch.no_grad():
            for m in theirs.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.normal_(0, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0, 0.1)
        model = ours_fn()
        assert model.parameter_size == sum(p.numel() for p in theirs.parameters())
        model.load_state_dict(R.convert_torchvision_state_dict(theirs.state_dict()))
        x = np.random.default_rng(10).standard_normal((1, 3, 64, 64)).astype(np.float32)
        with torch.no_grad():
            want = theirs(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(model.eval()(lucid.tensor(x)).numpy(), want, rtol=1e-3, atol=1e-4)


def test_renaming_touches_only_the_stem():
    sd = {"conv1.weight": 1, "bn1.running_var": 2, "layer1.0.conv1.weight": 3,
          "layer1.0.bn1.bias": 4, "fc.bias": 5}
    assert R.convert_torchvision_state_dict(sd) == {
        "stem.0.weight": 1, "stem.1.running_var": 2, "layer1.0.conv1.weight": 3,
        "layer1.0.bn1.bias": 4, "fc.bias": 5}


# ---- training -------------------------------------------------------------------------------

def test_train_step_gives_finite_gradients_everywhere():
    lucid.random.seed(11)
    model = resnet_18(num_classes=3)
    x = image(n=2, size=32, seed=12)
    loss = F.cross_entropy(model(x), lucid.tensor(np.array([0, 2])))
    loss.backward()
    assert np.isfinite(loss.item())
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert np.all(np.isfinite(p.grad.numpy())), name
    assert np.abs(model.stem[0].weight.grad.numpy()).max() > 0
    assert int(model.stem[1].num_batches_tracked.item()) == 1  # train mode updated the statistics
    assert np.abs(model.stem[1].running_mean.numpy()).max() > 0


# ---- docs -----------------------------------------------------------------------------------

def test_docs_page_is_generated_from_the_code(built):
    counts = {name: count for name, (count, _) in built.items()}
    doc = Path(__file__).resolve().parents[2] / "docs" / "models" / "resnet.md"
    assert doc.read_text() == R.docs_markdown(counts), f"regenerate: {R.REGENERATE}"
    for name, count in EXPECTED_PARAMETERS.items():
        assert f"## {name}\n" in doc.read_text() and f"{count:,}" in doc.read_text()
