"""Matting on large photos: time and peak memory of each method on an 8-megapixel and an 8k photo.

Run ``python benchmarks/matting_large.py`` (about 10 minutes on a 2-core CPU; ``--cases`` to pick).

Each case runs in its own worker process. The photo is synthetic (smooth colours with texture and
a large object whose edge is a wobbly blob, with SAM-like logits on a 256 grid); its content does
not change the cost, its size does. "peak +MiB" is how far the worker's peak resident memory
(``VmHWM``, reset through ``/proc/self/clear_refs`` just before the call) rose above its resident
memory at that moment: the method's own peak, inputs excluded. ViTMatte runs with random weights of
the published ViTMatte-S size (25.8 M parameters; the real weights cannot be downloaded here), in
its default 512 px tiles.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "guided 8 MP": ("guided", 2448, 3264),
    "closed_form 8 MP": ("closed_form", 2448, 3264),
    "vitmatte-S 8 MP": ("vitmatte", 2448, 3264),
    "guided 8k": ("guided", 4320, 7680),
    "closed_form 8k": ("closed_form", 4320, 7680),
}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) // 1024
    return 0


def worker(method: str, height: int, width: int, threads: int) -> dict:
    import numpy as np
    import torch

    from grounded_inpaint.matting import refine
    from grounded_inpaint.structures import Segments

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 24, 32, generator=g), size=(height, width), mode="bilinear")[0]
    image = (base.permute(1, 2, 0) * 0.8 + 0.2 * torch.rand(height, width, 3, generator=g)).clamp(0, 1)
    yy, xx = np.mgrid[0:256, 0:256]
    angle = np.arctan2(yy - 128, xx - 128)
    radius = 80 * (1 + 0.12 * np.sin(5 * angle))
    grid = np.clip((radius - np.hypot(yy - 128, xx - 128)) / 1.5, -12, 12).astype(np.float32)
    logits = torch.from_numpy(grid)
    mask = torch.nn.functional.interpolate(logits[None, None], size=(height, width), mode="bilinear")[0, 0] > 0
    segments = Segments(mask[None], torch.tensor([[0.0, 0, width, height]]), torch.ones(1), torch.ones(1), ["object"],
                        logits=logits[None])
    model = None
    if method == "vitmatte":
        import tempfile

        from grounded_inpaint.matting.vitmatte import VitMatte
        from grounded_inpaint.testing.tiny_vitmatte import write_real_size_vitmatte

        model = VitMatte.from_pretrained(write_real_size_vitmatte(Path(tempfile.mkdtemp()) / "vitmatte-s"))
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS")
    start, cpu = time.perf_counter(), time.process_time()
    result = refine(image, segments, method=method, model=model)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    peak = _status("VmHWM")
    band = int(((result.trimap > 0) & (result.trimap < 1)).sum())
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mib": peak - before, "band_pixels": band, "megapixels": height * width / 1e6,
            "finite": bool(torch.isfinite(result.alpha).all() and torch.isfinite(result.foreground).all())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "H", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        method, h, w = args.worker
        print(json.dumps(worker(method, int(h), int(w), args.threads)))
        return 0
    import os

    print(f"matting on large photos: {os.cpu_count()} CPU(s), {args.threads} torch threads, load average {os.getloadavg()[0]:.1f}")
    print("seconds: wall clock; CPU: the worker's CPU seconds (all threads; on a shared machine the wall clock also "
          "counts waiting for a CPU)")
    print(f"{'case':<20} {'size':>11} {'band px':>9} {'seconds':>8} {'CPU s':>7} {'s/MP':>6} {'peak +MiB':>10}")
    for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
        method, h, w = CASES[name]
        done = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--worker", method, str(h), str(w)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name:<20} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name:<20} {w:>5}x{h:<5} {r['band_pixels']:>9} {r['seconds']:8.1f} {r['cpu_seconds']:7.1f} "
              f"{r['seconds'] / r['megapixels']:6.2f} "
              f"{r['peak_mib']:10.0f}{'' if r['finite'] else '  (non-finite output!)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
