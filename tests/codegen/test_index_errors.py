"""Native code raises on an out-of-range index, as eager mode does (lucid.codegen.checks).

Eager mode and the interpreter refuse an index outside an op's range with the op's
ShapeError; compiled code (JIT and AOT artifacts) must raise the same error, naming the op
and the model's line, instead of clamping silently -- while in-range indices still give
exactly the eager results."""
import ctypes
import json
import os

import numpy as np
import pytest

import lucid
from lucid.errors import ShapeError
from lucid.ops.detection import roi_align
from lucid.ops.indexing import gather, index_select, scatter_add, take
from lucid.ops.registry import apply

HERE = os.path.basename(__file__)
RNG = np.random.default_rng(7)


def _t(a):
    return lucid.Tensor(a)


def _take(x, i):
    return take(x, i, axis=0) * 2.0


def _gather(x, i):
    return gather(x, i, axis=1) + 1.0


def _scatter(x, i, s):
    return scatter_add(x, i, s, axis=1)


def _take_add(g, i):
    return apply("take_add", g, i, axis=1, size=5)


def _index_select(x, i):
    return index_select(x, 1, i)


def _embedding(w, i):
    return lucid.nn.functional.embedding(i, w)


def _roi(x, r):
    return roi_align(x, r, output_size=(2, 2), sampling_ratio=2)


def _roi_grad(g, r):
    return apply("roi_align_grad", g, r, feature_shape=(2, 3, 8, 8), output_size=(2, 2), spatial_scale=1.0,
                 sampling_ratio=2, aligned=True)


def _rois(batch):
    r = np.array([[0, 1, 1, 5, 6], [1, 0, 2, 7, 7], [0, 2, 0, 4, 3]], np.float32)
    r[:, 0] = batch
    return r


def _f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# name, fn, good inputs, [bad inputs]: each bad case has one index past the end or before -n
CASES = [
    ("take", _take, [_f32(5, 3), np.array([0, 4, -5, 2])],
     [[_f32(5, 3), np.array([0, 5, 1, 2])], [_f32(5, 3), np.array([0, 1, -6, 2])]]),
    ("take", _take, [_f32(5, 3), np.array([[1, -1], [3, 0]], np.int32)],
     [[_f32(5, 3), np.array([[1, 9], [3, 0]], np.int32)]]),
    ("gather", _gather, [_f32(4, 5), RNG.integers(-5, 5, (4, 3))],
     [[_f32(4, 5), np.array([[0, 1, 2], [3, 4, 5], [0, 0, 0], [1, 1, 1]])],
      [_f32(4, 5), np.array([[0, 1, 2], [3, 4, 0], [0, 0, 0], [1, 1, -6]])]]),
    ("scatter_add", _scatter, [_f32(4, 5), RNG.integers(-5, 5, (4, 3)), _f32(4, 3)],
     [[_f32(4, 5), np.array([[0, 1, 2], [3, 4, 5], [0, 0, 0], [1, 1, 1]]), _f32(4, 3)],
      [_f32(4, 5), np.array([[-7, 1, 2], [3, 4, 0], [0, 0, 0], [1, 1, 1]]), _f32(4, 3)]]),
    ("take_add", _take_add, [_f32(2, 4, 3), np.array([4, 0, 0, -2])],
     [[_f32(2, 4, 3), np.array([4, 0, 5, -2])], [_f32(2, 4, 3), np.array([4, 0, -6, -2])]]),
    ("take", _index_select, [_f32(3, 6), np.array([5, 0, -6])], [[_f32(3, 6), np.array([6, 0, 1])]]),
    ("take", _embedding, [_f32(10, 4), np.array([[1, 9], [0, 3]])], [[_f32(10, 4), np.array([[1, 10], [0, 3]])]]),
    ("roi_align", _roi, [_f32(2, 3, 8, 8), _rois([0, 1, 1])],
     [[_f32(2, 3, 8, 8), _rois([0, 2, 1])], [_f32(2, 3, 8, 8), _rois([0, 1, -1])]]),
    ("roi_align_grad", _roi_grad, [_f32(3, 3, 2, 2), _rois([1, 0, 1])],
     [[_f32(3, 3, 2, 2), _rois([1, 0, 2.5])]]),
]


def _expect_same_error(fn, compiled, arrays, op):
    with pytest.raises(ShapeError) as eager:
        fn(*map(_t, arrays))
    with pytest.raises(type(eager.value)) as native:
        compiled(*map(_t, arrays))
    msg = str(native.value)
    assert msg.startswith(f"{op}:") and "out of range" in msg, msg
    assert HERE in msg, msg  # the model's own line


@pytest.mark.parametrize("op, fn, good, bads", CASES, ids=[f"{c[0]}-{c[1].__name__}" for c in CASES])
def test_native_raises_as_eager(op, fn, good, bads):
    compiled = lucid.compile(fn)
    want = fn(*map(_t, good)).numpy()
    got = compiled(*map(_t, good)).numpy()
    if op in ("scatter_add", "take_add", "roi_align", "roi_align_grad"):  # sums: the order may differ
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, want)
    for bad in bads:
        _expect_same_error(fn, compiled, bad, op)
    # the status word is per call: good inputs work again after a failure
    np.testing.assert_allclose(compiled(*map(_t, good)).numpy(), want, rtol=1e-5, atol=1e-6)


def test_fused_gather_in_the_middle_names_its_line():
    def f(x, i, j, y):
        a = gather(lucid.exp(x) * 2.0, i, axis=1)   # line of the first gather
        b = gather(x, j, axis=1)                     # line of the second
        return lucid.tanh(a + b) + y

    x, y = _f32(4, 6), _f32(4, 3)
    i, j = RNG.integers(-6, 6, (4, 3)), RNG.integers(-6, 6, (4, 3))
    compiled = lucid.compile(f)
    np.testing.assert_allclose(compiled(*map(_t, (x, i, j, y))).numpy(), f(*map(_t, (x, i, j, y))).numpy(),
                               rtol=1e-6, atol=1e-6)
    graph = compiled.builds[0].graph
    assert len(graph.compute_nodes) == 1, "the test wants one fused kernel"
    first = f.__code__.co_firstlineno + 1
    bad_j = j.copy()
    bad_j[3, 2] = 6
    with pytest.raises(ShapeError, match=rf"^gather: .*{HERE}:{first + 1}\)"):
        compiled(*map(_t, (x, i, bad_j, y)))
    bad_i = i.copy()
    bad_i[0, 0] = -7
    with pytest.raises(ShapeError, match=rf"^gather: .*{HERE}:{first}\)"):
        compiled(*map(_t, (x, bad_i, bad_j, y)))


@pytest.mark.parametrize("threads", [1, 2])
def test_parallel_kernel_reports_from_any_chunk(threads):
    def f(x, i):
        return gather(x, i, axis=1) * 0.5

    x = _f32(512, 64)  # 32768 elements: the kernel runs on the thread pool
    i = RNG.integers(-64, 64, (512, 64))
    compiled = lucid.compile(f, threads=threads)
    np.testing.assert_array_equal(compiled(_t(x), _t(i)).numpy(), f(_t(x), _t(i)).numpy())
    for row in (0, 255, 511):
        bad = i.copy()
        bad[row, 17] = 64
        with pytest.raises(ShapeError, match="^gather: "):
            compiled(_t(x), _t(bad))
    np.testing.assert_array_equal(compiled(_t(x), _t(i)).numpy(), f(_t(x), _t(i)).numpy())


def test_gradient_through_take_raises_too():
    w = lucid.Tensor(_f32(6, 3), requires_grad=True)

    def step(i):
        loss = (take(w, i, axis=0) ** 2).sum()
        loss.backward()
        return loss

    compiled = lucid.compile(step)
    compiled(_t(np.array([0, 5, 2])))
    with pytest.raises(ShapeError, match="^take"):
        compiled(_t(np.array([0, 6, 2])))


# ---- AOT artifacts --------------------------------------------------------------------

@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    def model(x, i):
        return take(x, i, axis=0) * 3.0

    folder = str(tmp_path_factory.mktemp("aot_index") / "takes")
    x, i = _f32(5, 4), np.array([4, 0, -5])
    lucid.export(model, (x, i), folder, name="takes")
    return folder, x, i


def test_artifact_raises_the_ops_error(artifact):
    folder, x, i = artifact
    art = lucid.load_artifact(folder)
    np.testing.assert_array_equal(art(x, i).numpy(), np.take(x, i, axis=0) * 3.0)
    with pytest.raises(ShapeError, match=rf"^artifact takes: take: an index is out of range.*{HERE}"):
        art(x, np.array([4, 0, 5]))
    with pytest.raises(ShapeError, match="take"):
        art(x, np.array([-6, 0, 1]))
    np.testing.assert_array_equal(art(x, i).numpy(), np.take(x, i, axis=0) * 3.0)
    with open(os.path.join(folder, "model.h")) as f:
        assert "positive return value" in f.read()


def test_c_wrapper_returns_nonzero(artifact):
    folder, x, i = artifact
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    code = manifest["code"]
    if code["kind"] != "shared":
        pytest.skip("no system linker: the artifact holds an object file, not a C library")
    lib = ctypes.CDLL(os.path.join(folder, "model.so"))
    run = getattr(lib, code["symbols"]["run"])
    run.restype = ctypes.c_int
    size = getattr(lib, code["symbols"]["workspace_size"])
    size.restype = ctypes.c_size_t
    weights = np.zeros(64, np.uint8)  # the model has no parameters
    work = np.empty(size() + 64, np.uint8)
    out = np.full((3, 4), 7.0, np.float32)

    def call(idx):
        idx = np.ascontiguousarray(idx, np.int64)
        ins = np.array([x.ctypes.data, idx.ctypes.data], np.uintp)
        outs = np.array([out.ctypes.data], np.uintp)
        return run(ctypes.c_void_p(weights.ctypes.data), ctypes.c_void_p(ins.ctypes.data),
                   ctypes.c_void_p(outs.ctypes.data), ctypes.c_void_p(work.ctypes.data))

    assert call(i) == 0
    np.testing.assert_array_equal(out, np.take(x, i, axis=0) * 3.0)
    rc = call(np.array([4, 7, 0]))
    assert rc > 0
    assert "take: an index is out of range" in code["index_errors"][str(rc)]
    assert call(i) == 0
