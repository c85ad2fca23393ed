"""Grounded Track against Grounded Segment on every frame, and Grounded Track's memory against clip length.

    python benchmarks/track_bench.py                 # speed (20 frames) + memory at 50 and 200 frames
    python benchmarks/track_bench.py --quick         # speed on 10 frames, memory at 20 and 50
    python benchmarks/track_bench.py --speed-only / --memory-only
    python benchmarks/track_bench.py --engines-only --engine-frames 8   # SAM 3 Track against Grounded Track

Real-size models with random weights (:mod:`grounded_inpaint.testing.real_size`): GroundingDINO
Swin-T and SAM 2.1 Hiera-T with its video weights, one ``.pt`` file read by both the image predictor
(Grounded Segment) and the video model (Grounded Track). The clip: two 240-px blocks crossing on a
1024x1024 frame.

* **Speed**: frame by frame, in one process, the two are timed alternately on the same frame:
  Grounded Segment (GroundingDINO + SAM 2.1 on the frame, at most ``--objects`` boxes, default 2)
  and one step of Grounded Track (``detect_every`` 10, at most ``--objects`` objects). Random
  weights find random boxes, so both get box threshold 0 and the same number of objects: the same
  work per object on both sides. The feature cache is off (``GROUNDED_INPAINT_CACHE_MB=0``), so
  neither side reuses the other's GroundingDINO pass.
* **Memory**: each clip length runs in its own process, which streams the frames (made on the fly,
  so the clip itself takes no memory) through Grounded Track and reports its peak RSS above the
  RSS once the models are loaded. ``--reference`` also runs transformers' documented whole-video
  usage (``init_video_session(video=...)`` + ``propagate_in_video_iterator``), which keeps every
  frame and every output (200 frames of 1024 px need about 8 GB that way).
* **Engines** (``--engines``): the second engine, SAM 3 alone (transformers' default ``Sam3VideoConfig`` =
  facebook/sam3's sizes, 860 M parameters, random weights, 1008 px), against Grounded Track (SAM 2.1
  Hiera-T + GroundingDINO, ``detect_every`` 10) on the same clip, each in its own process, one after
  the other (SAM 3 alone needs about 4 GB): time per frame, ``--objects`` objects each. SAM 3 runs
  its detector on every frame (its own way) and, as a second figure, every 10 frames. Random SAM 3
  detections score about 0.25, so it runs with threshold 0.05 and ``max_objects`` = ``--objects``.
* **Ids**: the id rules on the synthetic crossing clip with a perfect detector and video model
  (random weights cannot see the blocks): the number of id swaps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Grounded Segment and Grounded Track see the same frames: with the content-keyed cache on, the second
# one's GroundingDINO pass would be a cache hit. Both run uncached here.
os.environ["GROUNDED_INPAINT_CACHE_MB"] = "0"

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIDE = 1024
PROMPT = "red block, blue block"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def frames(count: int, side: int = SIDE):
    """The crossing clip, made frame by frame: ``[side, side, 3]`` float32."""
    block = side * 15 // 64
    for t in range(count):
        frame = torch.full((side, side, 3), 0.55)
        x = int(side * 0.05 + t * (side * 0.9 - block) / max(1, count - 1))
        frame[side // 3: side // 3 + block, side - block - x: side - x] = torch.tensor([0.15, 0.3, 0.85])
        frame[side // 3 - 16: side // 3 - 16 + block, x: x + block] = torch.tensor([0.85, 0.15, 0.1])
        yield frame


def models(folder: Path, kind: str = "real"):
    """``(GroundingDINO path, SAM 2.1 video path)``: real-size random weights, or (``kind="tiny"``) the
    tiny test models, the SAM 2.1 one in Meta's layout so it runs at 1024 px with the real model's
    memory-bank geometry (64-channel memories of 64x64 tokens per frame and object)."""
    if kind in ("tiny", "tiny256"):
        from grounded_inpaint.testing.tiny_gdino import write_tiny_grounding_dino
        from grounded_inpaint.testing.tiny_sam2_video import write_tiny_sam2_video_hf, write_tiny_sam2_video_original

        dino = folder / "tiny" / "grounding-dino-tiny-random"
        if not (dino / "config.json").is_file():
            write_tiny_grounding_dino(dino)
        if kind == "tiny256":  # a transformers folder at 256 px: 16x16 memory tokens per frame
            sam2 = folder / "tiny" / "sam2.1-video-tiny-random-256"
            if not (sam2 / "config.json").is_file():
                write_tiny_sam2_video_hf(sam2, image_size=256)
            return dino, sam2
        sam2 = folder / "tiny" / "sam2.1_hiera_tiny_video_random.pt"
        if not sam2.is_file():
            write_tiny_sam2_video_original(sam2)
        return dino, sam2
    from grounded_inpaint.testing.real_size import REAL_SIZE_NAMES, write_real_size_grounding_dino, write_real_size_sam2_video

    dino = write_real_size_grounding_dino(folder / REAL_SIZE_NAMES["dino"])
    sam2 = write_real_size_sam2_video(folder / REAL_SIZE_NAMES["sam2_video"])
    return dino, sam2


def speed(folder: Path, count: int, detect_every: int, objects: int = 2) -> dict:
    from grounded_inpaint.models import load_detector, load_segmenter
    from grounded_inpaint.pipeline import grounded_segment
    from grounded_inpaint.video import load_video_model, track_frames

    dino_path, sam2_path = models(folder)
    detector = load_detector(dino_path)
    predictor = load_segmenter(sam2_path)
    engine = load_video_model(sam2_path)
    clip = list(frames(count))
    tracked = track_frames(detector, engine, iter(clip), PROMPT, detect_every=detect_every, max_objects=objects, box_threshold=0.0)
    per_frame = {"segment": [], "track": []}
    counts = []
    for i, frame in enumerate(clip):
        start = time.perf_counter()
        _, (seg,) = grounded_segment(detector, predictor, [frame], PROMPT, box_threshold=0.0, max_detections=objects)
        per_frame["segment"].append(time.perf_counter() - start)
        start = time.perf_counter()
        result = next(tracked)
        per_frame["track"].append(time.perf_counter() - start)
        counts.append((len(seg), len(result)))
        print(f"  frame {i:3d}: Grounded Segment {per_frame['segment'][-1]:6.2f} s ({len(seg)} objects), "
              f"Grounded Track {per_frame['track'][-1]:6.2f} s ({len(result)} objects)", flush=True)
    seg_mean, track_mean = statistics.mean(per_frame["segment"]), statistics.mean(per_frame["track"])
    key = [t for i, t in enumerate(per_frame["track"]) if i % detect_every == 0]
    between = [t for i, t in enumerate(per_frame["track"]) if i % detect_every != 0]
    # from frame num_maskmem on, every tracked object reads a full memory bank (7 past frames): the cost
    # per frame stops growing; before that it ramps up
    full = [i for i in range(count) if i >= int(engine.model.config.num_maskmem)]
    steady = None
    if full:
        steady = {"frames": full, "segment_mean_s": statistics.mean(per_frame["segment"][i] for i in full),
                  "track_mean_s": statistics.mean(per_frame["track"][i] for i in full)}
        steady["ratio"] = steady["track_mean_s"] / steady["segment_mean_s"]
    return {"steady": steady,
        "frames": count, "detect_every": detect_every, "max_objects": objects, "per_frame_s": per_frame, "objects": counts,
        "segment_mean_s": seg_mean, "track_mean_s": track_mean, "ratio": track_mean / seg_mean,
        "track_key_frame_mean_s": statistics.mean(key), "track_between_mean_s": statistics.mean(between) if between else None,
    }


def engine_child(folder: Path, engine_name: str, count: int, objects: int, detect_every: int) -> dict:
    """Runs in its own process: time per frame of one engine on the crossing clip (frame 0 included)."""
    from grounded_inpaint.video import load_sam3_video_model, load_video_model, track_frames

    if engine_name == "sam3":
        from grounded_inpaint.testing.real_size import REAL_SIZE_NAMES, write_real_size_sam3_video

        engine = load_sam3_video_model(write_real_size_sam3_video(folder / REAL_SIZE_NAMES["sam3_video"]))
        detector, options = None, dict(threshold=0.05, new_object_threshold=0.05)
    else:
        from grounded_inpaint.models import load_detector

        dino_path, sam2_path = models(folder)
        detector, engine = load_detector(dino_path), load_video_model(sam2_path)
        options = dict(box_threshold=0.0)
    loaded = _rss_mb()
    times, counts = [], []
    tracked = track_frames(detector, engine, frames(count), PROMPT, detect_every=detect_every, max_objects=objects, **options)
    while True:
        start = time.perf_counter()
        try:
            result = next(tracked)
        except StopIteration:
            break
        times.append(time.perf_counter() - start)
        counts.append(len(result))
        print(f"  {engine_name} frame {len(times) - 1}: {times[-1]:.2f} s ({counts[-1]} objects)", file=sys.stderr, flush=True)
    return {"engine": engine_name, "frames": count, "objects": counts, "detect_every": detect_every, "per_frame_s": times,
            "mean_s": statistics.mean(times), "loaded_rss_mb": loaded, "peak_rss_mb": _peak_mb()}


def memory_child(folder: Path, count: int, reference: bool, kind: str = "real") -> dict:
    """Runs in its own process: peak RSS above the loaded models while ``count`` frames stream through."""
    from grounded_inpaint.models import load_detector
    from grounded_inpaint.video import load_video_model, track_frames

    dino_path, sam2_path = models(folder, kind)
    detector = load_detector(dino_path)
    engine = load_video_model(sam2_path)
    list(track_frames(detector, engine, frames(2, 256), PROMPT, box_threshold=0.0, max_objects=1))  # warm-up
    loaded = _rss_mb()
    start = time.perf_counter()
    if reference:
        from transformers import Sam2ImageProcessor, Sam2VideoProcessor
        from transformers.models.sam2_video import Sam2VideoVideoProcessor

        size = {"height": engine.image_size, "width": engine.image_size}
        processor = Sam2VideoProcessor(Sam2ImageProcessor(size=size, mask_size={"height": engine.image_size // 4,
                                                                                "width": engine.image_size // 4}),
                                       Sam2VideoVideoProcessor(size=size))
        video = torch.stack([(f * 255).permute(2, 0, 1) for f in frames(count)])
        session = processor.init_video_session(video=video, inference_device="cpu")
        del video
        processor.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=[1], input_boxes=[[[100.0, 300.0, 400.0, 600.0]]])
        engine.model(inference_session=session, frame_idx=0)
        for out in engine.model.propagate_in_video_iterator(session):
            processor.post_process_masks([out.pred_masks], original_sizes=[[SIDE, SIDE]])
    else:
        done = 0
        for _ in track_frames(detector, engine, frames(count), PROMPT, detect_every=0, max_objects=1, box_threshold=0.0):
            done += 1
        assert done == count
    return {"frames": count, "reference": reference, "model": kind, "loaded_rss_mb": loaded, "peak_rss_mb": _peak_mb(),
            "peak_above_loaded_mb": _peak_mb() - loaded, "seconds": time.perf_counter() - start}


def ids_on_the_crossing_clip() -> dict:
    from grounded_inpaint.testing.video_clips import crossing_clip, id_swaps, run_oracle

    out = {}
    for every in (1, 2, 5, 10):
        clip = crossing_clip(40)
        results, _, _ = run_oracle(clip, detect_every=every)
        out[every] = {"swaps": id_swaps(clip, results), "ids": sorted({i for s in results for i in s.ids.tolist()})}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path(os.environ.get("GI_BENCH_MODELS", "/tmp/gi-bench-models")))
    parser.add_argument("--frames", type=int, default=20, help="frames for the speed comparison")
    parser.add_argument("--detect-every", type=int, default=10)
    parser.add_argument("--objects", type=int, default=2, help="objects per frame on both sides (default 2)")
    parser.add_argument("--memory", default="50,200", help="clip lengths for the memory runs")
    parser.add_argument("--reference", default="50", help="clip lengths for transformers' whole-video usage ('' = none)")
    parser.add_argument("--quick", action="store_true", help="10 frames, memory at 20 and 50, reference at 20")
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--memory-model", choices=["real", "tiny", "tiny256"], default="real",
                        help="models of the memory runs: real-size; the tiny ones at 1024 px (the real memory-bank geometry); "
                        "or the tiny SAM 2.1 at 256 px (16x16 memory tokens per frame: seconds per run)")
    parser.add_argument("--engines", action="store_true", help="also time SAM 3 Track against Grounded Track")
    parser.add_argument("--engines-only", action="store_true", help="only the engine comparison")
    parser.add_argument("--engine-frames", type=int, default=8, help="frames of the engine comparison (default 8)")
    parser.add_argument("--engine-child", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("GI_BENCH_THREADS", "2")))
    if args.engine_child:
        name, count, objects, every = args.engine_child.split(":")
        print(json.dumps(engine_child(args.models, name, int(count), int(objects), int(every))))
        return 0
    if args.engines_only:
        args.engines = args.speed_only = args.memory_only = True
    if args.child:
        count, kind, model = args.child.split(":")
        print(json.dumps(memory_child(args.models, int(count), kind == "reference", model)))
        return 0
    if args.quick:
        args.frames, args.memory, args.reference = 10, "20,50", "20"
    report: dict = {"threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    report["ids"] = ids_on_the_crossing_clip()
    print("ids on the crossing clip (perfect detector and video model):",
          ", ".join(f"detect_every {k}: {v['swaps']} swaps, ids {v['ids']}" for k, v in report["ids"].items()), flush=True)
    if not args.memory_only:
        print(f"speed: {args.frames} frames at {SIDE}x{SIDE}, detect_every {args.detect_every}, {args.objects} objects", flush=True)
        result = speed(args.models, args.frames, args.detect_every, args.objects)
        report["speed"] = result
        print(f"Grounded Segment every frame: {result['segment_mean_s']:.2f} s/frame; Grounded Track: "
              f"{result['track_mean_s']:.2f} s/frame (key frames {result['track_key_frame_mean_s']:.2f} s, others "
              f"{result['track_between_mean_s'] or 0:.2f} s); ratio {result['ratio']:.2f} (target <= 0.6)", flush=True)
        if result["steady"]:
            st = result["steady"]
            print(f"  with the memory bank full (frames {st['frames'][0]}-{st['frames'][-1]}): Grounded Segment "
                  f"{st['segment_mean_s']:.2f} s/frame, Grounded Track {st['track_mean_s']:.2f} s/frame; ratio "
                  f"{st['ratio']:.2f}", flush=True)
    if args.engines:
        report["engines"] = []
        print(f"engines: {args.engine_frames} frames at {SIDE}x{SIDE}, {args.objects} objects, each engine in its own process",
              flush=True)
        for name, every in (("sam2", args.detect_every), ("sam3", 1), ("sam3", args.detect_every)):
            out = subprocess.run([sys.executable, __file__, "--models", str(args.models), "--engine-child",
                                  f"{name}:{args.engine_frames}:{args.objects}:{every}"], capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-3000:], flush=True)
                raise SystemExit(f"the {name} run failed")
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            report["engines"].append(figures)
            label = "Grounded Track (SAM 2.1 Hiera-T + GroundingDINO)" if name == "sam2" else "SAM 3 Track (860 M)"
            print(f"  {label}, detect_every {every}: {figures['mean_s']:.2f} s/frame (frames: "
                  + ", ".join(f"{t:.1f}" for t in figures["per_frame_s"]) + f"; objects {figures['objects']}); peak RSS "
                  f"{figures['peak_rss_mb']:.0f} MiB", flush=True)
        base = report["engines"][0]["mean_s"]
        print("  SAM 3 / SAM 2.1 time per frame: " + ", ".join(
            f"detect_every {e['detect_every']}: {e['mean_s'] / base:.2f}" for e in report["engines"][1:]), flush=True)
    if not args.speed_only:
        runs = [(int(n), "ours") for n in args.memory.split(",") if n] + [(int(n), "reference") for n in args.reference.split(",") if n]
        report["memory"] = []
        for count, kind in runs:
            out = subprocess.run([sys.executable, __file__, "--models", str(args.models), "--child",
                                  f"{count}:{kind}:{args.memory_model}"],
                                 capture_output=True, text=True, check=True)
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            report["memory"].append(figures)
            print(f"memory ({args.memory_model} models), "
                  f"{'transformers whole-video usage' if kind == 'reference' else 'Grounded Track (streamed)'}, {count} frames: peak RSS {figures['peak_rss_mb']:.0f} MiB, {figures['peak_above_loaded_mb']:.0f} MiB above "
                  f"the loaded models ({figures['seconds']:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
