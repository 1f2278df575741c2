"""Module bookkeeping: registration, naming, sharing, modes, state dicts, repr, containers."""
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


class Leaf(nn.Module):
    def __init__(self, n=3):
        super().__init__()
        self.weight = nn.Parameter(np.arange(n * 2, dtype=np.float64).reshape(n, 2))
        self.bias = nn.Parameter(np.zeros(n))
        self.register_buffer("count", lucid.zeros(1))
        self.register_buffer("scratch", lucid.ones(2), persistent=False)

    def forward(self, x):
        return x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = Leaf(3)
        self.b = Leaf(4)
        self.head = nn.Parameter(lucid.ones(5))

    def forward(self, x):
        return self.b(self.a(x))


# ---- Parameter -------------------------------------------------------------------

def test_parameter_defaults_to_float32_and_requires_grad():
    p = nn.Parameter(np.ones((2, 3), dtype=np.float64))
    assert isinstance(p, lucid.Tensor) and p.requires_grad
    assert p.dtype == lucid.float32 and p.shape == (2, 3)
    assert nn.Parameter(lucid.randn(2, dtype=lucid.float64)).dtype == lucid.float32
    assert nn.Parameter(np.ones(2), dtype=lucid.float64).dtype == lucid.float64
    assert not nn.Parameter(np.ones(2), requires_grad=False).requires_grad
    assert "Parameter containing" in repr(p)


def test_parameter_gets_gradients():
    p = nn.Parameter(np.array([1.0, 2.0]))
    (p * p).sum().backward()
    np.testing.assert_allclose(p.grad.numpy(), [2.0, 4.0])


# ---- registration ----------------------------------------------------------------

def test_named_parameters_buffers_children_in_definition_order():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["head", "a.weight", "a.bias", "b.weight", "b.bias"]
    assert [n for n, _ in net.named_buffers()] == ["a.count", "a.scratch", "b.count", "b.scratch"]
    assert [n for n, _ in net.named_children()] == ["a", "b"]
    assert [n for n, _ in net.named_modules()] == ["", "a", "b"]
    assert list(net.children()) == [net.a, net.b]
    assert [n for n, _ in net.named_parameters(recurse=False)] == ["head"]
    assert [n for n, _ in net.named_parameters(prefix="model")][0] == "model.head"
    assert len(list(net.parameters())) == 5 and len(list(net.buffers())) == 4


def test_setattr_sorts_values_and_getattr_finds_them():
    m = Leaf()
    assert m.weight is m._parameters["weight"] and m.count is m._buffers["count"]
    m.extra = 5  # ordinary attribute
    assert m.extra == 5 and "extra" not in m._parameters
    m.weight = None  # a parameter may be set to None ...
    assert m.weight is None and [n for n, _ in m.named_parameters()] == ["bias"]
    with pytest.raises(LucidError, match="Parameter or None expected"):
        m.bias = lucid.ones(3)  # ... but not to a plain tensor
    m.count = lucid.full((1,), 7.0)  # buffers take any tensor
    assert m.count.item() == 7.0
    with pytest.raises(LucidError, match="buffer 'count'"):
        m.count = 3
    m.child = Leaf()
    m.child = None
    assert "child" in m._modules and list(m.children()) == []
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        m.nothing
    assert "count" in dir(m)


def test_reassigning_a_name_moves_it_between_kinds():
    m = nn.Module()
    m.x = Leaf()
    m.x = nn.Parameter(np.ones(2))  # a Parameter replaces whatever held the name
    assert "x" not in m._modules and m._parameters["x"] is m.x
    with pytest.raises(LucidError, match="as parameter 'x'"):
        m.x = Leaf()  # as in PyTorch, a parameter's name takes Parameters (or None) only
    del m.x
    m.x = Leaf()
    assert m._modules["x"] is m.x


def test_delattr_removes_registered_values():
    m = Leaf()
    del m.weight
    del m.count
    assert [n for n, _ in m.named_parameters()] == ["bias"]
    assert [n for n, _ in m.named_buffers()] == ["scratch"]
    with pytest.raises(AttributeError):
        m.weight


def test_register_methods_validate():
    m = nn.Module()
    with pytest.raises(LucidError, match="Parameter or None"):
        m.register_parameter("w", lucid.ones(2))
    with pytest.raises(LucidError, match="Tensor or None"):
        m.register_buffer("b", np.ones(2))
    with pytest.raises(LucidError, match="no '.'"):
        m.register_buffer("a.b", lucid.ones(2))
    with pytest.raises(LucidError, match="not a Module"):
        m.add_module("c", 3)
    m.register_buffer("b", lucid.ones(2))
    with pytest.raises(LucidError, match="already exists"):
        m.register_parameter("b", nn.Parameter(np.ones(2)))
    m.register_parameter("p", None)
    assert m.p is None and list(m.parameters()) == []


def test_assigning_before_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.ones(2))

    with pytest.raises(LucidError, match="super\\(\\).__init__"):
        Bad()


# ---- sharing ---------------------------------------------------------------------

def test_shared_parameters_count_once():
    a, b = Leaf(3), Leaf(3)
    b.weight = a.weight  # tied weight
    net = nn.Sequential(a, b)
    names = [n for n, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.bias"]
    assert net.parameter_size == 6 + 3 + 3
    # the state dict keeps both names, as PyTorch does
    assert list(net.state_dict()) == ["0.weight", "0.bias", "0.count", "1.weight", "1.bias", "1.count"]
    # a module used twice is one module
    shared = nn.Sequential(a, a)
    assert shared.parameter_size == 9 and len(list(shared.modules())) == 2
    assert [n for n, _ in shared.named_modules(remove_duplicate=False)] == ["", "0", "1"]


def test_parameter_size_of_known_nets():
    net = Net()
    assert net.parameter_size == 6 + 3 + 8 + 4 + 5


# ---- modes, apply, grads, casting ------------------------------------------------

def test_train_eval_propagate():
    net = Net()
    assert net.training and net.a.training
    assert net.eval() is net
    assert not net.training and not net.a.training and not net.b.training
    net.train()
    assert all(m.training for m in net.modules())
    net.a.train(False)
    assert net.training and not net.a.training
    with pytest.raises(LucidError):
        net.train("yes")


def test_apply_visits_children_first():
    net = Net()
    seen = []
    assert net.apply(lambda m: seen.append(m)) is net
    assert seen == [net.a, net.b, net]


def test_zero_grad_and_requires_grad():
    m = Leaf()
    (m.weight.sum() + m.bias.sum()).backward()
    assert m.weight.grad is not None
    m.zero_grad(set_to_none=False)
    assert np.all(m.weight.grad.numpy() == 0)
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())


def test_to_double_casts_floats_in_place():
    m = Leaf()
    m.register_buffer("steps", lucid.tensor(np.array(3, dtype=np.int64)))
    w = m.weight
    assert m.double() is m
    assert m.weight is w and w.dtype == lucid.float64 and m.count.dtype == lucid.float64
    assert m.steps.dtype == lucid.int64  # integer buffers keep their dtype
    m.to(lucid.float32)
    assert w.dtype == lucid.float32
    m.to("cpu")
    m.float()
    with pytest.raises(LucidError, match="device"):
        m.to("cuda")


# ---- forward and hooks -----------------------------------------------------------

def test_call_runs_forward_and_hooks():
    class Double(nn.Module):
        def forward(self, x):
            return x * 2

    m = Double()
    calls = []
    pre = m.register_forward_pre_hook(lambda mod, args: (args[0] + 1,))
    post = m.register_forward_hook(lambda mod, args, out: calls.append((args[0].item(), out.item())))
    assert m(lucid.tensor(1.0)).item() == 4.0
    assert calls == [(2.0, 4.0)]
    pre.remove()
    post.remove()
    assert m(lucid.tensor(1.0)).item() == 2.0 and len(calls) == 1
    with pytest.raises(NotImplementedError):
        nn.Module()(1)


# ---- state dicts -----------------------------------------------------------------

def test_state_dict_is_ordered_copies():
    net = Net()
    sd = net.state_dict()
    assert isinstance(sd, OrderedDict)
    assert list(sd) == ["head", "a.weight", "a.bias", "a.count", "b.weight", "b.bias", "b.count"]
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    sd["a.weight"][...] = 100.0  # a copy: the module is untouched
    assert net.a.weight.numpy().max() < 100.0
    assert net.state_dict(keep_vars=True)["a.weight"] is net.a.weight


def test_load_state_dict_round_trip_keeps_identity_and_dtype():
    src, dst = Net(), Net()
    for p in src.parameters():
        p.data = np.random.default_rng(0).standard_normal(p.shape).astype(np.float32)
    src.a.count.data = np.array([5.0], dtype=np.float32)
    w = dst.a.weight
    result = dst.load_state_dict(src.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert dst.a.weight is w and w.dtype == lucid.float32
    for (k, v1), (_, v2) in zip(src.state_dict().items(), dst.state_dict().items()):
        np.testing.assert_array_equal(v1, v2, err_msg=k)
    # tensors and float64 arrays are accepted, and cast to each tensor's dtype
    sd = {k: lucid.tensor(v.astype(np.float64)) for k, v in src.state_dict().items()}
    dst.load_state_dict(sd)
    assert dst.a.weight.dtype == lucid.float32
    # the loaded array is not shared with the state dict
    sd2 = src.state_dict()
    dst.load_state_dict(sd2)
    sd2["head"][...] = -1
    np.testing.assert_array_equal(dst.head.numpy(), src.head.numpy())


def test_load_state_dict_missing_and_unexpected_keys():
    net = Net()
    sd = net.state_dict()
    del sd["a.bias"]
    sd["c.weight"] = np.ones(2)
    before = net.b.weight.numpy().copy()
    with pytest.raises(LucidError) as err:
        net.load_state_dict(sd)
    assert not isinstance(err.value, ShapeError)
    assert "missing keys: 'a.bias'" in str(err.value) and "unexpected keys: 'c.weight'" in str(err.value)
    # strict=False loads the rest and reports the mismatch
    sd["b.weight"] = np.full((4, 2), 3.0)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["a.bias"] and result.unexpected_keys == ["c.weight"]
    assert result == (["a.bias"], ["c.weight"])
    assert np.all(net.b.weight.numpy() == 3.0) and not np.all(before == 3.0)


def test_load_state_dict_shape_mismatch_names_key_and_shapes():
    net = Net()
    sd = net.state_dict()
    sd["b.weight"] = np.zeros((2, 4))
    before = net.a.weight.numpy().copy()
    sd["a.weight"] = before + 1
    for strict in (True, False):
        with pytest.raises(ShapeError, match=r"'b.weight' expects shape \(4, 2\), got \(2, 4\)"):
            net.load_state_dict(sd, strict=strict)
    np.testing.assert_array_equal(net.a.weight.numpy(), before)  # nothing was loaded


def test_load_state_dict_from_torch_tensors():
    torch = pytest.importorskip("torch")
    m = Leaf()
    sd = {k: torch.tensor(v, requires_grad=v.ndim == 2) for k, v in m.state_dict().items()}
    sd["weight"] = torch.ones(3, 2, requires_grad=True)
    m.load_state_dict(sd)
    assert np.all(m.weight.numpy() == 1.0)


def test_non_persistent_buffers_and_none_entries_stay_out_of_state_dict():
    m = Leaf()
    m.register_buffer("empty", None)
    assert "scratch" not in m.state_dict() and "empty" not in m.state_dict()
    assert [n for n, _ in m.named_buffers()] == ["count", "scratch"]


def test_deepcopy_gives_independent_module():
    import copy

    net = Net()
    twin = copy.deepcopy(net)
    assert twin.a.weight is not net.a.weight
    assert isinstance(twin.a.weight, nn.Parameter)
    twin.a.weight.data = np.zeros((3, 2), np.float32)
    assert net.a.weight.numpy().any()


def test_get_submodule():
    net = nn.Sequential(OrderedDict(body=Net()))
    assert net.get_submodule("body.a") is net.body.a
    assert net.get_submodule("") is net
    with pytest.raises(LucidError, match="no submodule 'z'"):
        net.get_submodule("body.z")


# ---- repr ------------------------------------------------------------------------

def test_repr_nests_like_torch():
    class WithExtra(nn.Module):
        def extra_repr(self):
            return "k=1"

    class Multi(nn.Module):
        def extra_repr(self):
            return "a=1,\nb=2"

    net = nn.Sequential(WithExtra(), nn.Sequential(WithExtra()), Multi())
    assert repr(net) == (
        "Sequential(\n"
        "  (0): WithExtra(k=1)\n"
        "  (1): Sequential(\n"
        "    (0): WithExtra(k=1)\n"
        "  )\n"
        "  (2): Multi(\n"
        "    a=1,\n"
        "    b=2\n"
        "  )\n"
        ")")
    assert repr(nn.Module()) == "Module()"


# ---- containers ------------------------------------------------------------------

class AddOne(nn.Module):
    def forward(self, x):
        return x + 1


class Scale(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return x * self.k


def test_sequential():
    seq = nn.Sequential(AddOne(), Scale(3), AddOne())
    assert seq(lucid.tensor(1.0)).item() == 7.0
    assert len(seq) == 3 and isinstance(seq[1], Scale) and seq[-1] is seq[2]
    sub = seq[1:]
    assert isinstance(sub, nn.Sequential) and len(sub) == 2 and sub[0] is seq[1]
    assert [n for n, _ in sub.named_children()] == ["1", "2"]  # slicing keeps names
    assert list(seq) == [seq[0], seq[1], seq[2]]
    seq.append(Scale(2))
    assert seq(lucid.tensor(1.0)).item() == 14.0 and len(seq) == 4
    seq.insert(-1, AddOne())
    assert seq(lucid.tensor(1.0)).item() == 16.0
    seq[0] = Scale(0)
    assert seq(lucid.tensor(1.0)).item() == 4.0
    del seq[0]
    assert len(seq) == 4
    with pytest.raises(IndexError):
        seq[10]
    named = nn.Sequential(OrderedDict([("first", AddOne()), ("second", Scale(2))]))
    assert [n for n, _ in named.named_children()] == ["first", "second"]
    assert named.first is named[0] and named(lucid.tensor(0.0)).item() == 2.0


def test_module_list():
    ml = nn.ModuleList([AddOne(), Scale(2)])
    ml.append(Scale(3))
    ml.extend([AddOne()])
    ml.insert(0, Scale(5))
    assert len(ml) == 5 and isinstance(ml[0], Scale) and ml[0].k == 5
    assert [n for n, _ in ml.named_children()] == ["0", "1", "2", "3", "4"]
    assert isinstance(ml[1:3], nn.ModuleList) and len(ml[1:3]) == 2
    del ml[0]
    assert [type(m).__name__ for m in ml] == ["AddOne", "Scale", "Scale", "AddOne"]
    assert [n for n, _ in ml.named_children()] == ["0", "1", "2", "3"]
    ml += [Scale(1)]
    assert len(ml) == 5 and ml[-1].k == 1

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Leaf(2), Leaf(2)])

    h = Holder()
    assert [n for n, _ in h.named_parameters()] == ["layers.0.weight", "layers.0.bias",
                                                    "layers.1.weight", "layers.1.bias"]
    with pytest.raises(LucidError, match="no forward"):
        h.layers(1)


def test_module_dict():
    md = nn.ModuleDict({"x": AddOne(), "y": Scale(2)})
    md["z"] = Leaf(2)
    assert list(md) == ["x", "y", "z"] and list(md.keys()) == ["x", "y", "z"]
    assert "y" in md and len(md) == 3 and md["y"].k == 2
    assert [n for n, _ in md.named_parameters()] == ["z.weight", "z.bias"]
    assert isinstance(md.pop("x"), AddOne) and "x" not in md
    md.update([("w", AddOne())])
    assert list(md.items())[-1][0] == "w"
    del md["w"]
    with pytest.raises(KeyError):
        md["w"]
    md.clear()
    assert len(md) == 0
