"""Where a Grounded Track frame's time goes: SAM 2.1's parts, timed at real size.

    python benchmarks/track_profile.py                  # 1, 2 and 4 objects, 4 tracked frames each
    python benchmarks/track_profile.py --objects 2 --frames 6

Real-size SAM 2.1 Hiera-T with random weights (:mod:`grounded_inpaint.testing.real_size`) at 1024 px,
streamed through :class:`grounded_inpaint.video.sam2_video.Sam2VideoStream` like Grounded Track
does: every object is prompted with a box on frame 0, then tracked. Forward hooks time the image
encoder, the memory attention, the memory encoder, the prompt encoder and the mask decoder (each
call, summed per frame); "other" is the rest of the step (memory gathering, RoPE tables, resizing
the masks to the frame). Also times the memory attention's attention kernel alone against the
score matrix written out (what an eager implementation would do) on the shapes of one frame.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

PARTS = {
    "image encoder": "vision_encoder",
    "memory attention": "memory_attention",
    "memory encoder": "memory_encoder",
    "prompt encoder": "prompt_encoder",
    "mask decoder": "mask_decoder",
}


class PartTimer:
    """Wall time spent inside given sub-modules (outermost calls only)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._start: dict[str, float] = {}
        self._handles = []
        for name, attr in PARTS.items():
            module = getattr(model, attr)
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name)))

    def _pre(self, name):
        def hook(_module, _args):
            self._start[name] = time.perf_counter()
        return hook

    def _post(self, name):
        def hook(_module, _args, _out):
            self.totals[name] += time.perf_counter() - self._start.pop(name)
            self.calls[name] += 1
        return hook

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()


def boxes(count: int, side: int) -> list[torch.Tensor]:
    cell = side // 4
    return [torch.tensor([float((i % 4) * cell + 8), float((i // 4) * cell + 8), float((i % 4 + 1) * cell - 8),
                          float((i // 4 + 1) * cell - 8)]) for i in range(count)]


def profile(engine, objects: int, frames: int, side: int) -> dict:
    timer = PartTimer(engine.model)
    stream = engine.start((side, side))
    torch.manual_seed(0)
    frame = torch.rand(side, side, 3)
    rows = []
    for t in range(frames + 1):
        prompts = {i + 1: b for i, b in enumerate(boxes(objects, side))} if t == 0 else {}
        timer.reset()
        start = time.perf_counter()
        stream.step(frame, prompts)
        total = time.perf_counter() - start
        row = {name: timer.totals.get(name, 0.0) for name in PARTS}
        row["other"] = total - sum(row.values())
        row["total"] = total
        row["calls"] = dict(timer.calls)
        rows.append(row)
        print(f"  {objects} object(s), frame {t}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items() if k != "calls")
              + f" s; calls {row['calls']}", flush=True)
    tracked = rows[1:]
    return {name: statistics.median(r[name] for r in tracked) for name in (*PARTS, "other", "total")}


def attention_kernel(engine, memory_frames: int) -> None:
    """One cross-attention of the memory attention on one object's shapes: sdpa vs. the scores written out."""
    import torch.nn.functional as F

    config = engine.model.config
    tokens = (engine.image_size // 16) ** 2
    dim = config.memory_attention_hidden_size // config.memory_attention_downsample_rate
    keys = memory_frames * tokens + 4 * config.max_object_pointers_in_encoder
    torch.manual_seed(0)
    q = torch.randn(1, 1, tokens, dim)
    k = torch.randn(1, 1, keys, dim)
    v = torch.randn(1, 1, keys, dim)
    for name, fn in (("sdpa", lambda: F.scaled_dot_product_attention(q, k, v)),
                     ("scores written out", lambda: torch.softmax(q @ k.transpose(-1, -2) * dim**-0.5, -1) @ v)):
        fn()
        start = time.perf_counter()
        fn()
        print(f"  cross-attention {tokens} x {keys} keys x {dim}: {name} {time.perf_counter() - start:.2f} s", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path(os.environ.get("GI_BENCH_MODELS", "/tmp/gi-bench-models")))
    parser.add_argument("--objects", default="1,2,4")
    parser.add_argument("--frames", type=int, default=4, help="tracked frames after the prompted one")
    parser.add_argument("--no-kernel", action="store_true", help="skip the attention-kernel comparison")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("GI_BENCH_THREADS", "2")))
    from grounded_inpaint.testing.real_size import REAL_SIZE_NAMES, write_real_size_sam2_video
    from grounded_inpaint.video import load_video_model

    engine = load_video_model(write_real_size_sam2_video(args.models / REAL_SIZE_NAMES["sam2_video"]))
    side = engine.image_size
    print(f"SAM 2.1 Hiera-T (random weights), {side} px, attention {engine.model.config._attn_implementation}, "
          f"{torch.get_num_threads()} threads", flush=True)
    summary = {}
    for n in (int(s) for s in args.objects.split(",")):
        summary[n] = profile(engine, n, args.frames, side)
    print("median per tracked frame (s):")
    print("  objects " + " ".join(f"{k:>17}" for k in (*PARTS, "other", "total")))
    for n, row in summary.items():
        print(f"  {n:7d} " + " ".join(f"{row[k]:17.2f}" for k in (*PARTS, "other", "total")))
    if not args.no_kernel:
        attention_kernel(engine, memory_frames=7)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
