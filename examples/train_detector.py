"""Train faster_rcnn_resnet_50_fpn on generated images of coloured shapes, following the
two stages of the model's Training Notes, with compiled training steps:

1. pretrain `detector.backbone.net` (a resnet_50) as a classifier of single shapes
   (Adam), save its state_dict with lucid.save;
2. load it into a fresh detector's `backbone.net` and train the detector with
   `model.get_loss`, SGD with momentum and two parameter groups (the pretrained
   backbone at a tenth of the learning rate), batch norm statistics frozen (as
   torchvision does for detection batches of a few images);

then report mAP@0.5 of `model.predict` on held-out generated images.

    python examples/train_detector.py            # the default run (64 x 64 images)
    python examples/train_detector.py --image-size 128 --steps 600   # larger, slower
    python examples/train_detector.py --quick    # a short smoke run (the tests use it)

Each training step (forward, loss, backward, optimizer step) is one `lucid.compile`d
graph: native code by default, or `--backend interpreter` (the optimised graph run on
numpy references: no native build, for short runs), or `--backend eager`. Shapes stay
static across steps (every image's targets are padded to --max-objects rows with a
"valid" mask), so each stage builds once. Progress (step, loss, it/s) goes to stderr.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import lucid  # noqa: E402
from lucid import nn  # noqa: E402
from lucid.data import shapes  # noqa: E402
from lucid.models import faster_rcnn_resnet_50_fpn  # noqa: E402
from lucid.models.detection.evaluate import average_precisions  # noqa: E402
from lucid.models.detection.rpn import default_anchor_sizes  # noqa: E402

NUM_CLASSES = len(shapes.KINDS) + 1  # the shapes and the background


class Progress:
    """One self-overwriting status line on stderr: step, loss (a running mean), it/s."""

    def __init__(self, label, total, stream=sys.stderr, every=1):
        self.label, self.total, self.stream, self.every = label, total, stream, every
        self.start = time.perf_counter()
        self.smooth = None

    def update(self, step, loss, extra=""):
        self.smooth = loss if self.smooth is None else 0.9 * self.smooth + 0.1 * loss
        if step % self.every and step != self.total:
            return
        elapsed = time.perf_counter() - self.start
        rate = step / elapsed if elapsed > 0 else 0.0
        width = len(str(self.total))
        self.stream.write(f"\r{self.label} [{step:>{width}}/{self.total}] loss {self.smooth:.4f}{extra}  "
                          f"{rate:.2f} it/s  {elapsed:.0f} s ")
        self.stream.flush()

    def close(self):
        self.stream.write("\n")
        self.stream.flush()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--image-size", type=int, default=64, help="detection image side (a multiple of 32)")
    p.add_argument("--steps", type=int, default=400, help="detection training steps")
    p.add_argument("--batch", type=int, default=2, help="detection images per step")
    p.add_argument("--lr", type=float, default=0.003, help="detection learning rate (heads; backbone: lr/10)")
    p.add_argument("--pretrain-steps", type=int, default=150, help="classifier pretraining steps (0: skip)")
    p.add_argument("--pretrain-size", type=int, default=32, help="classifier image side")
    p.add_argument("--pretrain-batch", type=int, default=16, help="classifier images per step")
    p.add_argument("--pretrain-lr", type=float, default=1e-3, help="classifier learning rate (Adam)")
    p.add_argument("--eval-images", type=int, default=100, help="held-out images for mAP@0.5")
    p.add_argument("--max-objects", type=int, default=3, help="shapes per image: 1..max")
    p.add_argument("--proposals", type=int, default=64, help="R: proposals kept per image")
    p.add_argument("--pre-nms-top-n", type=int, default=256, help="proposals per level before NMS")
    p.add_argument("--rpn-batch", type=int, default=128, help="anchors sampled per image")
    p.add_argument("--roi-batch", type=int, default=64, help="RoIs sampled per image")
    p.add_argument("--hidden-dim", type=int, default=256, help="box head width (the model's default: 1024)")
    p.add_argument("--backend", choices=("native", "interpreter", "eager"), default="native")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=None, help="where stage 1 saves the backbone (default: a temp file)")
    p.add_argument("--load-backbone", default=None, metavar="PATH",
                   help="skip stage 1 and load this saved backbone state_dict (a stage-1 checkpoint)")
    p.add_argument("--quick", action="store_true",
                   help="a short smoke run: 64 x 64 images, a few steps, interpreter backend")
    args = p.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:]) if a.startswith("--")}
        quick = dict(image_size=64, steps=5, batch=1, pretrain_steps=2, pretrain_size=32, pretrain_batch=2,
                     eval_images=2, proposals=16, pre_nms_top_n=32, rpn_batch=64, roi_batch=16, hidden_dim=64,
                     backend="interpreter", lr=0.01)
        for k, v in quick.items():
            if "--" + k.replace("_", "-") not in given:
                setattr(args, k, v)
    if args.image_size % 32:
        p.error(f"--image-size must be a multiple of 32, got {args.image_size}")
    return args


def build_detector(args):
    # Anchors sized for small images: the model's default sizes start at 32 pixels, the
    # shapes here span about 0.15-0.45 of the image side.
    base = max(8.0, args.image_size / 8)
    return faster_rcnn_resnet_50_fpn(
        num_classes=NUM_CLASSES, backbone_num_classes=len(shapes.KINDS),
        anchor_sizes=default_anchor_sizes(base=base), pre_nms_top_n=args.pre_nms_top_n,
        post_nms_top_n=args.proposals, hidden_dim=args.hidden_dim,
        rpn_batch_size_per_image=args.rpn_batch, box_batch_size_per_image=args.roi_batch)


def compiled(step, backend):
    return step if backend == "eager" else lucid.compile(step, backend=backend)


def pretrain_backbone(net, args, log):
    """Stage 1: `net` (the detector's backbone.net) as a shape classifier."""
    opt = lucid.optim.Adam(net.parameters(), lr=args.pretrain_lr)

    def cls_step(x, y):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    step = compiled(cls_step, args.backend)
    net.train()
    losses = []
    bar = Progress("stage 1: classifier", args.pretrain_steps)
    for k in range(1, args.pretrain_steps + 1):
        x, y = shapes.classification_set(args.pretrain_batch, args.pretrain_size, seed=(args.seed, 1, k))
        losses.append(float(step(lucid.tensor(x), lucid.tensor(y)).data))
        bar.update(k, losses[-1])
    bar.close()
    x, y = shapes.classification_set(max(8, min(128, 4 * args.pretrain_batch)), args.pretrain_size,
                                     seed=(args.seed, 2))
    net.eval()
    with lucid.no_grad():
        acc = float(np.mean(np.argmax(net(lucid.tensor(x)).data, axis=1) == y))
    log(f"stage 1: held-out classification accuracy {acc:.3f}")
    return losses, acc


def freeze_batch_norm(model):
    """Batch norm in eval mode (running statistics, no updates) inside a training model."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()


def detection_batch(args, k):
    images, targets = shapes.detection_set(args.batch, args.image_size, seed=(args.seed, 3, k),
                                           objects=(1, args.max_objects), pad_to=args.max_objects)
    stack = lambda key: lucid.tensor(np.stack([t[key] for t in targets]))  # noqa: E731
    return lucid.tensor(images), stack("boxes"), stack("labels"), stack("valid")


def train_detector(model, args, log):
    """Stage 2: the detector, SGD with a lower learning rate on the pretrained backbone."""
    net = model.backbone.net
    unused = {id(p) for p in net.fc.parameters()}  # the classifier: no part of detection
    backbone_ids = {id(p) for p in net.parameters()}
    backbone = [p for p in net.parameters() if id(p) not in unused]
    heads = [p for p in model.parameters() if id(p) not in backbone_ids]
    opt = lucid.optim.SGD([{"params": backbone, "lr": args.lr * 0.1}, {"params": heads}], lr=args.lr,
                          momentum=0.9, weight_decay=1e-4)

    def det_step(images, boxes, labels, valid):
        targets = [{"boxes": boxes[i], "labels": labels[i], "valid": valid[i]} for i in range(images.shape[0])]
        losses = model.get_loss(images, targets)
        opt.zero_grad()
        losses["total_loss"].backward()
        opt.step()
        return losses

    step = compiled(det_step, args.backend)
    model.train()
    freeze_batch_norm(model.backbone)
    history = []
    bar = Progress("stage 2: detector  ", args.steps)
    for k in range(1, args.steps + 1):
        out = step(*detection_batch(args, k))
        history.append({name: float(v.data) for name, v in out.items()})
        h = history[-1]
        bar.update(k, h["total_loss"], f" (rpn {h['rpn_cls_loss']:.3f}+{h['rpn_reg_loss']:.3f}, "
                                       f"roi {h['roi_cls_loss']:.3f}+{h['roi_reg_loss']:.3f})")
    bar.close()
    if hasattr(step, "builds"):
        log(f"stage 2: {len(step.builds)} build(s); " + "; ".join(
            ", ".join(f"{k} {v:.1f} s" for k, v in b.phases.items()) for b in step.builds))
    return history


def evaluate(model, args, batch=4):
    images, targets = shapes.detection_set(args.eval_images, args.image_size, seed=(args.seed, 4),
                                           objects=(1, args.max_objects))
    preds = []
    for i in range(0, len(images), batch):
        preds.extend(model.predict(lucid.tensor(images[i:i + batch])))
    aps = average_precisions(preds, targets, iou_threshold=0.5)
    return float(np.mean(list(aps.values()))), aps


def main(argv=None, log=None):
    """Run both stages and the evaluation; returns a summary dict (losses, mAP, times)."""
    args = parse_args(argv)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    lucid.random.seed(args.seed)
    t0 = time.perf_counter()
    log(f"faster_rcnn_resnet_50_fpn on {args.image_size}x{args.image_size} shapes, backend {args.backend}")

    # Stage 1: the backbone as a classifier, saved with lucid.save.
    detector = build_detector(args)
    stage1, acc = [], None
    checkpoint = args.checkpoint or os.path.join(tempfile.mkdtemp(prefix="lucid-shapes-"), "backbone.lucid")
    if args.load_backbone:
        checkpoint = args.load_backbone
        log(f"stage 1: skipped, the backbone comes from {checkpoint}")
    elif args.pretrain_steps > 0:
        stage1, acc = pretrain_backbone(detector.backbone.net, args, log)
        lucid.save(detector.backbone.net.state_dict(), checkpoint)
        log(f"stage 1: backbone state_dict saved to {checkpoint}")
    t1 = time.perf_counter()

    # Stage 2: a fresh detector, the pretrained backbone loaded into backbone.net.
    model = build_detector(args)
    if args.load_backbone or args.pretrain_steps > 0:
        model.backbone.net.load_state_dict(lucid.load(checkpoint))
    history = train_detector(model, args, log)
    t2 = time.perf_counter()

    mean_ap, aps = evaluate(model, args)
    t3 = time.perf_counter()
    per_class = ", ".join(f"{shapes.KINDS[c - 1]} {ap:.3f}" for c, ap in sorted(aps.items()))
    log(f"mAP@0.5 on {args.eval_images} held-out images: {mean_ap:.3f} ({per_class})")
    log(f"time: stage 1 {t1 - t0:.0f} s, stage 2 {t2 - t1:.0f} s, evaluation {t3 - t2:.0f} s, "
        f"total {t3 - t0:.0f} s")
    return {"stage1_losses": stage1, "stage1_accuracy": acc, "history": history,
            "losses": [h["total_loss"] for h in history], "map": mean_ap, "ap": aps,
            "seconds": {"stage1": t1 - t0, "stage2": t2 - t1, "evaluation": t3 - t2, "total": t3 - t0}}


if __name__ == "__main__":
    main()
