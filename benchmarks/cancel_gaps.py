"""How long Cancel can take inside a model pass: the longest stretch of compute between two interrupt checks.

Runs the whole pipeline — GroundingDINO Swin-T, then SAM ViT-B (Meta's layout, or ``--sam hf``) —
on a photo-sized image (default 3000x2000, as a user's camera gives) with real-size random-weight
models, with an ``interrupt`` callable that records the time of every call and never stops. The
largest gap between consecutive calls is the worst-case time from a Cancel press to the pass
stopping (plus the check itself), measured on this machine; the script prints the largest gaps and
the modules that were running when they ended.

With ``--sam3`` it also runs SAM 3 at real size (transformers' default ``Sam3Config``, 840 M
parameters, random weights, built in memory; needs transformers 5) on the same image.

Usage: ``python benchmarks/cancel_gaps.py [--size 3000x2000] [--boxes 4] [--sam meta|hf] [--sam3]``
(models are built once under ``--workdir``; see :mod:`grounded_inpaint.testing.real_size`).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

DEFAULT_WORKDIR = Path(os.environ.get("GROUNDED_INPAINT_BENCH_DIR", "/tmp/grounded-inpaint-bench"))


class GapRecorder:
    """An interrupt check that records when it was called and which module was about to run."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.where: list[str] = []
        self.names: dict[int, str] = {}

    def watch(self, *models) -> None:
        for model in models:
            for name, module in model.named_modules():
                self.names.setdefault(id(module), f"{type(model).__name__}.{name or '<root>'}")

    def __call__(self) -> None:
        import inspect

        self.times.append(time.perf_counter())
        frame = inspect.currentframe()
        label = "?"
        caller = frame.f_back if frame is not None else None
        while caller is not None:  # the hook's frame holds the module it runs for
            module = caller.f_locals.get("_module")
            if module is not None:
                label = self.names.get(id(module), type(module).__name__)
                break
            if caller.f_code.co_name in ("checkpoint",):
                outer = caller.f_back
                label = f"checkpoint in {outer.f_code.co_name}" if outer is not None else "checkpoint"
                break
            caller = caller.f_back
        self.where.append(label)

    def report(self, title: str, top: int = 5) -> float:
        gaps = [(b - a, self.where[i + 1], self.where[i]) for i, (a, b) in enumerate(zip(self.times, self.times[1:]))]
        gaps.sort(reverse=True)
        total = self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0
        print(f"{title}: {len(self.times)} checks over {total:.1f} s; longest gaps:")
        for gap, end, start in gaps[:top]:
            print(f"  {gap:6.3f} s  from {start}  to {end}")
        return gaps[0][0] if gaps else 0.0


def _sam3_gaps(image) -> float:
    """The longest gap in a real-size SAM 3 text → masks run on ``image`` (two concepts)."""
    import tempfile

    import torch
    from transformers import CLIPTokenizer, Sam3Config, Sam3Model

    from grounded_inpaint.sam3 import Sam3Segmenter
    from grounded_inpaint.testing.tiny_diffusers import write_tiny_clip_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Sam3Model(Sam3Config()).eval()
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = CLIPTokenizer.from_pretrained(str(write_tiny_clip_tokenizer(folder)))
    segmenter = Sam3Segmenter(model, tokenizer, image_size=int(model.config.vision_config.image_size))
    rec = GapRecorder()
    rec.watch(model)
    segmenter.segment(image, "shoes, bag", interrupt=rec)
    return rec.report("SAM 3 (840 M), 1008 px, 2 concepts")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="3000x2000", help="image WIDTHxHEIGHT (default 3000x2000)")
    parser.add_argument("--boxes", type=int, default=4, help="boxes SAM decodes (default 4)")
    parser.add_argument("--sam", choices=["meta", "hf"], default="meta", help="SAM layout (default meta)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--sam3", action="store_true", help="also SAM 3 at real size (random weights, transformers 5)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where the random-weight models are kept")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from grounded_inpaint.models import load_detector, load_segmenter
    from grounded_inpaint.segment import segment_image
    from grounded_inpaint.structures import Detections
    from grounded_inpaint.testing.real_size import write_real_size_models

    width, height = (int(v) for v in args.size.lower().split("x"))
    paths = write_real_size_models(args.workdir, hf_sam=args.sam == "hf")
    detector = load_detector(paths["dino"], download=False, cache=False)
    predictor = load_segmenter(paths["sam_hf" if args.sam == "hf" else "sam_meta"], download=False, cache=False)
    detector.feature_cache = predictor.feature_cache = None  # every run computes everything
    image = torch.rand(height, width, 3, generator=torch.Generator().manual_seed(0))
    w, h = width, height
    boxes = torch.tensor([[0.1 * w, 0.1 * h, 0.5 * w, 0.6 * h], [0.4 * w, 0.2 * h, 0.9 * w, 0.9 * h],
                          [0.0, 0.0, w, h], [0.3 * w, 0.3 * h, 0.6 * w, 0.5 * h]][: args.boxes])
    print(f"image {width}x{height}, torch threads {args.threads}, SAM {args.sam}, {len(boxes)} boxes")

    worst = {}
    rec = GapRecorder()
    rec.watch(detector.model)
    detector.detect(image, "shoes . dress . bag .", interrupt=rec)
    worst["GroundingDINO Swin-T"] = rec.report("GroundingDINO Swin-T, 800x1200 input")

    rec = GapRecorder()
    rec.watch(predictor.model)
    dets = Detections(boxes, torch.ones(len(boxes)), ["x"] * len(boxes), (height, width))
    segment_image(predictor, image, dets, interrupt=rec)
    worst[f"SAM ViT-B ({args.sam})"] = rec.report(f"SAM ViT-B ({args.sam}): encoder 1024 px + {len(boxes)} boxes + masks at {width}x{height}")

    if args.sam3:
        worst["SAM 3"] = _sam3_gaps(image)

    print("worst gap per model: " + ", ".join(f"{k} {v:.3f} s" for k, v in worst.items()))
    print(f"worst gap overall: {max(worst.values()):.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
