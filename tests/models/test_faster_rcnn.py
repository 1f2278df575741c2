"""faster_rcnn_resnet_50_fpn: parameter counts (the seed's and the unique one), the shared
stem, the seed's examples as written, static output shapes and valid masks, predict on
random weights, finite gradients from get_loss, the Training Notes recipe end to end,
input errors, and the generated docs page.

Everything but the seed's own 224x224 example runs on small images (32x32 or 64x64) with
few proposals (kwargs), so the file stays fast on two cores."""
import re
from pathlib import Path

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid.models import create_model, faster_rcnn_resnet_50_fpn, list_models
from lucid.models.detection import FasterRCNN, docs as D
from lucid.models.detection.rpn import default_anchor_sizes
from lucid.models.resnet import ResNet
from lucid.ops.detection import box_iou

DEFAULT_COUNT = 43_506_366
SEED_PAGE_COUNT = 43_515_902
SMALL = dict(num_classes=5, backbone_num_classes=10, pre_nms_top_n=64, post_nms_top_n=16,
             rpn_batch_size_per_image=64, box_batch_size_per_image=32)


def formula(num_classes, backbone_num_classes):
    return 41_349_741 + 2_049 * backbone_num_classes + 5_125 * num_classes


@pytest.fixture(scope="module")
def default_model():
    lucid.random.seed(0)
    return faster_rcnn_resnet_50_fpn()


@pytest.fixture(scope="module")
def small_model():
    lucid.random.seed(1)
    return faster_rcnn_resnet_50_fpn(**SMALL)


def images(n, size, seed):
    rng = np.random.default_rng(seed)
    return lucid.tensor(rng.standard_normal((n, 3, size, size)).astype(np.float32))


# ---- sizes and structure --------------------------------------------------------------------

def test_parameter_counts_at_the_defaults(default_model):
    assert "faster_rcnn_resnet_50_fpn" in list_models()
    assert default_model.parameter_size == DEFAULT_COUNT == formula(21, 1000)
    assert "43,506,366 parameters" in faster_rcnn_resnet_50_fpn.__doc__  # what `lucid models` reads
    # The seed's figure counts every name, so the stem (9,536 parameters) twice.
    by_name = sum(p.size for _, p in default_model.named_parameters(remove_duplicate=False))
    assert by_name == SEED_PAGE_COUNT == DEFAULT_COUNT + 9_536
    assert sum(p.size for p in default_model.backbone.stem.parameters()) == 9_536
    counts = D.parameter_counts(default_model)
    assert (counts["constant"], counts["per_backbone_class"], counts["per_class"]) == (41_349_741, 2_049, 5_125)


def test_parameter_counts_for_other_class_counts(small_model):
    assert small_model.parameter_size == formula(5, 10) == 41_395_856
    assert small_model.backbone.net.fc.weight.shape == (10, 2048)
    assert small_model.cls_score.weight.shape == (5, 1024)
    assert small_model.bbox_pred.weight.shape == (20, 1024)


def test_structure_and_the_shared_stem(default_model):
    m = default_model
    assert isinstance(m, FasterRCNN) and isinstance(m.backbone.net, ResNet)
    assert m.backbone.net.name == "resnet_50" and m.backbone.net.fc.weight.shape == (1000, 2048)
    assert m.backbone.stem is m.backbone.net.stem and m.backbone.maxpool is m.backbone.net.maxpool
    names = [n for n, _ in m.named_parameters()]
    assert len(names) == len(set(id(p) for p in m.parameters()))
    assert "backbone.net.stem.0.weight" in names and not any(n.startswith("backbone.stem.") for n in names)
    sd = m.state_dict()  # shared tensors under both names, as PyTorch
    assert np.array_equal(sd["backbone.stem.0.weight"], sd["backbone.net.stem.0.weight"])
    assert "backbone.stem.1.running_var" in sd and "backbone.net.fc.weight" in sd
    # FPN: 1x1 laterals and 3x3 outputs with bias; RPN head; box head.
    for k, c in enumerate((256, 512, 1024, 2048)):
        assert m.backbone.fpn.lateral[k].weight.shape == (256, c, 1, 1)
        assert m.backbone.fpn.lateral[k].bias.shape == (256,)
        assert m.backbone.fpn.output[k].weight.shape == (256, 256, 3, 3)
        assert m.backbone.fpn.output[k].bias.shape == (256,)
    head = m.rpn.head
    assert head.conv.weight.shape == (256, 256, 3, 3) and head.conv.bias.shape == (256,)
    assert head.cls_logits.weight.shape == (9, 256, 1, 1) and head.bbox_pred.weight.shape == (36, 256, 1, 1)
    assert m.fc1.weight.shape == (1024, 12544) and m.fc2.weight.shape == (1024, 1024)
    assert m.drop1.p == m.drop2.p == 0.5
    assert m.cls_score.weight.shape == (21, 1024) and m.bbox_pred.weight.shape == (84, 1024)
    assert m.rpn.post_nms_top_n == 300 and m.rpn.strides == (4, 8, 16, 32)


def test_anchors_grow_with_the_level_at_each_levels_stride(small_model):
    sizes = default_anchor_sizes()
    assert [round(s[0]) for s in sizes] == [32, 64, 128, 256]
    assert all(np.isclose(lv[2] / lv[0], 2 ** (2 / 3)) for lv in sizes)
    anchors = small_model.rpn.anchors([(16, 16), (8, 8), (4, 4), (2, 2)])
    for k, (a, stride) in enumerate(zip(anchors, (4, 8, 16, 32))):
        a = a.numpy()
        side = 64 // stride
        assert a.shape == (side * side * 9, 4)
        centres = (a[:, :2] + a[:, 2:]) / 2
        assert np.allclose(centres[9], [stride, 0], atol=0.5)  # location (0, 1): one stride right
        areas = (a[:9, 2] - a[:9, 0]) * (a[:9, 3] - a[:9, 1])
        assert np.allclose(np.sqrt(areas[:3]), sizes[k], rtol=0.05)  # ratio 0.5: the three sizes


def _decode(d, a, clip=np.log(1000.0 / 16)):
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    cx, cy = a[:, 0] + 0.5 * w, a[:, 1] + 0.5 * h
    px, py = d[:, 0] * w + cx, d[:, 1] * h + cy
    pw, ph = np.exp(np.minimum(d[:, 2], clip)) * w, np.exp(np.minimum(d[:, 3], clip)) * h
    return np.stack([px - pw / 2, py - ph / 2, px + pw / 2, py + ph / 2], axis=1)


def _greedy_nms(boxes, threshold):
    """Indices kept by greedy NMS of boxes already in descending score order."""
    keep = []
    for i in range(len(boxes)):
        if all(box_iou(boxes[i:i + 1], boxes[j:j + 1]).numpy()[0, 0] <= threshold for j in keep):
            keep.append(i)
    return keep


def test_proposals_follow_torchvisions_filter_proposals():
    """An independent numpy version of torchvision's RPN.filter_proposals (top-k per level,
    decode, clip, remove small boxes, NMS per level, best R) gives the valid proposals."""
    from lucid.models.detection.rpn import RegionProposalNetwork

    rng = np.random.default_rng(10)
    size, pre, post, min_size = 64, 12, 30, 6.0
    rpn = RegionProposalNetwork(8, pre_nms_top_n=pre, post_nms_top_n=post, min_size=min_size)
    anchors = [a.numpy() for a in rpn.anchors([(16, 16), (8, 8), (4, 4), (2, 2)])]
    counts = [len(a) for a in anchors]
    obj = rng.standard_normal((2, sum(counts))).astype(np.float32)
    deltas = rng.normal(0, 0.5, (2, sum(counts), 4)).astype(np.float32)
    deltas[:, ::5, 2] = -3.0  # some narrow boxes, below min_size
    props, valid = rpn.propose(lucid.tensor(obj), lucid.tensor(deltas), [lucid.tensor(a) for a in anchors],
                               counts, (size, size))
    props, valid = props.numpy(), valid.numpy()
    for i in range(2):
        found = []  # (score, box) over levels
        start = 0
        for a, n in zip(anchors, counts):
            o, d = obj[i, start:start + n], deltas[i, start:start + n]
            start += n
            top = np.argsort(-o, kind="stable")[:pre]
            b = np.clip(_decode(d[top].astype(np.float64), a[top].astype(np.float64)), 0, size)
            big = ((b[:, 2] - b[:, 0]) >= min_size) & ((b[:, 3] - b[:, 1]) >= min_size)
            b, sc = b[big].astype(np.float32), o[top][big]
            found += [(sc[k], b[k]) for k in _greedy_nms(b, 0.7)]
        found.sort(key=lambda t: -t[0])
        want = np.array([b for _, b in found[:post]]).reshape(-1, 4)
        assert valid[i].sum() == len(want) and valid[i, :len(want)].all()
        np.testing.assert_allclose(props[i, :len(want)], want, atol=1e-3)
        assert (props[i, len(want):] == 0).all()


# ---- the seed's examples, as written --------------------------------------------------------

def test_seed_basic_usage_as_written(capsys):
    from lucid.models import faster_rcnn_resnet_50_fpn

    # Create the model with 21 object classes (VOC-style)
    model = faster_rcnn_resnet_50_fpn(num_classes=21)

    # Input tensor: 1 image with 3 channels and 224x224 spatial dimensions
    x = lucid.random.randn(1, 3, 224, 224)

    # Forward pass
    cls_logits, bbox_deltas = model(x)

    print(cls_logits.shape)   # (N, R, C), e.g., (1, 300, 21)
    print(bbox_deltas.shape)  # (N, R, 4),   e.g., (1, 300, 4)

    assert capsys.readouterr().out == "(1, 300, 21)\n(1, 300, 4)\n"
    assert np.all(np.isfinite(cls_logits.numpy())) and np.all(np.isfinite(bbox_deltas.numpy()))


def test_seed_training_notes_as_written():
    from lucid.models import faster_rcnn_resnet_50_fpn

    detector = faster_rcnn_resnet_50_fpn(num_classes=21)
    backbone_net = detector.backbone.net  # This is a ResNet-50 model
    assert isinstance(backbone_net, ResNet)

    state_dict = backbone_net.state_dict()
    # Save using your own serialization logic

    detector.backbone.net.load_state_dict(state_dict)
    # Now proceed to train the FasterRCNN model on your object detection dataset
    assert np.array_equal(detector.backbone.stem[0].weight.numpy(), state_dict["stem.0.weight"])


# ---- outputs --------------------------------------------------------------------------------

def test_outputs_have_static_shapes_and_valid_masks(small_model):
    m = small_model.eval()
    try:
        out = m(images(2, 64, seed=2), return_all=True)
    finally:
        m.train()
    assert set(out) == {"cls_logits", "bbox_deltas", "class_deltas", "proposals", "valid"}
    cls_logits, bbox_deltas = out["cls_logits"], out["bbox_deltas"]
    assert cls_logits.shape == (2, 16, 5) and bbox_deltas.shape == (2, 16, 4)
    assert out["class_deltas"].shape == (2, 16, 5, 4) and out["proposals"].shape == (2, 16, 4)
    assert out["valid"].shape == (2, 16) and out["valid"].dtype == lucid.bool_
    valid, props = out["valid"].numpy(), out["proposals"].numpy()
    assert valid.all()  # plenty of candidates on a 64x64 image
    assert (props >= 0).all() and (props <= 64).all()
    assert (props[..., 2:] >= props[..., :2]).all()
    # bbox_deltas are the class_deltas of the best foreground class.
    best = cls_logits.numpy()[..., 1:].argmax(-1) + 1
    picked = np.take_along_axis(out["class_deltas"].numpy(), best[..., None, None], axis=2)[:, :, 0]
    np.testing.assert_array_equal(bbox_deltas.numpy(), picked)
    # Proposals of one level survive NMS at 0.7 with each other; none is repeated.
    for i in range(2):
        iou = box_iou(props[i], props[i]).numpy()
        assert (iou[np.triu_indices(16, 1)] < 1.0).all()


def test_fewer_survivors_than_R_are_padded_and_masked(small_model):
    rpn = small_model.rpn
    saved = rpn.pre_nms_top_n
    rpn.pre_nms_top_n = 2  # at most 4 levels x 2 candidates for R = 16 slots
    try:
        out = small_model.eval()(images(1, 32, seed=3), return_all=True)
    finally:
        rpn.pre_nms_top_n = saved
        small_model.train()
    valid = out["valid"].numpy()[0]
    assert 1 <= valid.sum() <= 8 and valid[:valid.sum()].all() and not valid[valid.sum():].any()
    pad = ~valid
    assert (out["proposals"].numpy()[0][pad] == 0).all()
    assert (out["cls_logits"].numpy()[0][pad] == 0).all() and (out["bbox_deltas"].numpy()[0][pad] == 0).all()
    assert (out["class_deltas"].numpy()[0][pad] == 0).all()
    assert np.abs(out["cls_logits"].numpy()[0][valid]).max() > 0


def test_predict_on_random_weights(small_model):
    assert small_model.training
    small_model.backbone.net.stem[1].eval()  # a frozen batch norm inside a training model
    x = images(2, 64, seed=4)
    try:
        dets = small_model.predict(x, score_threshold=0.0, nms_threshold=0.5, detections_per_image=10)
        assert small_model.training and small_model.drop1.training  # every mode is restored
        assert not small_model.backbone.net.stem[1].training
    finally:
        small_model.train()
    assert isinstance(dets, list) and len(dets) == 2
    for d in dets:
        assert set(d) == {"boxes", "scores", "labels"}
        boxes, scores, labels = d["boxes"].numpy(), d["scores"].numpy(), d["labels"].numpy()
        k = len(scores)
        assert 1 <= k <= 10 and boxes.shape == (k, 4) and labels.shape == (k,)
        assert boxes.dtype == np.float32 and labels.dtype == np.int64
        assert ((labels >= 1) & (labels <= 4)).all()
        assert (np.diff(scores) <= 0).all() and ((scores > 0) & (scores < 1)).all()
        assert (boxes >= 0).all() and (boxes <= 64).all()
        for c in np.unique(labels):  # NMS per class at 0.5
            b = boxes[labels == c]
            iou = box_iou(b, b).numpy()
            assert (iou[np.triu_indices(len(b), 1)] <= 0.5 + 1e-6).all()
    # The default threshold (0.05) may keep nothing on an untrained model, but never fails.
    dets = small_model.predict(images(1, 32, seed=5))
    assert len(dets) == 1 and dets[0]["boxes"].shape[1:] == (4,)


# ---- training -------------------------------------------------------------------------------

TARGETS = [{"boxes": np.array([[4, 4, 30, 40], [20, 10, 60, 50]], np.float32), "labels": np.array([1, 3])},
           {"boxes": lucid.zeros((0, 4)), "labels": []}]  # as the docs write an image without objects


def test_get_loss_gives_finite_gradients_to_every_used_parameter(small_model):
    lucid.random.seed(6)
    small_model.zero_grad()
    losses = small_model.get_loss(images(2, 64, seed=6), TARGETS)
    assert set(losses) == {"rpn_cls_loss", "rpn_reg_loss", "roi_cls_loss", "roi_reg_loss", "total_loss"}
    values = {k: v.item() for k, v in losses.items()}
    assert all(np.isfinite(v) for v in values.values()) and values["rpn_reg_loss"] > 0
    assert np.isclose(values["total_loss"], sum(v for k, v in values.items() if k != "total_loss"), rtol=1e-5)
    losses["total_loss"].backward()
    unused = set()
    for name, p in small_model.named_parameters():
        if p.grad is None:
            unused.add(name)
            continue
        assert p.grad.shape == p.shape and np.all(np.isfinite(p.grad.numpy())), name
    # Only the backbone's classifier is outside detection.
    assert unused == {"backbone.net.fc.weight", "backbone.net.fc.bias"}
    for name in ("backbone.net.stem.0.weight", "backbone.fpn.lateral.0.weight", "rpn.head.cls_logits.weight",
                 "rpn.head.bbox_pred.weight", "fc1.weight", "cls_score.weight", "bbox_pred.weight"):
        assert np.abs(small_model.get_submodule(name.rsplit(".", 1)[0]).weight.grad.numpy()).max() > 0, name
    small_model.zero_grad()


def test_get_loss_refuses_bad_targets(small_model):
    x = images(1, 32, seed=7)
    with pytest.raises(lucid.LucidError, match=r"faster_rcnn_resnet_50_fpn\.get_loss.*targets\[0\]"):
        small_model.get_loss(x, [{"boxes": [[1, 1, 9, 9]], "labels": [5]}])  # labels are 1..4
    with pytest.raises(lucid.LucidError, match="get_loss"):
        small_model.get_loss(x, [{"boxes": [[1, 1, 9, 9]]}])
    with pytest.raises(lucid.LucidError, match="get_loss"):
        small_model.get_loss(x, [])


def test_training_notes_end_to_end(tmp_path, small_model):
    """Pretrain backbone.net as a classifier, save its state dict, load it into a fresh
    detector's backbone.net, train the detector with a lower backbone learning rate; a
    classifier of the wrong size is refused with an error that says so."""
    lucid.random.seed(8)
    detector = small_model
    backbone_net = detector.backbone.net
    opt = lucid.optim.SGD(backbone_net.parameters(), lr=0.01, momentum=0.9)
    x, y = images(2, 32, seed=8), lucid.tensor(np.array([3, 7]))
    before = backbone_net.fc.weight.numpy().copy()
    for _ in range(2):
        loss = F.cross_entropy(backbone_net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert np.isfinite(loss.item()) and not np.array_equal(before, backbone_net.fc.weight.numpy())
    lucid.save(backbone_net.state_dict(), tmp_path / "backbone.lucid")

    fresh = faster_rcnn_resnet_50_fpn(**SMALL)
    fresh.backbone.net.load_state_dict(lucid.load(tmp_path / "backbone.lucid"))
    for (name, a), b in zip(backbone_net.state_dict().items(), fresh.backbone.net.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert fresh.backbone.stem is fresh.backbone.net.stem  # the shared stem got the weights too
    np.testing.assert_array_equal(fresh.backbone.stem[0].weight.numpy(), backbone_net.stem[0].weight.numpy())

    # Parameter groups: the backbone at a tenth of the heads' learning rate.
    backbone = list(fresh.backbone.net.parameters())
    ids = {id(p) for p in backbone}
    heads = [p for p in fresh.parameters() if id(p) not in ids]
    assert len(backbone) + len(heads) == len(list(fresh.parameters()))
    opt = lucid.optim.SGD([{"params": backbone, "lr": 0.001}, {"params": heads, "lr": 0.01}])
    w_back, w_head = fresh.backbone.net.layer4[0].conv1.weight, fresh.fc1.weight
    old_back, old_head = w_back.numpy().copy(), w_head.numpy().copy()
    losses = fresh.get_loss(images(2, 32, seed=9), [{"boxes": [[2, 3, 20, 28]], "labels": [2]},
                                                     {"boxes": [[0, 8, 30, 16]], "labels": [4]}])
    opt.zero_grad()
    losses["total_loss"].backward()
    g_back, g_head = w_back.grad.numpy().copy(), w_head.grad.numpy().copy()
    opt.step()
    np.testing.assert_allclose(w_back.numpy(), old_back - 0.001 * g_back, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(w_head.numpy(), old_head - 0.01 * g_head, rtol=1e-5, atol=1e-8)

    # A classifier pretrained for 1000 classes does not fit backbone_num_classes=10.
    wrong = backbone_net.state_dict()
    wrong["fc.weight"], wrong["fc.bias"] = np.zeros((1000, 2048), np.float32), np.zeros(1000, np.float32)
    wrong["stem.0.weight"] = wrong["stem.0.weight"] + 1.0  # other values, to see whether anything loads
    stem_before = fresh.backbone.stem[0].weight.numpy().copy()
    with pytest.raises(lucid.ShapeError, match=r"fc\b") as err:
        fresh.backbone.net.load_state_dict(wrong)
    assert re.search(r"\b1000\b", str(err.value)) and re.search(r"\b10\b", str(err.value))  # both sizes
    np.testing.assert_array_equal(fresh.backbone.stem[0].weight.numpy(), stem_before)  # nothing loaded
    # ... and with the classifier dropped, the rest loads.
    fresh.backbone.net.load_state_dict({k: v for k, v in wrong.items() if not k.startswith("fc.")}, strict=False)
    np.testing.assert_array_equal(fresh.backbone.stem[0].weight.numpy(), wrong["stem.0.weight"])


def test_detector_state_dict_round_trip_keeps_the_stem_shared(small_model):
    other = create_model("faster_rcnn_resnet_50_fpn", **SMALL)
    other.load_state_dict(small_model.state_dict())
    assert other.backbone.stem is other.backbone.net.stem
    for (name, a), b in zip(small_model.state_dict().items(), other.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)


# ---- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, message", [
    ((3, 64, 64), r"x must be a 4D batch of images \(N, 3, H, W\), got shape \(3, 64, 64\)"),
    ((1, 1, 64, 64), r"x must have 3 channels on axis 1"),
    ((1, 3, 100, 96), r"x height and width must be positive multiples of 32.*\(1, 3, 100, 96\)"),
])
def test_bad_inputs_are_refused_with_the_models_name(small_model, shape, message):
    x = lucid.zeros(shape)
    with pytest.raises(lucid.ShapeError, match="faster_rcnn_resnet_50_fpn: " + message):
        small_model(x)
    with pytest.raises(lucid.ShapeError, match="faster_rcnn_resnet_50_fpn: "):
        small_model.predict(x)
    with pytest.raises(lucid.ShapeError, match="faster_rcnn_resnet_50_fpn: images "):
        small_model.get_loss(x, [])


def test_bad_arguments_are_refused():
    with pytest.raises(lucid.LucidError, match="num_classes must be an int >= 2"):
        faster_rcnn_resnet_50_fpn(num_classes=1)
    with pytest.raises(lucid.LucidError, match="backbone_num_classes must be a positive int"):
        faster_rcnn_resnet_50_fpn(backbone_num_classes=0)
    with pytest.raises(lucid.LucidError, match="unknown keyword argument"):
        faster_rcnn_resnet_50_fpn(anchor_size=(32,))


# ---- docs -----------------------------------------------------------------------------------

def test_docs_page_is_generated_from_the_code(default_model):
    doc = Path(__file__).resolve().parents[2] / "docs" / "models" / "faster_rcnn_resnet_50_fpn.md"
    text = doc.read_text()
    assert text == D.docs_markdown(D.parameter_counts(default_model)), f"regenerate: {D.REGENERATE}"
    for figure in ("43,506,366", "43,515,902", "9,536", "41,349,741 + 2,049 * backbone_num_classes + 5,125"):
        assert figure in text
