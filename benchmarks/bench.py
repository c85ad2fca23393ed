"""Speed and memory of grounded-inpaint against the reference pipeline, on random-weight models at real size.

Run ``python benchmarks/bench.py`` (a few minutes on a 2-core CPU; ``--quick`` for a short check).

Models (built once with fixed seeds and saved under ``--workdir``; both sides load the same files):

* GroundingDINO Swin-T: transformers' default ``GroundingDinoConfig`` (≈172 M parameters), its
  default image processor (800/1333) and a BERT tokenizer with the 30522-token layout;
* SAM ViT-B: ``segment_anything.build_sam_vit_b`` (Meta format ``.pth``) and, for ``--sam hf``,
  the same weights converted to a transformers ``SamModel`` folder.

Sides:

* **ours**: ``grounded_inpaint`` — ``load_detector`` / ``load_segmenter``, ``detector.detect`` and
  ``segment_image`` with the content-keyed feature cache;
* **reference**: the pipeline as the upstream docs show it — ``GroundingDinoProcessor`` → model →
  ``post_process_grounded_object_detection``, then Meta's ``SamPredictor.set_image`` →
  ``predict_torch`` with all boxes.

SAM always gets the same fixed boxes, so the random detector does not change the work. Each side
runs in its own worker process (so its peak RSS is its own); the driver runs one step at a time,
alternating which side goes first, so background load affects both alike. Peak RSS per case is
``VmHWM`` after resetting it through ``/proc/self/clear_refs`` at the start of the case (it includes
the loaded weights and, for ours, the cache). FLOPs are counted with ``torch.utils.flop_counter``
in one extra, untimed run per case (matmuls, convolutions and attention; the deformable attention's
``grid_sample`` is not counted), and compared with this machine's measured matmul peak.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_WORKDIR = Path(os.environ.get("GROUNDED_INPAINT_BENCH_DIR", "/tmp/grounded-inpaint-bench"))
IMAGE_W, IMAGE_H = 1024, 768
PROMPT = "shoes . dress . bag ."
PROMPTS_CHANGED = ("cat . dog .", "red shoes .", "person . hat .", "chair . table .", "car . tree .", "cup . bottle .")
THRESHOLDS = ((0.30, 0.25), (0.35, 0.25), (0.25, 0.20), (0.40, 0.30), (0.20, 0.20), (0.45, 0.35))
BOX_THRESHOLD, TEXT_THRESHOLD = 0.30, 0.25
CASES = {
    "a": "cold: one 1024x768 image, 4 boxes",
    "b": "same image, changed prompt",
    "c": "same image, changed thresholds",
    "d": "batch of 8 different images",
    "e": "16 boxes on one image (cold)",
}

# ----------------------------------------------------------------------------- shared helpers


def fixed_boxes(n: int) -> "Any":
    """``[n, 4]`` float32 XYXY boxes spread over the 1024x768 image (the same on both sides)."""
    import torch

    g = torch.Generator().manual_seed(1234 + n)
    x0 = torch.rand(n, generator=g) * (IMAGE_W * 0.6)
    y0 = torch.rand(n, generator=g) * (IMAGE_H * 0.6)
    w = 80 + torch.rand(n, generator=g) * (IMAGE_W * 0.35)
    h = 80 + torch.rand(n, generator=g) * (IMAGE_H * 0.35)
    return torch.stack([x0, y0, (x0 + w).clamp(max=IMAGE_W), (y0 + h).clamp(max=IMAGE_H)], dim=1)


def make_image(seed: int) -> "Any":
    """A ``[768, 1024, 3]`` uint8 image: smooth random blobs plus noise (deterministic per seed)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 12, 16, generator=g)
    img = F.interpolate(low, size=(IMAGE_H, IMAGE_W), mode="bicubic", align_corners=False)[0]
    img = img + 0.08 * torch.randn(img.shape, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


def peak_rss_mb() -> float:
    """This process's peak resident set size since the last :func:`reset_peak_rss`, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def matmul_peak(dtype_name: str = "fp32", n: int = 2048, seconds: float = 1.0) -> float:
    """Measured GEMM throughput of this process in FLOP/s (best of repeated ``n x n`` matmuls)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = 0.0
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


# ----------------------------------------------------------------------------- building the models


def prepare_models(workdir: Path) -> dict[str, str]:
    """Build (once) and save the random-weight real-size models; return their paths."""
    import logging

    from grounded_inpaint.testing.real_size import write_real_size_models

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return {role: str(path) for role, path in write_real_size_models(workdir).items()}


# ----------------------------------------------------------------------------- worker side


class OursSide:
    """grounded_inpaint's pipeline: detector.detect → segment_image with fixed boxes."""

    def __init__(self, paths: dict[str, str], sam: str, dtype: str = "fp32") -> None:
        from grounded_inpaint.models import load_detector, load_segmenter

        self.detector = load_detector(paths["dino"], download=False, dtype=dtype)
        self.predictor = load_segmenter(paths["sam_hf" if sam == "hf" else "sam_meta"], download=False, dtype=dtype)

    def run(self, image: Any, prompt: str, thresholds: tuple[float, float], boxes: Any) -> dict[str, Any]:
        import torch

        from grounded_inpaint.segment import segment_image
        from grounded_inpaint.structures import Detections

        picture = image.float() / 255.0
        found = self.detector.detect(picture, prompt, thresholds[0], thresholds[1])[0]
        fixed = Detections(boxes, torch.ones(len(boxes)), ["object"] * len(boxes), (IMAGE_H, IMAGE_W))
        segments = segment_image(self.predictor, picture, fixed)
        return {"n_detections": len(found.labels), "masks": segments.masks}

    def decoder(self, image: Any, boxes: Any) -> Any:
        self.predictor.predict(boxes=boxes, multimask="single")

    def set_image(self, image: Any) -> None:
        self.predictor.set_image(image.float() / 255.0)

    def raw_boxes(self, image: Any, prompt: str) -> Any:
        """``[Q, 4]`` normalised cxcywh raw boxes of the detector (for precision agreement)."""
        import torch

        d = self.detector
        tokens = {k: v.to(d.device) for k, v in d.tokenize(prompt).items()}
        with torch.inference_mode():
            return d._forward([image.float() / 255.0], tokens, [None])[1][0].float()


class ReferenceSide:
    """The upstream-docs pipeline: GroundingDinoProcessor → model → post-processing; Meta SamPredictor."""

    def __init__(self, paths: dict[str, str]) -> None:
        from segment_anything import SamPredictor, sam_model_registry
        from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

        self.processor = GroundingDinoProcessor.from_pretrained(paths["dino"])
        self.model = GroundingDinoForObjectDetection.from_pretrained(paths["dino"]).eval()
        sam = sam_model_registry["vit_b"](checkpoint=paths["sam_meta"]).eval()
        self.predictor = SamPredictor(sam)

    def run(self, image: Any, prompt: str, thresholds: tuple[float, float], boxes: Any) -> dict[str, Any]:
        import torch
        from PIL import Image

        pil = Image.fromarray(image.numpy())
        inputs = self.processor(images=pil, text=prompt, return_tensors="pt")
        with torch.no_grad():
            outputs = self.model(**inputs)
        results = self.processor.post_process_grounded_object_detection(
            outputs, inputs.input_ids, threshold=thresholds[0], text_threshold=thresholds[1], target_sizes=[pil.size[::-1]]
        )
        self.predictor.set_image(image.numpy())
        tboxes = self.predictor.transform.apply_boxes_torch(boxes, (IMAGE_H, IMAGE_W))
        masks, _, _ = self.predictor.predict_torch(point_coords=None, point_labels=None, boxes=tboxes, multimask_output=False)
        self.predictor.reset_image()
        return {"n_detections": len(results[0]["scores"]), "masks": masks[:, 0]}

    def decoder(self, image: Any, boxes: Any) -> Any:
        tboxes = self.predictor.transform.apply_boxes_torch(boxes, (IMAGE_H, IMAGE_W))
        self.predictor.predict_torch(point_coords=None, point_labels=None, boxes=tboxes, multimask_output=False)

    def set_image(self, image: Any) -> None:
        self.predictor.set_image(image.numpy())


STAGES = ("dino backbone", "dino encoder", "dino decoder", "sam encoder", "sam decoder")


def stage_modules(dino: Any, sam: Any) -> dict[str, Any]:
    """The modules whose time is reported per stage (GroundingDINO model, SAM model)."""
    inner = dino.model
    return {
        "dino backbone": inner.backbone,
        "dino encoder": inner.encoder,
        "dino decoder": inner.decoder,
        "sam encoder": getattr(sam, "image_encoder", None) or getattr(sam, "vision_encoder"),
        "sam decoder": sam.mask_decoder,
    }


class StageTimer:
    """Wall time spent inside each stage module (forward hooks; negligible overhead)."""

    def __init__(self, modules: dict[str, Any]) -> None:
        self.seconds: dict[str, float] = {}
        for name, module in modules.items():
            module.register_forward_pre_hook(self._pre(name))
            module.register_forward_hook(self._post(name))

    def _pre(self, name: str):
        def hook(module, args):
            self.seconds[name] = self.seconds.get(name, 0.0) - time.perf_counter()
        return hook

    def _post(self, name: str):
        def hook(module, args, output):
            self.seconds[name] += time.perf_counter()
        return hook

    def take(self) -> dict[str, float]:
        out, self.seconds = self.seconds, {}
        return out


def _flops(fn) -> float:
    """FLOPs of ``fn()`` by ``torch.utils.flop_counter``'s formulas (matmul, conv, attention, ...).

    ``FlopCounterMode`` itself tracks modules with autograd hooks, which fails under
    ``torch.inference_mode``; this counter uses the same per-op formulas without module tracking.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Counter(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            formula = flop_registry.get(func._overloadpacket)
            if formula is None and torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), "CompositeImplicitAutograd"):
                # under inference_mode composite ops (matmul, linear, ...) arrive whole: decompose them
                with self:
                    result = func.decompose(*args, **kwargs)
                if result is not NotImplemented:
                    return result
            out = func(*args, **kwargs)
            if func._overloadpacket is torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
                q, k, v = args[:3]  # [B, heads, L, d]: q·kᵀ and p·v (the registry lacks the CPU kernel)
                Counter.total += 2 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * (q.shape[3] + v.shape[3])
            elif formula is not None:
                Counter.total += int(formula(*args, **kwargs, out_val=out))
            return out

    with Counter():
        fn()
    return float(Counter.total)


def worker(side: str, paths: dict[str, str], sam: str, threads: int) -> None:
    """Answer JSON commands on stdin, one per line, with one JSON line each on stdout."""
    import torch

    torch.set_num_threads(threads)
    out = sys.stdout
    sys.stdout = sys.stderr  # library chatter must not break the protocol
    t = time.perf_counter()
    engine: Any = OursSide(paths, sam) if side == "ours" else ReferenceSide(paths)
    if side == "ours":
        timer = StageTimer(stage_modules(engine.detector.model, engine.predictor.model))
    else:
        timer = StageTimer(stage_modules(engine.model, engine.predictor.model))
    out.write(json.dumps({"ready": True, "load_s": time.perf_counter() - t, "rss_mb": peak_rss_mb()}) + "\n")
    out.flush()
    fp32_engine = engine
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        reply: dict[str, Any] = {}
        if op == "quit":
            break
        if op == "reset_rss":
            reply["ok"] = reset_peak_rss()
        elif op == "rss":
            reply["peak_rss_mb"] = peak_rss_mb()
        elif op == "peak":
            reply["flops"] = matmul_peak(cmd.get("dtype", "fp32"))
        elif op == "dtype":  # switch "ours" to another precision (models come from the model cache)
            engine = OursSide(paths, sam, cmd["dtype"]) if cmd["dtype"] != "fp32" else fp32_engine
            if cmd.get("no_cache"):
                engine.detector.feature_cache = None
                engine.predictor.feature_cache = None
        elif op in ("run", "decoder", "set_image"):
            images = [make_image(s) for s in cmd["seeds"]]
            boxes = fixed_boxes(cmd.get("boxes", 4))
            thresholds = tuple(cmd.get("thresholds", (BOX_THRESHOLD, TEXT_THRESHOLD)))

            def job() -> Any:
                last = None
                for image in images:
                    if op == "run":
                        last = engine.run(image, cmd.get("prompt", PROMPT), thresholds, boxes)
                    elif op == "decoder":
                        engine.decoder(image, boxes)
                    else:
                        engine.set_image(image)
                return last

            if cmd.get("flops"):
                try:
                    reply["flops"] = _flops(job)
                except Exception as exc:  # FLOP counting is informative only
                    print(f"FLOP counting failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                    reply["flops"] = float("nan")
            else:
                timer.take()
                t = time.perf_counter()
                result = job()
                reply["seconds"] = time.perf_counter() - t
                reply["stages"] = timer.take()
                if result is not None and cmd.get("keep_masks"):
                    torch.save(result["masks"].cpu(), cmd["keep_masks"])
        elif op == "raw_boxes":
            torch.save(engine.raw_boxes(make_image(cmd["seeds"][0]), PROMPT).cpu(), cmd["path"])
        out.write(json.dumps(reply) + "\n")
        out.flush()


# ----------------------------------------------------------------------------- driver side


class Worker:
    """A side running in its own process (``bench.py --worker SIDE``)."""

    def __init__(self, side: str, args: argparse.Namespace, paths: dict[str, str]) -> None:
        cmd = [sys.executable, __file__, "--worker", side, "--paths", json.dumps(paths), "--sam", args.sam,
               "--threads", str(args.threads)]
        self.side = side
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hello = self._read()
        self.load_s, self.load_rss = hello["load_s"], hello["rss_mb"]

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"the {self.side} worker died (exit code {self.proc.wait()})")
        return json.loads(line)

    def ask(self, **cmd: Any) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(cmd) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return self._read()

    def close(self) -> None:
        try:
            self.ask(op="quit")
        except (RuntimeError, BrokenPipeError, json.JSONDecodeError):
            pass
        self.proc.wait(timeout=60)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


#: Case a's FLOPs per side, reused for the cases whose work is the same (filled by run_case).
flops_of_a: dict[str, float] = {}


def run_case(case: str, ours: Worker, ref: Worker, repeats: int, args: argparse.Namespace, seed_base: int) -> dict[str, Any]:
    """Time one case on both sides (interleaved), with peak RSS and FLOPs."""
    times: dict[str, list[float]] = {"ours": [], "reference": []}
    stages: dict[str, list[dict[str, float]]] = {"ours": [], "reference": []}
    rss: dict[str, float] = {}
    for w in (ours, ref):
        w.ask(op="reset_rss")
    extra: dict[str, Any] = {}
    batch = 8 if not args.quick else 2
    for r in range(repeats):
        seed = seed_base + 100 * r
        order = (ours, ref) if r % 2 == 0 else (ref, ours)
        for w in order:
            if case == "a":
                res = w.ask(op="run", seeds=[seed], boxes=4)
            elif case == "b":
                if w is ours:  # the user's previous run on this photo (untimed): fills the cache
                    w.ask(op="run", seeds=[seed], boxes=4)
                res = w.ask(op="run", seeds=[seed], boxes=4, prompt=PROMPTS_CHANGED[r % len(PROMPTS_CHANGED)])
            elif case == "c":
                if w is ours:
                    w.ask(op="run", seeds=[seed], boxes=4)
                res = w.ask(op="run", seeds=[seed], boxes=4, thresholds=THRESHOLDS[1 + r % (len(THRESHOLDS) - 1)])
            elif case == "d":
                res = w.ask(op="run", seeds=[seed + i for i in range(batch)], boxes=4)
            elif case == "e":
                res = w.ask(op="run", seeds=[seed], boxes=16)
            else:
                raise ValueError(case)
            times[w.side].append(res["seconds"])
            stages[w.side].append(res.get("stages", {}))
    for w in (ours, ref):
        rss[w.side] = w.ask(op="rss")["peak_rss_mb"]
    # FLOPs: one extra untimed run of the timed step per side.
    flops: dict[str, float] = {}
    if not args.no_flops:
        seed = seed_base + 100 * repeats
        for w in (ours, ref):
            if w is ref and case in ("b", "c", "d") and "a" in flops_of_a:
                # the reference does the whole cold run every time: its FLOPs are case a's (x batch)
                flops[w.side] = flops_of_a["a"] * (batch if case == "d" else 1)
                continue
            if w is ours and case == "d" and "ours" in flops_of_a:
                flops[w.side] = flops_of_a["ours"] * batch  # every image is new: case a's work per image
                continue
            if case in ("b", "c") and w is ours:
                w.ask(op="run", seeds=[seed], boxes=4)
            kwargs: dict[str, Any] = {"seeds": [seed], "boxes": 4}
            if case == "b":
                kwargs["prompt"] = "flops . counter ."
            elif case == "c":
                kwargs["thresholds"] = (0.33, 0.27)
            elif case == "d":
                kwargs["seeds"] = [seed + i for i in range(batch)]
            elif case == "e":
                kwargs["boxes"] = 16
            flops[w.side] = w.ask(op="run", flops=True, **kwargs)["flops"]
        if case == "a":
            flops_of_a["a"], flops_of_a["ours"] = flops["reference"], flops["ours"]
    if case == "e":  # decoder (+ mask upsampling) alone, from a set image: 4 vs 16 boxes
        for w in (ours, ref):
            w.ask(op="set_image", seeds=[seed_base])
        dec: dict[str, dict[int, list[float]]] = {"ours": {1: [], 4: [], 16: []}, "reference": {1: [], 4: [], 16: []}}
        for r in range(max(3, repeats)):
            for n in (1, 4, 16):
                for w in ((ours, ref) if r % 2 == 0 else (ref, ours)):
                    dec[w.side][n].append(w.ask(op="decoder", seeds=[seed_base], boxes=n)["seconds"])
        extra["decoder"] = {side: {n: _median(v) for n, v in d.items()} for side, d in dec.items()}
    return {"times": times, "stages": stages, "rss": rss, "flops": flops, "batch": batch, **extra}


def precision_case(ours: Worker, args: argparse.Namespace, peak_bf16: float) -> dict[str, Any]:
    """Speed-up and agreement of bf16 against fp32 for our pipeline (no cache, same random weights)."""
    import torch

    tmp = Path(args.workdir) / "precision"
    tmp.mkdir(exist_ok=True)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    ious, l1s = [], []
    for r in range(max(1, min(args.repeats, 2))):
        seed = 9000 + r
        for dtype in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
            ours.ask(op="dtype", dtype=dtype, no_cache=True)
            res = ours.ask(op="run", seeds=[seed], boxes=4, keep_masks=str(tmp / f"masks_{dtype}.pt"))
            times[dtype].append(res["seconds"])
            ours.ask(op="raw_boxes", seeds=[seed], path=str(tmp / f"boxes_{dtype}.pt"))
        m32, m16 = torch.load(tmp / "masks_fp32.pt"), torch.load(tmp / "masks_bf16.pt")
        inter = (m32 & m16).flatten(1).sum(1).float()
        union = (m32 | m16).flatten(1).sum(1).float().clamp(min=1)
        ious.append(float((inter / union).mean()))
        scale = torch.tensor([IMAGE_W, IMAGE_H, IMAGE_W, IMAGE_H])
        b32, b16 = torch.load(tmp / "boxes_fp32.pt") * scale, torch.load(tmp / "boxes_bf16.pt") * scale
        # Two-stage GroundingDINO picks its 900 queries by top-k over ~18k near-tied random scores,
        # so the same query index may hold another proposal: match each fp32 box to its nearest bf16 box.
        l1s.append(float(torch.cdist(b32, b16, p=1).min(dim=1).values.mean() / 4))
    ours.ask(op="dtype", dtype="fp32")
    return {"times": times, "iou": statistics.mean(ious), "l1": statistics.mean(l1s), "peak_bf16": peak_bf16}


def _fmt_flops(f: float) -> str:
    return f"{f / 1e9:8.1f}"


def report(results: dict[str, dict[str, Any]], peak: float, args: argparse.Namespace, header: list[str]) -> str:
    lines = list(header)
    lines.append("")
    lines.append(f"{'case':<36} {'ours s':>8} {'ref s':>8} {'ratio':>6} {'target':>8} {'met':>4}"
                 f" {'RSS ours MiB':>12} {'RSS ref MiB':>12} {'GFLOP ours':>10} {'GFLOP ref':>10} {'%peak ours':>10} {'%peak ref':>9}")
    single = None
    if "a" in results:
        single = _median(results["a"]["times"]["ours"])
    targets = {"a": 0.8, "b": 0.4, "c": 0.4}
    for case, res in results.items():
        if case not in CASES:
            continue
        o, r = _median(res["times"]["ours"]), _median(res["times"]["reference"])
        ratio = o / r
        target, met = "", ""
        if case in targets:
            target = f"<= {targets[case]}"
            met = "yes" if ratio <= targets[case] else "NO"
        elif case == "d" and single is not None:
            bound = res["batch"] * single
            target = f"<= {bound:.1f}s"
            met = "yes" if o <= bound else "NO"
        elif case == "e":
            d = res.get("decoder", {}).get("ours", {})
            growth = d.get(16, float("nan")) / d.get(4, float("nan"))
            target = "t16/t4<4"
            met = "yes" if growth < 4 else "NO"
        fo, fr = res["flops"].get("ours", float("nan")), res["flops"].get("reference", float("nan"))
        name = f"({case}) {CASES[case]}" + (f" [{res['batch']} img]" if case == "d" else "")
        lines.append(
            f"{name:<36} {o:8.2f} {r:8.2f} {ratio:6.2f} {target:>8} {met:>4} {res['rss']['ours']:12.0f} {res['rss']['reference']:12.0f}"
            f" {_fmt_flops(fo):>10} {_fmt_flops(fr):>10} {100 * fo / o / peak:9.1f}% {100 * fr / r / peak:8.1f}%"
        )
    rss_ok = all(res["rss"]["ours"] <= res["rss"]["reference"] for case, res in results.items() if case in CASES)
    lines.append(f"peak RSS ours <= reference in every case: {'yes' if rss_ok else 'NO'}")
    lines.append("")
    lines.append("where the time goes (median s per timed run; 'other' = pre/post-processing, text encoder, hashing, Python):")
    lines.append(f"  {'case / side':<16}" + "".join(f"{n:>14}" for n in STAGES) + f"{'other':>10}{'total':>10}")
    for case, res in results.items():
        if case not in CASES:
            continue
        for side in ("ours", "reference"):
            runs = res["stages"][side]
            med = {n: _median([r.get(n, 0.0) for r in runs]) for n in STAGES}
            total = _median(res["times"][side])
            lines.append(f"  ({case}) {side:<12}" + "".join(f"{med[n]:14.2f}" for n in STAGES)
                         + f"{total - sum(med.values()):10.2f}{total:10.2f}")
    if "e" in results and "decoder" in results["e"]:
        lines.append("")
        lines.append("SAM decoder + mask upsampling from a set image (median s):  1 box / 4 boxes / 16 boxes, growth 16 vs 4 (linear = 4.00)")
        for side, d in results["e"]["decoder"].items():
            lines.append(f"  {side:<10} {d[1]:6.3f} / {d[4]:6.3f} / {d[16]:6.3f}   x{d[16] / d[4]:.2f}")
    if "precision" in results:
        p = results["precision"]
        t32, t16 = _median(p["times"]["fp32"]), _median(p["times"]["bf16"])
        lines.append("")
        lines.append(f"bf16 (ours, cold case a, no cache; GroundingDINO: fp32 weights + bf16 autocast, SAM: bf16 weights; "
                     f"bf16 matmul peak {p['peak_bf16'] / 1e9:.0f} GFLOP/s)")
        lines.append(f"  fp32 {t32:.2f} s, bf16 {t16:.2f} s, speed-up x{t32 / t16:.2f}; agreement with fp32: "
                     f"mean mask IoU {p['iou']:.4f} (fixed boxes), "
                     f"raw box L1 {p['l1']:.2f} px per coordinate (each of the 900 fp32 boxes to its nearest bf16 box)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="a,b,c,d,e", help="comma-separated subset of a,b,c,d,e (default: all)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, a batch of 2 in case d, no FLOP counting")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (median reported; d and e run once)")
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default="auto",
                        help="bf16: also compare our bf16 against fp32; auto: do so when the CPU has bf16 (AVX512-BF16/AMX)")
    parser.add_argument("--sam", choices=["meta", "hf"], default="meta", help="which of our SAM back ends to time")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-flops", action="store_true")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR), help="where the random-weight models are kept")
    parser.add_argument("--output", help="also write the table to this file")
    parser.add_argument("--worker", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, json.loads(args.paths), args.sam, args.threads)
        return 0
    if args.quick:
        args.repeats, args.no_flops = 1, True
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    import torch

    torch.set_num_threads(args.threads)
    paths = prepare_models(Path(args.workdir))
    if args.sam == "hf" and not Path(paths["sam_hf"], "config.json").is_file():
        parser.error("the transformers SAM folder could not be built; use --sam meta")
    bf16 = args.dtype == "bf16" or (args.dtype == "auto" and _cpu_has_bf16())
    print("starting workers ...", flush=True)
    ours, ref = Worker("ours", args, paths), Worker("reference", args, paths)
    started = time.perf_counter()
    try:
        peak = ours.ask(op="peak", dtype="fp32")["flops"]
        header = [
            f"grounded-inpaint benchmark: {os.cpu_count()} CPU(s), {args.threads} torch threads, fp32, torch {torch.__version__}",
            f"measured fp32 matmul peak {peak / 1e9:.0f} GFLOP/s; repeats {args.repeats} (median; d and e: 1 run)",
            f"load: ours {ours.load_s:.1f} s, reference {ref.load_s:.1f} s; load average at start {os.getloadavg()[0]:.1f}",
        ]
        print("\n".join(header), flush=True)
        results: dict[str, dict[str, Any]] = {}
        for i, case in enumerate(cases):
            reps = args.repeats if case in ("a", "b", "c") else 1
            t = time.perf_counter()
            try:
                results[case] = run_case(case, ours, ref, reps, args, seed_base=1000 * (i + 1))
            except Exception as exc:
                print(f"  case {case} failed: {type(exc).__name__}: {exc}", flush=True)
                continue
            res = results[case]
            print(f"  case {case}: ours {[round(x, 2) for x in res['times']['ours']]} s, reference "
                  f"{[round(x, 2) for x in res['times']['reference']]} s ({time.perf_counter() - t:.0f} s)", flush=True)
        if bf16:
            peak16 = ours.ask(op="peak", dtype="bf16")["flops"]
            results["precision"] = precision_case(ours, args, peak16)
    finally:
        ours.close()
        ref.close()
    text = report(results, peak, args, header)
    text += f"\n\ntotal {time.perf_counter() - started:.0f} s; load average at the end {os.getloadavg()[0]:.1f}"
    print("\n" + text)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    return 0


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


if __name__ == "__main__":
    sys.exit(main())
