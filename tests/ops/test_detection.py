"""The detection ops of lucid.ops.detection (Faster R-CNN's box coder, NMS, RoI Align).

Beyond the registry-generated suite (samples vs reference, interpreter, finite
differences, the torch oracles, native vs interpreter): the numpy references against
independent formulations written here (a box-by-box NMS loop in torchvision's order of
operations, a per-sample RoI Align loop), against torchvision when it imports, the
threshold and tie semantics, the adjoint identity of roi_align / roi_align_grad, the FPN
level rule, anchors, and the native kernels on bigger inputs than the samples (NMS on
6000 boxes, maps taller than one work band, two images, float64, a training step).
"""
import math
import time

import numpy as np
import pytest

import lucid
from lucid.codegen.program import NativeProgram
from lucid.errors import DTypeError, ShapeError
from lucid.ir.passes import PassManager, pipeline
from lucid.ops import detection as D
from lucid.ops.registry import get_op
from lucid.tensor import Tensor


def _torchvision():
    """torch and torchvision, or a skip: torchvision's wheel may fail to import beside a
    newer torch (RuntimeError, not ImportError), so importorskip alone is not enough."""
    torch = pytest.importorskip("torch")
    try:
        import torchvision
        import torchvision.ops  # noqa: F401
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"torchvision unavailable: {err}")
    return torch, torchvision


def _native(fn, *arrays, opt_level=2):
    """Compile `fn` traced on `arrays` natively; returns (outputs, interpreter outputs)."""
    g = lucid.trace(fn, *[Tensor(a) for a in arrays])
    opt = PassManager(pipeline(opt_level)).run(g)
    prog = NativeProgram(opt)
    expected = lucid.ir.interpret(g, *arrays)
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    return prog.run(list(arrays), opt.params), expected, prog, opt


def _boxes(rng, n, size=100.0, low=4.0, high=40.0, dtype=np.float64):
    return D.random_boxes(rng, n, size, low, high).astype(dtype)


# ---- independent formulations --------------------------------------------------------------

def loop_iou(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = w * h
            out[i, j] = inter / ((p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter)
    return out


def loop_nms(boxes, scores, threshold):
    """Greedy NMS box by box, torchvision's CPU kernel's order: arithmetic in the boxes'
    dtype (numpy scalars), the IoU compared with the threshold as a double."""
    n = len(boxes)
    order = sorted(range(n), key=lambda i: -float(scores[i]))  # sorted() is stable
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    area = (x2 - x1) * (y2 - y1)
    zero = boxes.dtype.type(0)
    dropped = [False] * n
    keep = []
    for a, i in enumerate(order):
        if dropped[i]:
            continue
        keep.append(i)
        for j in order[a + 1:]:
            if dropped[j]:
                continue
            w = max(zero, min(x2[i], x2[j]) - max(x1[i], x1[j]))
            h = max(zero, min(y2[i], y2[j]) - max(y1[i], y1[j]))
            inter = w * h
            if float(inter / (area[i] + area[j] - inter)) > threshold:
                dropped[j] = True
    return keep


def naive_roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """RoI Align one sample at a time, as torchvision's CPU kernel describes it, in the
    features' dtype."""
    t = x.dtype.type
    n, c, height, width = x.shape
    oh, ow = output_size
    out = np.zeros((len(rois), c, oh, ow), dtype=x.dtype)
    off = t(0.5) if aligned else t(0)
    for k, roi in enumerate(rois):
        b = int(roi[0])
        sx, sy, ex, ey = (roi[j] * t(spatial_scale) - off for j in range(1, 5))
        rw, rh = ex - sx, ey - sy
        if not aligned:
            rw, rh = max(rw, t(1)), max(rh, t(1))
        bh, bw = rh / t(oh), rw / t(ow)
        for ph in range(oh):
            for pw in range(ow):
                total = np.zeros(c, dtype=x.dtype)
                for iy in range(sampling_ratio):
                    y = sy + t(ph) * bh + t(iy + 0.5) * bh / t(sampling_ratio)
                    for ix in range(sampling_ratio):
                        xx = sx + t(pw) * bw + t(ix + 0.5) * bw / t(sampling_ratio)
                        if y < -1 or y > height or xx < -1 or xx > width:
                            continue
                        yy, xc = max(y, t(0)), max(xx, t(0))
                        yl, xl = int(yy), int(xc)
                        if yl >= height - 1:
                            yl = yh = height - 1
                            yy = t(yl)
                        else:
                            yh = yl + 1
                        if xl >= width - 1:
                            xl = xh = width - 1
                            xc = t(xl)
                        else:
                            xh = xl + 1
                        ly, lx = yy - t(yl), xc - t(xl)
                        hy, hx = t(1) - ly, t(1) - lx
                        f = x[b]
                        total += (hy * hx * f[:, yl, xl] + hy * lx * f[:, yl, xh]
                                  + ly * hx * f[:, yh, xl] + ly * lx * f[:, yh, xh])
                out[k, :, ph, pw] = total / t(sampling_ratio * sampling_ratio)
    return out


# ---- box_iou, box coder, clip_boxes ------------------------------------------------------------

def test_box_iou_matches_a_loop(rng):
    a, b = _boxes(rng, 7), _boxes(rng, 5)
    b[0] = a[3]
    np.testing.assert_allclose(D.box_iou(a, b).numpy(), loop_iou(a, b), rtol=1e-12)
    assert D.box_iou(a, b).numpy()[3, 0] == 1.0


def test_box_iou_matches_torchvision(rng):
    torch, tv = _torchvision()
    a, b = _boxes(rng, 30, dtype=np.float32), _boxes(rng, 20, dtype=np.float32)
    want = tv.ops.box_iou(torch.tensor(a), torch.tensor(b)).numpy()
    np.testing.assert_allclose(D.box_iou(a, b).numpy(), want, rtol=1e-6, atol=1e-7)


def test_box_iou_has_no_gradient():
    assert not get_op("box_iou").differentiable
    a = Tensor(np.array([[0.0, 0.0, 2.0, 2.0]]), requires_grad=True)
    assert not D.box_iou(a, a).requires_grad


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_decode_round_trip(rng, weights):
    boxes, anchors = _boxes(rng, 50), _boxes(rng, 50)
    deltas = D.box_encode(boxes, anchors, weights)
    np.testing.assert_allclose(D.box_decode(deltas, anchors, weights).numpy(), boxes, rtol=1e-12, atol=1e-12)
    # and the other way round, for deltas inside the clip
    d = rng.uniform(-1, 1, (50, 4))
    np.testing.assert_allclose(D.box_encode(D.box_decode(d, anchors, weights), anchors, weights).numpy(), d,
                               rtol=1e-10, atol=1e-12)


def test_encode_hand_computed():
    anchor = np.array([[0.0, 0.0, 10.0, 20.0]])
    box = np.array([[5.0, 0.0, 25.0, 10.0]])
    # centres (5, 10) -> (15, 5); sizes (10, 20) -> (20, 10)
    want = [[1.0, -0.25, math.log(2.0), math.log(0.5)]]
    np.testing.assert_allclose(D.box_encode(box, anchor).numpy(), want, rtol=1e-14)
    np.testing.assert_allclose(D.box_encode(box, anchor, (10, 10, 5, 5)).numpy(),
                               [[10.0, -2.5, 5 * math.log(2.0), 5 * math.log(0.5)]], rtol=1e-14)


def test_decode_clamps_the_size_deltas():
    anchor = np.array([[0.0, 0.0, 16.0, 16.0]])
    got = D.box_decode(np.array([[0.0, 0.0, 100.0, -1.0]]), anchor).numpy()[0]
    width, height = got[2] - got[0], got[3] - got[1]
    assert width == pytest.approx(1000.0)  # 16 * exp(log(1000/16))
    assert height == pytest.approx(16 * math.exp(-1.0))


def test_decode_gradient_flows_to_deltas_only(rng):
    deltas = Tensor(rng.uniform(-1, 1, (4, 4)), requires_grad=True)
    anchors = Tensor(_boxes(rng, 4), requires_grad=True)
    D.box_decode(deltas, anchors).sum().backward()
    assert deltas.grad is not None and anchors.grad is None


def test_box_coder_matches_torchvision(rng):
    torch, tv = _torchvision()
    from torchvision.models.detection._utils import BoxCoder

    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    boxes, anchors = _boxes(rng, 20, dtype=np.float32), _boxes(rng, 20, dtype=np.float32)
    want = coder.encode_single(torch.tensor(boxes), torch.tensor(anchors)).numpy()
    np.testing.assert_allclose(D.box_encode(boxes, anchors, (10, 10, 5, 5)).numpy(), want, rtol=1e-5, atol=1e-6)
    d = rng.uniform(-2, 2, (20, 4)).astype(np.float32)
    want = coder.decode_single(torch.tensor(d), torch.tensor(anchors)).numpy()
    np.testing.assert_allclose(D.box_decode(d, anchors, (10, 10, 5, 5)).numpy(), want, rtol=1e-5, atol=1e-4)


def test_clip_boxes():
    boxes = np.array([[-5.0, 3.0, 50.0, 70.0], [1.0, -1.0, 2.0, 2.0]])
    np.testing.assert_array_equal(D.clip_boxes(boxes, height=60, width=40).numpy(),
                                  [[0.0, 3.0, 40.0, 60.0], [1.0, 0.0, 2.0, 2.0]])
    t = Tensor(boxes, requires_grad=True)
    D.clip_boxes(t, 60, 40).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), [[0, 1, 0, 0], [1, 0, 1, 1]])


def test_box_shape_errors():
    with pytest.raises(ShapeError, match="box_iou"):
        D.box_iou(np.zeros((3, 5)), np.zeros((2, 4)))
    with pytest.raises(ShapeError, match="box_encode"):
        D.box_encode(np.zeros((3, 4)), np.zeros((2, 4)))
    with pytest.raises(DTypeError, match="box_decode"):
        D.box_decode(np.zeros((3, 4), dtype=np.int64), np.zeros((3, 4)))


# ---- nms ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7])
def test_nms_matches_a_loop(rng, dtype, threshold):
    for n, ties in [(60, False), (60, True), (150, False)]:
        boxes = _boxes(rng, n, size=60.0, dtype=dtype)
        scores = (rng.integers(0, 5, n) if ties else rng.uniform(0, 1, n)).astype(dtype)
        want = loop_nms(boxes, scores, threshold)
        got = D.nms(boxes, scores, threshold).numpy()
        assert got.dtype == np.int64 and got.shape == (n,)
        assert got[got >= 0].tolist() == want
        assert (got[len(want):] == -1).all()


def test_nms_threshold_is_strict():
    boxes = np.array([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0]])  # IoU exactly 1/2
    assert D.nms(boxes, np.array([0.9, 0.8]), 0.5).numpy().tolist() == [0, 1]
    assert D.nms(boxes, np.array([0.9, 0.8]), 0.49).numpy().tolist() == [0, -1]


def test_nms_compares_the_threshold_as_a_double():
    """IoU 3/10 rounds up in float32 (above the double 0.3, so torchvision drops the box)
    and down in float64 (equal to 0.3: kept); numpy would compare float32 with 0.3
    rounded to float32 and keep it."""
    boxes = np.array([[0.0, 0.0, 10.0, 1.0], [0.0, 0.0, 3.0, 1.0]])
    scores = np.array([0.9, 0.8])
    assert D.nms(boxes.astype(np.float32), scores.astype(np.float32), 0.3).numpy().tolist() == [0, -1]
    assert D.nms(boxes, scores, 0.3).numpy().tolist() == [0, 1]
    assert float(np.float32(3) / np.float32(10)) > 0.3
    t = D.strict_threshold(0.3, np.float32)
    assert t < np.float32(0.3) and np.nextafter(t, np.float32(1)) == np.float32(0.3)
    assert D.strict_threshold(0.7, np.float32) == np.float32(0.7)  # rounds down: nothing to do


def test_nms_ties_keep_index_order():
    box = [0.0, 0.0, 4.0, 4.0]
    boxes = np.array([box, [20, 20, 24, 24], box, box])
    assert D.nms(boxes, np.array([0.5, 0.5, 0.5, 0.9]), 0.5).numpy().tolist() == [3, 1, -1, -1]
    assert D.nms(boxes, np.array([0.5, 0.5, 0.5, 0.5]), 0.5).numpy().tolist() == [0, 1, -1, -1]


def test_nms_max_output_pads_and_truncates(rng):
    boxes, scores = _boxes(rng, 40, size=300.0), rng.uniform(0, 1, 40)
    full = D.nms(boxes, scores, 0.5).numpy()
    kept = full[full >= 0]
    np.testing.assert_array_equal(D.nms(boxes, scores, 0.5, max_output=5).numpy(), kept[:5])
    padded = D.nms(boxes, scores, 0.5, max_output=60).numpy()
    assert padded.shape == (60,) and padded[:len(kept)].tolist() == kept.tolist() and (padded[len(kept):] == -1).all()
    assert D.nms(np.zeros((0, 4)), np.zeros(0), 0.5, max_output=3).numpy().tolist() == [-1, -1, -1]
    assert D.nms(boxes, scores, 0.5, max_output=0).numpy().shape == (0,)


def test_nms_rejects_bad_arguments():
    with pytest.raises(ShapeError, match="nms"):
        D.nms(np.zeros((3, 4)), np.zeros(4), 0.5)
    with pytest.raises(ShapeError, match="max_output"):
        D.nms(np.zeros((3, 4)), np.zeros(3), 0.5, max_output=-1)


def test_nms_matches_torchvision(rng):
    torch, tv = _torchvision()
    for dtype in (np.float32, np.float64):
        boxes = _boxes(rng, 300, size=200.0, dtype=dtype)
        scores = rng.integers(0, 20, 300).astype(dtype)  # ties
        for thr in (0.3, 0.5, 0.7):
            want = tv.ops.nms(torch.tensor(boxes), torch.tensor(scores), thr).numpy()
            got = D.nms(boxes, scores, thr).numpy()
            np.testing.assert_array_equal(got[got >= 0], want)


def _many_boxes(rng, n=6000):
    centres = rng.uniform(0, 800, (n, 2))
    sizes = rng.uniform(16, 300, (n, 2))
    return (np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32),
            rng.uniform(0, 1, n).astype(np.float32))


def test_nms_reference_handles_6000_boxes_quickly(rng):
    boxes, scores = _many_boxes(rng)
    start = time.process_time()
    keep = D.nms(boxes, scores, 0.7).numpy()
    seconds = time.process_time() - start
    print(f"numpy nms, 6000 boxes: {seconds * 1e3:.0f} ms CPU, {(keep >= 0).sum()} kept")
    assert seconds < 1.0
    # spot check the greedy property: no two kept boxes overlap above the threshold
    kept = keep[keep >= 0]
    iou = D.box_iou(boxes[kept], boxes[kept]).numpy()
    np.fill_diagonal(iou, 0)
    assert iou.max() <= 0.7


def test_native_nms_on_6000_boxes(rng):
    boxes, scores = _many_boxes(rng)
    (got,), (want,), prog, g = _native(lambda b, s: D.nms(b, s, 0.7, max_output=5000), boxes, scores)
    np.testing.assert_array_equal(got, want)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        prog.run([boxes, scores], g.params)
        times.append(time.perf_counter() - start)
    print(f"native nms, 6000 boxes: {min(times) * 1e3:.1f} ms")
    assert min(times) < 0.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_nms_ties_and_threshold_rounding(rng, dtype):
    boxes = _boxes(rng, 200, size=80.0, dtype=dtype)
    scores = rng.integers(0, 6, 200).astype(dtype)
    scores[:3] = [-0.0, 0.0, -0.0]  # -0.0 and 0.0 are equal scores: index order decides
    for thr in (0.3, 0.5):
        (got,), (want,), _, _ = _native(lambda b, s: D.nms(b, s, thr), boxes, scores)
        np.testing.assert_array_equal(got, want)
        assert got[got >= 0].tolist() == loop_nms(boxes, scores, thr)


def test_batched_nms_matches_per_class_nms(rng):
    boxes, scores = _boxes(rng, 120, size=80.0), rng.uniform(0, 1, 120)
    classes = rng.integers(0, 4, 120)
    got = D.batched_nms(boxes, scores, classes, 0.5).numpy()
    got = got[got >= 0]
    want = []
    for c in range(4):
        idx = np.flatnonzero(classes == c)
        want += idx[loop_nms(boxes[idx], scores[idx], 0.5)].tolist()
    want.sort(key=lambda i: (-scores[i], i))
    assert got.tolist() == want
    traced = lucid.ir.interpret(lucid.trace(lambda b, s, c: D.batched_nms(b, s, c, 0.5),
                                            Tensor(boxes), Tensor(scores), Tensor(classes)), boxes, scores, classes)
    np.testing.assert_array_equal(traced[traced >= 0], got)


# ---- roi_align -------------------------------------------------------------------------------

_ALIGN_CASES = [(True, 1, 1.0), (True, 2, 0.5), (True, 3, 0.25), (False, 1, 0.5), (False, 2, 1.0),
                (False, 3, 0.125)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("aligned,ratio,scale", _ALIGN_CASES)
def test_roi_align_matches_a_per_sample_loop(rng, dtype, aligned, ratio, scale):
    x = rng.normal(size=(2, 3, 9, 11)).astype(dtype)
    rois = D.random_rois(rng, 6, 2, 9, 11, scale, margin=3.0)
    rois[0, 1:] = [-8.0 / scale, -8.0 / scale, 2.0 / scale, 1.0 / scale]  # partly off the map
    rois[1, 1:] = [3.0 / scale, 2.0 / scale, 3.2 / scale, 2.1 / scale]  # smaller than a pixel
    rois[2, 1:] = [5.0 / scale, 4.0 / scale, 40.0 / scale, 30.0 / scale]  # past the far edges
    rois = rois.astype(dtype)
    attrs = dict(output_size=(3, 4), spatial_scale=scale, sampling_ratio=ratio, aligned=aligned)
    got = D.roi_align(x, rois, **attrs).numpy()
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got, naive_roi_align(x, rois, **attrs), **tol)


def test_roi_align_matches_torchvision(rng):
    torch, tv = _torchvision()
    x = rng.normal(size=(2, 4, 12, 10)).astype(np.float32)
    rois = D.random_rois(rng, 8, 2, 12, 10, 0.5).astype(np.float32)
    for aligned in (True, False):
        for ratio in (1, 2, 4):
            want = tv.ops.roi_align(torch.tensor(x), torch.tensor(rois), (5, 3), spatial_scale=0.5,
                                    sampling_ratio=ratio, aligned=aligned).numpy()
            got = D.roi_align(x, rois, (5, 3), 0.5, ratio, aligned).numpy()
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_roi_align_grad_is_the_adjoint(rng):
    x = rng.normal(size=(2, 3, 10, 8))
    rois = D.random_rois(rng, 9, 2, 10, 8, 0.5)
    g = rng.normal(size=(9, 3, 2, 3))
    attrs = dict(output_size=(2, 3), spatial_scale=0.5, sampling_ratio=2, aligned=False)
    fwd = get_op("roi_align").reference(x, rois, **attrs)
    back = get_op("roi_align_grad").reference(g, rois, feature_shape=x.shape, **attrs)
    assert np.sum(fwd * g) == pytest.approx(np.sum(x * back), rel=1e-12)
    # autodiff of roi_align goes through roi_align_grad
    t = Tensor(x, requires_grad=True)
    (D.roi_align(t, rois, (2, 3), 0.5, 2, False) * Tensor(g)).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), back, rtol=1e-12)


def test_roi_align_rejects_what_it_cannot_do():
    x, rois = np.zeros((1, 2, 4, 4)), np.array([[0.0, 0, 0, 2, 2]])
    with pytest.raises(ShapeError, match="sampling_ratio"):
        D.roi_align(x, rois, sampling_ratio=0)
    with pytest.raises(ShapeError, match="batch index 1"):
        D.roi_align(x, np.array([[1.0, 0, 0, 2, 2]]))
    with pytest.raises(ShapeError, match="rois"):
        D.roi_align(x, np.zeros((3, 4)))
    with pytest.raises(DTypeError, match="rois"):
        D.roi_align(x.astype(np.float32), rois)


# ---- multiscale_roi_align, fpn_levels ---------------------------------------------------------

def _pyramid(rng, n=2, channels=3, height=64, width=80, dtype=np.float32):
    return [rng.normal(size=(n, channels, height >> lv, width >> lv)).astype(dtype) for lv in range(2, 6)]


def _image_rois(rng, k, n=2, height=64, width=80, dtype=np.float32):
    """RoIs in image pixels of every FPN size class (8 to 700 pixels across)."""
    side = np.exp(rng.uniform(np.log(8), np.log(700), (k, 2)))
    x1 = rng.uniform(-10, width - 4, k)
    y1 = rng.uniform(-10, height - 4, k)
    return np.stack([rng.integers(0, n, k), x1, y1, x1 + side[:, 0], y1 + side[:, 1]], 1).astype(dtype)


def test_fpn_levels_follow_the_formula(rng):
    rois = _image_rois(rng, 200)
    area = (rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2])
    want = np.clip(np.floor(4 + np.log2(np.sqrt(area) / 224) + 1e-6), 2, 5)
    np.testing.assert_array_equal(D.fpn_levels(rois).numpy(), want)
    assert set(want) == {2.0, 3.0, 4.0, 5.0}
    exact = np.array([[0, 0, 0, 224, 224], [0, 0, 0, 112, 112], [0, 0, 0, 111, 112]], dtype=np.float32)
    np.testing.assert_array_equal(D.fpn_levels(exact).numpy(), [4, 3, 2])


def test_multiscale_roi_align_pools_each_roi_at_its_level(rng):
    feats, rois = _pyramid(rng), _image_rois(rng, 40)
    got = D.multiscale_roi_align(rois, feats).numpy()
    levels = D.fpn_levels(rois).numpy().astype(int)
    for k in range(len(rois)):
        lv = levels[k]
        want = get_op("roi_align").reference(feats[lv - 2], rois[k:k + 1], output_size=(7, 7),
                                             spatial_scale=2.0 ** -lv, sampling_ratio=2, aligned=False)
        np.testing.assert_allclose(got[k:k + 1], want, rtol=1e-6, atol=1e-7)


def test_multiscale_traced_selects_like_eager(rng):
    """Traced RoIs take the static path (every level pools every RoI, `where` selects);
    eager RoIs pool each RoI once: same values, same gradients."""
    feats, rois = _pyramid(rng, dtype=np.float64), _image_rois(rng, 30, dtype=np.float64)
    cot = rng.normal(size=(30, 3, 7, 7))

    def loss(r, *fs):
        return (D.multiscale_roi_align(r, fs) * Tensor(cot)).sum()

    g = lucid.trace(lambda r, *fs: D.multiscale_roi_align(r, fs), Tensor(rois), *[Tensor(f) for f in feats])
    assert [n.op for n in g.compute_nodes].count("roi_align") == 4
    np.testing.assert_allclose(lucid.ir.interpret(g, rois, *feats),
                               D.multiscale_roi_align(rois, feats).numpy(), rtol=1e-12)
    ts = [Tensor(f, requires_grad=True) for f in feats]
    loss(Tensor(rois), *ts).backward()
    traced = lucid.ir.interpret(lucid.ir.grad_graph(lucid.trace(loss, Tensor(rois), *[Tensor(f) for f in feats]),
                                                    wrt=[1, 2, 3, 4]), rois, *feats)
    for t, want in zip(ts, traced[1:]):
        np.testing.assert_allclose(t.grad.numpy(), want, rtol=1e-10, atol=1e-12)


def test_multiscale_matches_torchvision(rng):
    torch, tv = _torchvision()
    from collections import OrderedDict

    feats, rois = _pyramid(rng, n=1), _image_rois(rng, 25, n=1)
    pooler = tv.ops.MultiScaleRoIAlign(["p2", "p3", "p4", "p5"], 7, 2)
    maps = OrderedDict((f"p{lv}", torch.tensor(f)) for lv, f in zip(range(2, 6), feats))
    want = pooler(maps, [torch.tensor(rois[:, 1:])], [(64, 80)]).numpy()
    np.testing.assert_allclose(D.multiscale_roi_align(rois, feats).numpy(), want, rtol=1e-5, atol=1e-6)


# ---- anchors -------------------------------------------------------------------------------

def _torch_anchors(torch, sizes, ratios, stride, height, width):
    """torchvision's AnchorGenerator for one level, written out in torch."""
    scales = torch.as_tensor(sizes, dtype=torch.float32)
    h_ratios = torch.sqrt(torch.as_tensor(ratios, dtype=torch.float32))
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (h_ratios[:, None] * scales[None, :]).view(-1)
    base = (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()
    sx = torch.arange(0, width, dtype=torch.int32).to(torch.float32) * stride
    sy = torch.arange(0, height, dtype=torch.int32).to(torch.float32) * stride
    yy, xx = torch.meshgrid(sy, sx, indexing="ij")
    shifts = torch.stack([xx.reshape(-1), yy.reshape(-1), xx.reshape(-1), yy.reshape(-1)], dim=1)
    return (shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4).numpy()


def test_anchor_grid_matches_the_torch_formulation():
    torch = pytest.importorskip("torch")
    for sizes, ratios, stride, h, w in [((32,), (0.5, 1.0, 2.0), 4, 5, 7), ((128, 256), (0.5, 1.0, 2.0), 16, 3, 4),
                                        ((512,), (1.0,), 64, 2, 2)]:
        got = D.anchor_grid(sizes, ratios, stride, h, w)
        assert got.dtype == lucid.float32 and got.shape == (h * w * len(sizes) * len(ratios), 4)
        np.testing.assert_array_equal(got.numpy(), _torch_anchors(torch, sizes, ratios, stride, h, w))


def test_anchor_grid_matches_torchvision():
    torch, tv = _torchvision()
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    gen = AnchorGenerator(((32,), (64,)), ((0.5, 1.0, 2.0),) * 2)
    images = ImageList(torch.zeros(1, 3, 64, 96), [(64, 96)])
    maps = [torch.zeros(1, 1, 16, 24), torch.zeros(1, 1, 8, 12)]
    want = gen(images, maps)[0].numpy()
    got = np.concatenate([D.anchor_grid((32,), (0.5, 1.0, 2.0), 4, 16, 24).numpy(),
                          D.anchor_grid((64,), (0.5, 1.0, 2.0), 8, 8, 12).numpy()])
    np.testing.assert_array_equal(got, want)


def test_anchor_grid_is_a_constant_in_a_trace(rng):
    deltas = rng.uniform(-1, 1, (2 * 3 * 3, 4)).astype(np.float32)
    g = lucid.trace(lambda d: D.box_decode(d, D.anchor_grid((16,), (0.5, 1.0, 2.0), 8, 2, 3)), Tensor(deltas))
    assert [n.op for n in g.compute_nodes] == ["box_decode"]
    anchors = D.anchor_grid((16,), (0.5, 1.0, 2.0), 8, 2, 3).numpy()
    np.testing.assert_allclose(lucid.ir.interpret(g, deltas), D.box_decode(deltas, anchors).numpy())


# ---- native kernels beyond the samples ---------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_roi_align_and_grad_on_tall_maps(rng, dtype):
    """Two images, maps taller than one band of roi_align_grad, RoIs off the map."""
    x = rng.normal(size=(2, 5, 37, 29)).astype(dtype)
    rois = D.random_rois(rng, 16, 2, 37, 29, 0.5, margin=4.0).astype(dtype)
    cot = rng.normal(size=(16, 5, 3, 4)).astype(dtype)
    attrs = dict(output_size=(3, 4), spatial_scale=0.5, sampling_ratio=2, aligned=True)
    (y,), (want,), _, _ = _native(lambda a, r: D.roi_align(a, r, **attrs), x, rois)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(y, want, **tol)
    op = get_op("roi_align_grad")
    (gx,), (want,), _, _ = _native(lambda gg, r: op(gg, r, feature_shape=x.shape, **attrs), cot, rois)
    np.testing.assert_allclose(gx, want, **tol)


def test_native_multiscale_training_step(rng):
    """Loss through decode -> clip -> multiscale RoI Align; gradients for the features and
    the deltas, natively (fused, memory-planned) vs the interpreter."""
    feats, anchors = _pyramid(rng, channels=4), _image_rois(rng, 24)
    deltas = rng.uniform(-0.5, 0.5, (24, 4)).astype(np.float32)
    cot = rng.normal(size=(24, 4, 7, 7)).astype(np.float32)

    def loss(d, *fs):
        boxes = D.clip_boxes(D.box_decode(d, Tensor(anchors[:, 1:]), (10, 10, 5, 5)), 64, 80)
        rois = lucid.concatenate([Tensor(anchors[:, :1]), boxes], axis=1)
        return (D.multiscale_roi_align(rois, fs) * Tensor(cot)).sum()

    arrays = [deltas] + feats
    g = lucid.ir.grad_graph(lucid.trace(loss, *[Tensor(a) for a in arrays]), wrt=[0, 1, 2, 3, 4])
    want = lucid.ir.interpret(g, *arrays)
    opt = PassManager(pipeline(2)).run(g)
    got = NativeProgram(opt).run(arrays, opt.params)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_native_box_ops_fuse_and_match(rng):
    anchors, deltas = _boxes(rng, 30, dtype=np.float32), rng.uniform(-1, 1, (30, 4)).astype(np.float32)
    gt = _boxes(rng, 6, dtype=np.float32)

    def fn(d, a, b):  # corners start below 100: the clip cuts far sides, never a whole box
        boxes = D.clip_boxes(D.box_decode(d, a, (10, 10, 5, 5)), 105, 110)
        return D.box_iou(boxes, b), D.box_encode(b[:1], boxes, (10, 10, 5, 5))

    got, want, _, _ = _native(fn, deltas, anchors, gt)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
