"""Throughput of the batch command: the embedded engine against Ray with 1 and 2 actors, at equal total threads.

Runs ``python -m grounded_inpaint batch`` on the same images with random-weight models at real size
(GroundingDINO Swin-T, SAM ViT-B; :mod:`grounded_inpaint.testing.real_size`), each case in its own
process tree, the cases alternating round by round:

* ``embedded``: this engine, ``--threads T``;
* ``ray1``: a local Ray, 1 actor with T threads (same threads as embedded: the overhead of Ray);
* ``ray2``: a local Ray, 2 actors with T/2 threads each (same total threads: more images at once);
* ``tiny`` (``--tiny``): the embedded engine with the tiny test models on the same images: what
  an image costs besides the models (decode, hash, pre/post-processing, drawing, PNG writing).

For each case it reports images per second and wall time per image (Ray start, actor start and
model loading included, as a user sees it), the median time per image inside the workers (the
``seconds`` column of the run manifest: read, detect, segment, write), the fixed cost (wall time
minus the images' time divided by the actors) and the peak RSS of the whole process tree. The
overhead ratio is ray1's wall time per image over embedded's. Each case starts from an empty
output folder, so every image is really processed.

    python benchmarks/batch_bench.py                 # 24 images of 1024x768, 1 round, T = 2
    python benchmarks/batch_bench.py --images 8 --cases embedded,ray1 --tiny
    python benchmarks/batch_bench.py --small-input --rounds 3 --cases embedded,ray1   # overhead with short passes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = Path(os.environ.get("GROUNDED_INPAINT_BENCH_DIR", "/tmp/grounded-inpaint-bench"))
CASES = ("embedded", "ray1", "ray2")


def make_images(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """``n`` distinct photos (crops of the bundled CC0 photos, each scaled to ``size`` and shifted in colour)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sources = [Image.open(ROOT / "assets" / name).convert("RGB") for name in ("coffee.png", "chelsea.png")]
    rng = np.random.default_rng(0)
    paths = []
    width, height = size
    for i in range(n):
        src = sources[i % len(sources)]
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.uniform(0, w - cw)), int(rng.uniform(0, h - ch))
        picture = np.asarray(src.crop((x, y, x + cw, y + ch)).resize((width, height), Image.BICUBIC)).astype(np.int16)
        picture = np.clip(picture + rng.integers(-12, 13, size=3), 0, 255).astype(np.uint8)
        path = folder / f"photo{i:03d}.png"
        Image.fromarray(picture).save(path)
        paths.append(path)
    return paths


def _tree_rss_mb(root_pid: int) -> float:
    """Resident memory of ``root_pid`` and all its descendants (Ray's raylet, workers and actors), in MiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/statm") as fh:
                pages = int(fh.read().split()[1])
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total / 2**20


def run_case(case: str, images: Path, out: Path, models: dict[str, str], threads: int, args: argparse.Namespace) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "grounded_inpaint", "-q", "batch", str(images), "--prompt", args.prompt,
               "--out", str(out), "--no-download", "--max-detections", str(args.max_detections), "--box-threshold", "0"]
    actors = 1
    if case == "tiny":
        command += ["--models", models["tiny_root"], "--detector", "grounding-dino-tiny-random",
                    "--segmenter", "sam_vit_tiny_random.pth", "--threads", str(threads)]
    else:
        command += ["--models", models["root"], "--detector", Path(models["dino"]).name,
                    "--segmenter", Path(models["sam_meta"]).name]
        if case == "embedded":
            command += ["--threads", str(threads)]
        else:
            actors = 1 if case == "ray1" else 2
            command += ["--engine", "ray", "--actors", str(actors), "--threads", str(max(1, threads // actors))]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(max(1, threads // actors)))
    peak = [0.0]
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_mb(proc.pid))
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{case} failed ({proc.returncode}):\n{stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "batch-run.jsonl").read_text().splitlines()]
    seconds = [r["seconds"] for r in rows]
    n = len(rows)
    return {
        "case": case, "images": n, "wall": wall, "per_image": wall / n, "images_per_s": n / wall,
        "median_image": statistics.median(seconds), "fixed": wall - sum(seconds) / actors, "peak_mb": peak[0],
        "statuses": {s: sum(r["status"] == s for r in rows) for s in ("done", "nothing_found", "failed")},
        "instances": sum(r["instances"] or 0 for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=24, help="images per case (default 24)")
    parser.add_argument("--size", default="1024x768", help="image size WxH (default 1024x768)")
    parser.add_argument("--threads", type=int, default=2, help="total torch threads of each case (default 2)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of all cases, alternating (default 1)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--tiny", action="store_true", help="also run the tiny models on the same images (cost besides the models)")
    parser.add_argument("--prompt", default="cup")
    parser.add_argument("--max-detections", type=int, default=4, help="boxes per image given to SAM, the best ones at box threshold 0 (default 4)")
    parser.add_argument("--small-input", action="store_true",
                        help="real-size weights at a 64 px model input: quick passes, so Ray's per-image overhead weighs "
                        "more (kept in WORKDIR/small-input)")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR), help="where the random-weight models are kept")
    parser.add_argument("--scratch", default="/tmp/grounded-inpaint-batch-bench", help="images and outputs")
    parser.add_argument("--output", help="also write the report to this file")
    args = parser.parse_args(argv)

    from grounded_inpaint.testing.real_size import write_real_size_models

    workdir = Path(args.workdir) / "small-input" if args.small_input else Path(args.workdir)
    models = {role: str(p) for role, p in write_real_size_models(workdir, hf_sam=False, small_input=args.small_input).items()}
    models["root"] = str(workdir)
    scratch = Path(args.scratch)
    width, height = (int(v) for v in args.size.lower().split("x"))
    images = scratch / "images"
    shutil.rmtree(images, ignore_errors=True)
    make_images(images, args.images, (width, height))
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.tiny:
        from grounded_inpaint.testing.tiny_models import write_models_folder

        write_models_folder(scratch / "tiny-models")
        models["tiny_root"] = str(scratch / "tiny-models")
        cases.append("tiny")

    results: dict[str, list[dict]] = {c: [] for c in cases}
    for round_ in range(args.rounds):
        for case in cases:
            result = run_case(case, images, scratch / f"out-{case}", models, args.threads, args)
            results[case].append(result)
            print(f"round {round_ + 1} {case}: {result['wall']:.1f} s, {result['images_per_s']:.3f} images/s, "
                  f"median image {result['median_image']:.2f} s, peak RSS {result['peak_mb'] / 1024:.2f} GiB", flush=True)

    def med(case: str, key: str) -> float:
        return statistics.median(r[key] for r in results[case])

    lines = [
        f"batch_bench: {args.images} images of {width}x{height}, "
        f"{'real-size weights at a 64 px model input' if args.small_input else 'real-size models'}, "
        f"prompt {args.prompt!r}, max {args.max_detections} boxes, "
        f"{args.threads} threads per case, {args.rounds} round(s), cases alternating; cpu count {os.cpu_count()}",
        "",
        "| case | images/s | wall per image | median image in worker | fixed cost | peak RSS (tree) |",
        "|---|---|---|---|---|---|",
    ]
    for case in cases:
        lines.append(f"| {case} | {med(case, 'images_per_s'):.3f} | {med(case, 'per_image'):.2f} s | "
                     f"{med(case, 'median_image'):.2f} s | {med(case, 'fixed'):.1f} s | {med(case, 'peak_mb') / 1024:.2f} GiB |")
    lines.append("")
    if "embedded" in cases and "ray1" in cases:
        lines.append(f"Ray overhead, 1 actor vs embedded (wall time per image, same threads): "
                     f"{med('ray1', 'per_image') / med('embedded', 'per_image'):.3f}x (target <= 1.1)")
        if args.rounds > 1:
            pairs = [r["per_image"] / e["per_image"] for e, r in zip(results["embedded"], results["ray1"])]
            lines.append(f"  round by round: {', '.join(f'{x:.3f}' for x in pairs)} (median {statistics.median(pairs):.3f}x)")
        lines.append(f"  per image inside the worker: {med('ray1', 'median_image') / med('embedded', 'median_image'):.3f}x; "
                     f"fixed cost: ray1 {med('ray1', 'fixed'):.1f} s, embedded {med('embedded', 'fixed'):.1f} s")
    if "embedded" in cases and "ray2" in cases:
        lines.append(f"Ray, 2 actors x {max(1, args.threads // 2)} thread(s) vs embedded: "
                     f"{med('ray2', 'images_per_s') / med('embedded', 'images_per_s'):.3f}x the images per second")
    if "tiny" in cases:
        lines.append(f"Besides the models (tiny models, same images): {med('tiny', 'median_image'):.3f} s per image")
    for case in cases:
        lines.append(f"{case}: statuses {results[case][-1]['statuses']}, instances {results[case][-1]['instances']}")
    report = "\n".join(lines)
    print("\n" + report)
    if args.output:
        Path(args.output).write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
