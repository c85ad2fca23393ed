"""Whole catalogues (grounded_inpaint.catalogue, the batch command) on the embedded engine: inputs and
manifests, settings per row, completion records, resume after a SIGKILL, bad files, the run manifest.

The Ray engine has its own module (test_catalogue_ray.py), skipped without Ray.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tolerance import assert_masks_agree

from grounded_inpaint.catalogue import run_batch
from grounded_inpaint.catalogue.inputs import InputError, assign_names, collect_inputs, read_manifest
from grounded_inpaint.catalogue.ledger import (
    RECORD_FILE,
    LockedError,
    ResultFolder,
    RunLock,
    RunManifest,
    content_hash,
    is_complete,
    read_record,
    read_run_manifest,
    remove_leftovers,
)
from grounded_inpaint.catalogue.settings import SettingsError, SettingsSpec
from grounded_inpaint.cli import main
from grounded_inpaint.images import save_image

MASK_FILES = ["batch.json", "cutout.png", "detections.json", "mask.png", "overlay.png"]


def _models(models_dir) -> dict:
    root, paths = models_dir
    return {"models": str(root), "detector": paths["grounding_dino"].name, "segmenter": paths["sam_meta"].name,
            "no_download": True}


def _model_args(models_dir) -> list[str]:
    root, paths = models_dir
    return ["--models", str(root), "--detector", paths["grounding_dino"].name, "--segmenter", paths["sam_meta"].name,
            "--no-download"]


def _photos(folder: Path, n: int, *, size=(48, 64), seed: int = 0, sub_every: int = 0) -> list[Path]:
    g = torch.Generator().manual_seed(seed)
    paths = []
    for i in range(n):
        where = folder / "sub" if sub_every and i % sub_every == 0 else folder
        paths.append(save_image(torch.rand(*size, 3, generator=g), where / f"photo{i:03d}.png"))
    return paths


def _records(out: Path) -> list[Path]:
    """The completion records of finished result folders (not those inside hidden temporary folders)."""
    return [p for p in out.rglob(RECORD_FILE) if not any(part.startswith(".") for part in p.relative_to(out).parts)]


def _leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if p.is_dir()]


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def test_folder_walk_names_subfolders_and_skips_hidden_non_images_and_the_output(tmp_path):
    photos = tmp_path / "photos"
    _photos(photos, 4, sub_every=2)
    (photos / ".hidden").mkdir()
    save_image(torch.rand(8, 8, 3), photos / ".hidden" / "x.png")
    save_image(torch.rand(8, 8, 3), photos / ".dot.png")
    (photos / "notes.txt").write_text("not an image")
    save_image(torch.rand(8, 8, 3), photos / "out" / "old" / "mask.png")  # results of an earlier run inside the input
    items = collect_inputs([photos], exclude=[photos / "out"])
    assert [i.name for i in items] == ["photo001", "photo003", "sub/photo000", "sub/photo002"]
    assert [i.index for i in items] == [0, 1, 2, 3]
    assert all(Path(i.path).is_absolute() and Path(i.path).is_file() for i in items)


def test_glob_pattern_names_relative_to_its_fixed_part(tmp_path):
    _photos(tmp_path / "cat" / "a", 2)
    _photos(tmp_path / "cat" / "b", 1)
    items = collect_inputs([str(tmp_path / "cat" / "**" / "*.png")])
    assert [i.name for i in items] == ["a/photo000", "a/photo001", "b/photo000"]


def test_names_are_unique_and_never_nest():
    wanted = [("red", ".jpg"), ("red", ".png"), ("Blue", ".png"), ("blue", ".png"), ("shoes", ".jpg"), ("shoes/left", ".png"),
              ("x", ".png"), ("x", ".png"), ("x", ".png")]
    names = assign_names(wanted)
    assert names == ["red_jpg", "red_png", "Blue", "blue-2", "shoes_jpg", "shoes/left", "x", "x-2", "x-3"]
    assert len({n.lower() for n in names}) == len(names)


def test_text_csv_tsv_jsonl_and_parquet_manifests(tmp_path):
    photos = _photos(tmp_path / "imgs", 3)
    (tmp_path / "list.txt").write_text(f"# catalogue\nimgs/{photos[0].name}\n\n{photos[1]}\n")
    (tmp_path / "list.csv").write_text(
        "sku,path,Prompt,box-threshold,output\n"
        f"A1,imgs/{photos[0].name},shoes,0.2,\n"
        f"A2,imgs/{photos[1].name},,,products/second\n"
    )
    (tmp_path / "list.tsv").write_text(f"image\tinvert\n{photos[2]}\ttrue\n")
    (tmp_path / "list.jsonl").write_text(json.dumps({"file": str(photos[2]), "grow": 3}) + "\n")
    names = SettingsSpec().per_row

    text = read_manifest(tmp_path / "list.txt", names)
    assert [r[0] for r in text] == [str(photos[0]), str(photos[1])]
    csv_rows = read_manifest(tmp_path / "list.csv", names)
    assert csv_rows[0][:3] == (str(photos[0]), None, {"prompt": "shoes", "box_threshold": "0.2"})
    assert csv_rows[1][:3] == (str(photos[1]), "products/second", {})
    assert read_manifest(tmp_path / "list.tsv", names)[0][2] == {"invert": "true"}
    assert read_manifest(tmp_path / "list.jsonl", names)[0][2] == {"grow": 3}

    items = collect_inputs([tmp_path / "list.csv"], setting_names=names)
    assert [i.name for i in items] == ["photo000", "products/second"]
    assert items[0].source == "list.csv line 2"

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"path": [str(photos[0]), str(photos[1])], "prompt": ["cup", None], "top_k": [1, None]}),
                   tmp_path / "list.parquet")
    rows = read_manifest(tmp_path / "list.parquet", names)
    assert [r[2] for r in rows] == [{"prompt": "cup", "top_k": 1}, {}]


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing", "not found"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "holds no image files"),
    (lambda d: str(d / "*.webp"), "matches no files"),
    (lambda d: (d / "m.csv").write_text("sku,title\n1,x\n") and d / "m.csv", "no path column"),
    (lambda d: (d / "m.csv").write_text("path\nhttps://example.org/a.jpg\n") and d / "m.csv", "is a URL"),
    (lambda d: (d / "m.csv").write_text("path,output\na.png,../../etc\n") and d / "m.csv", "relative folder name"),
    (lambda d: (d / "m.csv").write_text("path\n\n") and d / "m.csv", "lists no images"),
    (lambda d: (d / "m.jsonl").write_text("[1, 2]\n") and d / "m.jsonl", "not an object"),
])
def test_bad_sources_are_one_clear_error(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        collect_inputs([make(tmp_path)])


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def test_settings_are_checked_like_the_options():
    spec = SettingsSpec()
    assert {"prompt", "box_threshold", "invert", "grow", "inpaint", "steps", "mode"} <= spec.names
    assert "detector" in spec.names and "detector" not in spec.per_row
    assert spec.parse("box_threshold", "0.25") == 0.25 and spec.parse("box_threshold", 0.25) == 0.25
    assert spec.parse("grow", 5.0) == 5 and spec.parse("invert", "yes") is True and spec.parse("fill_holes", 0) is False
    assert spec.parse("mode", "replace") == "replace" and spec.parse("max_detections", None) is None
    for name, value, message in [("box_threshold", "3", "box_threshold: must be a number in 0..1"),
                                 ("grow", "2.5", "grow: "), ("invert", "maybe", "must be true or false"),
                                 ("multimask", "all", "must be one of auto, best, single"), ("mode", "erase", "keep, replace"),
                                 ("colour", "red", "is not a setting")]:
        with pytest.raises(SettingsError, match=message):
            spec.parse(name, value)
    with pytest.raises(SettingsError, match="cannot differ between rows"):
        spec.apply_row(spec.defaults(), {"detector": "other"})
    digest_inputs = SettingsSpec.result_settings({**spec.defaults(), "models": "/x", "device": "cuda"})
    assert "models" not in digest_inputs and "device" not in digest_inputs and "steps" not in digest_inputs
    assert "steps" in SettingsSpec.result_settings({**spec.defaults(), "inpaint": "a podium"})


def test_ray_pool_plan_uses_each_cpu_once_and_one_gpu_per_actor():
    from grounded_inpaint.catalogue.engines import PoolPlan, plan_pool

    assert plan_pool({"CPU": 16}, actors=None, threads=None, device="auto") == PoolPlan(4, 4, 0.0, 4.0)
    assert plan_pool({"CPU": 2}, actors=2, threads=None, device="auto") == PoolPlan(2, 1, 0.0, 1.0)
    assert plan_pool({"CPU": 2}, actors=None, threads=None, device="auto") == PoolPlan(1, 2, 0.0, 2.0)
    assert plan_pool({"CPU": 16, "GPU": 4}, actors=None, threads=None, device="auto") == PoolPlan(4, 4, 1.0, 4.0)
    assert plan_pool({"CPU": 8, "GPU": 2}, actors=4, threads=None, device="cuda") == PoolPlan(4, 2, 0.5, 2.0)
    assert plan_pool({"CPU": 8, "GPU": 2}, actors=None, threads=None, device="cpu").gpus == 0.0
    assert plan_pool({"CPU": 16, "GPU": 4}, actors=None, threads=None, device="auto", tasks=1).actors == 1
    with pytest.raises(ValueError, match="no GPU"):
        plan_pool({"CPU": 8}, actors=None, threads=None, device="cuda")


def test_tasks_travel_to_ray_with_only_their_own_settings():
    from grounded_inpaint.catalogue.engines import compact_task, expand_task
    from grounded_inpaint.catalogue.work import Job, Task

    base = SettingsSpec().resolve({"prompt": "cup", "models": "/models"})
    base = {k: (str(v) if isinstance(v, Path) else v) for k, v in base.items()}
    job = Job(out="/out", run_settings=base, run_id="r")
    task = Task(7, "/photos/a.png", "a", {**base, "prompt": "shoes", "grow": 3}, "digest")
    text = compact_task(task, job)
    assert json.loads(text)["settings"] == {"prompt": "shoes", "grow": 3}
    assert expand_task(text, job) == task


# --------------------------------------------------------------------------------------------
# Records, result folders, run manifest, lock
# --------------------------------------------------------------------------------------------


def test_result_folder_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "out" / "shoes" / "red"
    with pytest.raises(RuntimeError):
        with ResultFolder(final) as folder:
            (folder.temp / "mask.png").write_bytes(b"half")
            raise RuntimeError("killed while writing")
    assert not final.exists() and _leftovers(tmp_path / "out") == []
    with ResultFolder(final) as folder:
        (folder.temp / "mask.png").write_bytes(b"old")
        folder.commit({"status": "done", "files": ["mask.png"]})
    with ResultFolder(final) as folder:  # an earlier result is replaced whole
        (folder.temp / "mask.png").write_bytes(b"new")
        folder.commit({"status": "done", "files": ["mask.png"], "settings_digest": "b"})
    assert (final / "mask.png").read_bytes() == b"new" and read_record(final)["settings_digest"] == "b"
    assert sorted(p.name for p in final.iterdir()) == [RECORD_FILE, "mask.png"]
    assert _leftovers(tmp_path / "out") == []
    (final.parent / ".red.tmp-0123abcd").mkdir()
    (final.parent / ".red.old-89abcdef").mkdir()
    (final.parent / ".keep-me").mkdir()  # not ours
    assert remove_leftovers(tmp_path / "out", ["shoes/red"]) == 2
    assert [p.name for p in _leftovers(tmp_path / "out")] == [".keep-me"]


def test_completion_needs_same_settings_files_and_content(tmp_path):
    image = _photos(tmp_path, 1)[0]
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "mask.png").write_bytes(b"x")
    stat = image.stat()
    record = {"status": "done", "files": ["mask.png"], "settings_digest": "d1", "input_sha256": content_hash(image),
              "input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns}
    assert is_complete(record, folder, image, "d1")
    assert not is_complete(record, folder, image, "d2")  # other settings
    assert not is_complete({**record, "status": "failed"}, folder, image, "d1")
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes: the hash decides
    assert is_complete(record, folder, image, "d1")
    save_image(torch.zeros(48, 64, 3), image)  # new content
    assert not is_complete(record, folder, image, "d1")
    (folder / "mask.png").unlink()
    assert not is_complete({**record, "input_sha256": content_hash(image)}, folder, image, "d1")  # a file is missing


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_run_manifest_is_in_input_order_with_every_column(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    manifest = RunManifest(tmp_path / f"run{suffix}").open()
    for index in (2, 0, 1):
        manifest.add({"index": index, "input": f"{index}.png", "status": "done", "files": [f"o/{index}/mask.png"],
                      "settings": {"prompt": "cup", "grow": index}, "instances": index, "skipped": False, "seconds": 0.5})
    assert len(manifest.partial.read_text().splitlines()) == 3  # the partial file shows progress as it goes
    path = manifest.finish()
    assert not manifest.partial.exists()
    rows = read_run_manifest(path)
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert rows[1]["settings"] == {"prompt": "cup", "grow": 1} and rows[2]["files"] == ["o/2/mask.png"]
    assert set(rows[0]) >= {"status", "reason", "instances", "selected", "seconds", "input_sha256", "settings_digest", "worker"}


def test_a_second_run_on_the_same_output_folder_is_refused(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(LockedError, match="another batch run"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released
        pass


# --------------------------------------------------------------------------------------------
# run_batch, embedded
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """Six photos in two folders, and bad files of every kind beside them."""
    root = tmp_path_factory.mktemp("catalogue")
    good = _photos(root, 6, sub_every=3)
    bad = {
        "not_an_image.jpg": b"%PDF-1.4 this is a PDF",
        "empty.png": b"",
    }
    for name, data in bad.items():
        (root / name).write_bytes(data)
    whole = (root / "photo001.png").read_bytes()
    (root / "truncated.png").write_bytes(whole[: len(whole) // 2])
    save_image(torch.rand(200, 200, 3), root / "large.png")
    return root, good


def test_a_folder_with_bad_files_gives_failed_rows_and_the_rest_runs(catalogue, models_dir, tmp_path):
    root, good = catalogue
    seen = []
    summary = run_batch([root], tmp_path / "out", {"prompt": "cup", **_models(models_dir)}, max_pixels=100 * 100,
                        progress=False, on_row=seen.append)
    by_name = {Path(r["input"]).name: r for r in summary.rows}
    assert summary.total == 10 == len(summary.rows) == len(seen)
    assert summary.failed == 4 and summary.done + summary.nothing_found == 6 and summary.exit_code == 3
    assert "Pillow does not recognise" in by_name["not_an_image.jpg"]["reason"]
    assert "empty (0 bytes)" in by_name["empty.png"]["reason"]
    assert "truncated" in by_name["truncated.png"]["reason"]
    assert "200x200 pixels" in by_name["large.png"]["reason"] and "--max-pixels" in by_name["large.png"]["reason"]
    for path in good:
        row = by_name[path.name]
        assert row["status"] in ("done", "nothing_found") and row["reason"] is None or row["status"] == "nothing_found"
        folder = Path(row["output"])
        assert sorted(p.name for p in folder.iterdir()) == MASK_FILES
        assert [Path(f).name for f in row["files"]] == ["mask.png", "overlay.png", "cutout.png", "detections.json"]
        assert row["input_sha256"] == content_hash(path) and row["skipped"] is False
    assert not (tmp_path / "out" / "empty").exists()  # a failed image leaves no folder
    assert _leftovers(tmp_path / "out") == []
    manifest = read_run_manifest(summary.manifest)
    assert [r["input"] for r in manifest] == [r["input"] for r in summary.rows]


def test_outputs_are_those_of_the_mask_command(catalogue, models_dir, tmp_path):
    root, good = catalogue
    options = ["--box-threshold", "0.2", "--invert", "--grow", "2", "--top-k", "2"]
    assert main(["-q", "mask", str(good[1]), "--prompt", "cup", "--out", str(tmp_path / "mask"), *_model_args(models_dir), *options]) == 0
    assert main(["-q", "batch", str(good[1]), "--prompt", "cup", "--out", str(tmp_path / "batch"), *_model_args(models_dir), *options]) == 0
    single, batch = tmp_path / "mask" / good[1].stem, tmp_path / "batch" / good[1].stem
    for name in ("mask.png", "cutout.png"):
        a, b = np.asarray(Image.open(single / name)), np.asarray(Image.open(batch / name))
        assert a.shape == b.shape
        assert_masks_agree(torch.from_numpy(a > 127), torch.from_numpy(b > 127))
    one, two = json.loads((single / "detections.json").read_text()), json.loads((batch / "detections.json").read_text())
    assert [i["label"] for i in one["instances"]] == [i["label"] for i in two["instances"]]
    assert one["selected"] == two["selected"] and one["settings"]["grow"] == two["settings"]["grow"] == 2
    assert two["settings"]["invert"] is True and two["settings"]["top_k"] == 2


def test_rerun_skips_complete_images_and_redoes_changed_ones(models_dir, tmp_path):
    photos = _photos(tmp_path / "p", 4)
    settings = {"prompt": "cup", **_models(models_dir)}
    first = run_batch([tmp_path / "p"], tmp_path / "out", settings, progress=False)
    assert first.processed == 4 and first.skipped == 0 and first.exit_code == 0
    records = {p.stem: read_record(tmp_path / "out" / p.stem) for p in photos}

    dry = run_batch([tmp_path / "p"], tmp_path / "out", settings, dry_run=True)
    assert dry.skipped == 4 and dry.to_do == [] and "4 already complete" in dry.line()

    save_image(torch.zeros(48, 64, 3), photos[1])  # new content
    os.utime(photos[2], ns=(0, photos[2].stat().st_mtime_ns + 10**9))  # touched only: same bytes
    second = run_batch([tmp_path / "p"], tmp_path / "out", settings, progress=False)
    assert second.skipped == 3 and second.processed == 1
    assert [r["skipped"] for r in second.rows] == [True, False, True, True]
    assert read_record(tmp_path / "out" / photos[0].stem)["run_id"] == records[photos[0].stem]["run_id"]
    assert read_record(tmp_path / "out" / photos[1].stem)["input_sha256"] == content_hash(photos[1])

    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    dry = run_batch([tmp_path / "p"], tmp_path / "out", {**settings, "grow": 4}, dry_run=True)
    assert len(dry.to_do) == 4 and sorted(p.name for p in (tmp_path / "out").iterdir()) == before  # nothing written
    third = run_batch([tmp_path / "p"], tmp_path / "out", {**settings, "grow": 4}, progress=False)
    assert third.processed == 4 and all(json.loads((tmp_path / "out" / p.stem / "detections.json").read_text())
                                        ["settings"]["grow"] == 4 for p in photos)


def test_manifest_rows_set_prompt_and_settings_per_image(models_dir, tmp_path):
    photos = _photos(tmp_path / "p", 3)
    (tmp_path / "m.csv").write_text(
        "path,prompt,invert,box_threshold,title\n"
        f"p/{photos[0].name},shoes,true,,Red shoes\n"
        f"p/{photos[1].name},,,0.0,Cup\n"
        f"p/{photos[2].name},bag,,7,Bag\n"  # a bad value: this row fails, the others run
    )
    summary = run_batch([tmp_path / "m.csv"], tmp_path / "out", {"prompt": "cup", **_models(models_dir)}, progress=False)
    rows = summary.rows
    assert [r["status"] for r in rows[:2]] != ["failed", "failed"] and rows[2]["status"] == "failed"
    assert "m.csv line 4" in rows[2]["reason"] and "box_threshold: must be a number in 0..1" in rows[2]["reason"]
    first = json.loads((tmp_path / "out" / photos[0].stem / "detections.json").read_text())
    second = json.loads((tmp_path / "out" / photos[1].stem / "detections.json").read_text())
    assert first["prompt"] == "shoes" and first["settings"]["invert"] is True
    assert second["prompt"] == "cup" and second["settings"]["box_threshold"] == 0.0 and second["settings"]["invert"] is False
    assert rows[0]["settings"]["prompt"] == "shoes" and rows[0]["settings_digest"] != rows[1]["settings_digest"]
    mask = np.asarray(Image.open(tmp_path / "out" / photos[0].stem / "mask.png"))
    cut = np.asarray(Image.open(tmp_path / "out" / photos[0].stem / "cutout.png"))
    assert ((mask > 127) == (cut[..., 3] <= 127)).mean() > 0.99  # inverted: white where nothing is cut out


def test_cli_exit_codes_summary_and_parquet_manifest(catalogue, models_dir, tmp_path, capsys):
    root, good = catalogue
    out = tmp_path / "out"
    args = ["batch", str(good[0]), str(good[1]), "--prompt", "cup", "--out", str(out), *_model_args(models_dir)]
    assert main(args) == 0
    line = capsys.readouterr().out
    assert "batch: 2 image(s)" in line and "0 failed" in line and "manifest" in line
    assert main(["-q", *args]) == 0 and capsys.readouterr().out == ""
    assert main([*args, "--dry-run"]) == 0 and "2 already complete (skipped), 0 to do" in capsys.readouterr().out
    assert main([*args[:3], str(root / "empty.png"), *args[3:]]) == 3
    assert "1 failed" in capsys.readouterr().out
    pytest.importorskip("pyarrow")
    assert main([*args, "--run-manifest", str(tmp_path / "run.parquet")]) == 0
    capsys.readouterr()
    rows = read_run_manifest(tmp_path / "run.parquet")
    assert [r["skipped"] for r in rows] == [True, True] and rows[0]["settings"]["prompt"] == "cup"


@pytest.mark.parametrize("argv, message", [
    (["--box-threshold", "3"], "argument --box-threshold: must be"),
    (["--actors", "0"], "argument --actors: must be"),
    (["--engine", "spark"], "invalid choice"),
])
def test_cli_bad_options_exit_2(catalogue, tmp_path, capsys, argv, message):
    root, _ = catalogue
    with pytest.raises(SystemExit) as stop:
        main(["batch", str(root), "--prompt", "cup", "--out", str(tmp_path / "o"), *argv])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_unusable_input_or_missing_prompt_is_one_line(catalogue, models_dir, tmp_path, capsys):
    root, _ = catalogue
    assert main(["batch", str(tmp_path / "nowhere"), "--prompt", "cup", "--out", str(tmp_path / "o")]) == 2
    assert "input" in capsys.readouterr().err
    assert main(["batch", str(root), "--out", str(tmp_path / "o"), *_model_args(models_dir)]) == 2
    assert "no prompt" in capsys.readouterr().err
    assert main(["batch", str(root), "--prompt", "cup", "--out", str(tmp_path / "o"), "--models", str(tmp_path / "none"),
                 "--no-download"]) == 1
    err = capsys.readouterr().err
    assert "2 models are missing" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_ray_engine_without_ray_says_the_pip_command(catalogue, models_dir, tmp_path, monkeypatch, capsys):
    root, good = catalogue
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    assert main(["batch", str(good[0]), "--prompt", "cup", "--out", str(tmp_path / "o"), "--engine", "ray",
                 *_model_args(models_dir)]) == 1
    assert 'pip install "grounded-inpaint[ray]"' in capsys.readouterr().err


def test_inpaint_job_per_image(models_dir, tmp_path):
    pytest.importorskip("diffusers")
    from grounded_inpaint.testing.tiny_diffusers import write_tiny_inpaint_pipeline

    sd = write_tiny_inpaint_pipeline(tmp_path / "tiny-sd")
    photos = _photos(tmp_path / "p", 2)
    (tmp_path / "m.csv").write_text(f"path,box_threshold\np/{photos[0].name},0.0\np/{photos[1].name},1.0\n")
    settings = {"prompt": "cup", **_models(models_dir), "inpaint": "on a marble podium", "inpaint_model": str(sd),
                "steps": 2, "size": 64, "no_safety_checker": True}
    summary = run_batch([tmp_path / "m.csv"], tmp_path / "out", settings, progress=False)
    found, nothing = summary.rows
    assert found["status"] == "done" and nothing["status"] == "nothing_found", summary.rows
    assert sorted(p.name for p in Path(found["output"]).iterdir()) == ["batch.json", "detections.json", "mask.png",
                                                                        "overlay.png", "result.png"]
    assert sorted(p.name for p in Path(nothing["output"]).iterdir()) == ["batch.json", "detections.json", "overlay.png"]
    assert "nothing matching 'cup'" in nothing["reason"]
    record = json.loads((Path(found["output"]) / "detections.json").read_text())
    assert record["inpaint"]["prompt"] == "on a marble podium" and record["inpaint"]["steps"] == 2
    assert record["inpaint"]["seed"] == int(found["input_sha256"][:8], 16)  # from the content: a rerun repeats it
    result = np.asarray(Image.open(Path(found["output"]) / "result.png"))
    assert result.shape == (48, 64, 3)
    again = run_batch([tmp_path / "m.csv"], tmp_path / "out", settings, progress=False)
    assert again.skipped == 2 and again.processed == 0


def test_an_image_whose_workers_keep_dying_fails_instead_of_looping(models_dir, tmp_path):
    from grounded_inpaint.catalogue.ledger import Attempts

    photos = _photos(tmp_path / "p", 2)
    settings = {"prompt": "cup", **_models(models_dir)}
    poison = run_batch([tmp_path / "p"], tmp_path / "out", settings, dry_run=True).to_do[0]
    attempts = Attempts(tmp_path / "out")
    assert [attempts.begin(poison.name, poison.digest, poison.path) for _ in range(2)] == [0, 1]  # two workers died on it
    first = run_batch([tmp_path / "p"], tmp_path / "out", settings, progress=False)
    assert first.rows[0]["status"] == "failed" and "workers died 2 times" in first.rows[0]["reason"]
    assert first.rows[1]["status"] != "failed"
    again = run_batch([tmp_path / "p"], tmp_path / "out", settings, progress=False)
    assert again.rows[0]["status"] == "failed" and again.rows[1]["skipped"]  # not tried again ...
    stat = photos[0].stat()
    os.utime(photos[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    fixed = run_batch([tmp_path / "p"], tmp_path / "out", settings, progress=False)
    assert fixed.rows[0]["status"] != "failed"  # ... until the file changes
    assert len(list((tmp_path / "out" / ".batch-attempts").iterdir())) == 1  # only the mark of the old file is left


# --------------------------------------------------------------------------------------------
# Killed halfway: resumes, every image once
# --------------------------------------------------------------------------------------------


def _batch_process(photos: Path, out: Path, models_dir) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "grounded_inpaint", "-q", "batch", str(photos), "--prompt", "cup",
                             "--out", str(out), "--threads", "1", *_model_args(models_dir)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_halfway_then_rerun_finishes_every_image_once(models_dir, tmp_path):
    photos = _photos(tmp_path / "photos", 30, size=(240, 320), sub_every=4)
    out = tmp_path / "out"
    proc = _batch_process(tmp_path / "photos", out, models_dir)
    deadline = time.monotonic() + 240
    try:
        while len(_records(out)) < 5:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no results appeared"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    finished_before = {p.parent.relative_to(out).as_posix(): read_record(p.parent) for p in _records(out)}
    assert 5 <= len(finished_before) < len(photos)  # killed halfway
    assert (out / "batch-run.jsonl.partial").exists() and not (out / "batch-run.jsonl").exists()

    rerun = _batch_process(tmp_path / "photos", out, models_dir)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    rows = read_run_manifest(out / "batch-run.jsonl")
    assert sorted(r["input"] for r in rows) == sorted(str(p.absolute()) for p in photos)  # every image, once
    assert all(r["status"] in ("done", "nothing_found") for r in rows)
    skipped = {Path(r["output"]).relative_to(out).as_posix() for r in rows if r["skipped"]}
    assert skipped == set(finished_before)  # what was finished before the kill was not redone ...
    for name, record in finished_before.items():
        assert read_record(out / name) == record  # ... and is untouched
    assert len({r["run_id"] for r in rows if not r["skipped"]}) == 1
    for row in rows:
        assert sorted(p.name for p in Path(row["output"]).iterdir()) == MASK_FILES
        Image.open(Path(row["output"]) / "mask.png").load()  # complete files
    assert _leftovers(out) == [] and not (out / "batch-run.jsonl.partial").exists()


def test_refined_edges_are_those_of_the_mask_command_and_a_setting(catalogue, models_dir, tmp_path):
    """``--refine`` reaches batch through mask's own options: the same soft alpha and RGBA cut-out as
    ``mask --refine``, and a different refinement is a different result (not skipped as complete)."""
    root, good = catalogue
    options = ["--box-threshold", "0.2", "--top-k", "1", "--refine", "guided"]
    assert main(["-q", "mask", str(good[0]), "--prompt", "cup", "--out", str(tmp_path / "mask"), *_model_args(models_dir), *options]) == 0
    assert main(["-q", "batch", str(good[0]), "--prompt", "cup", "--out", str(tmp_path / "batch"), *_model_args(models_dir), *options]) == 0
    single, batch = tmp_path / "mask" / good[0].stem, tmp_path / "batch" / good[0].stem
    a, b = (np.asarray(Image.open(folder / "alpha.png")).astype(np.float64) / 65535 for folder in (single, batch))
    assert a.shape == b.shape and np.abs(a - b).max() <= 1e-3  # float32 maths saved as 16 bits
    assert np.asarray(Image.open(batch / "cutout.png")).shape[-1] == 4
    record = read_record(batch)
    assert "alpha.png" in record["files"] and record["settings"]["refine"] == "guided"

    again = run_batch([good[0]], tmp_path / "batch", {"prompt": "cup", "box_threshold": 0.2, "top_k": 1, "refine": "closed_form",
                                                      **_models(models_dir)}, progress=False)
    assert again.processed == 1 and again.skipped == 0
    assert read_record(batch)["settings"]["refine"] == "closed_form"
    with pytest.raises(SystemExit) as exited:  # one matte per command-line image means nothing in a catalogue
        main(["-q", "batch", str(good[0]), "--prompt", "cup", "--matte", "x.png", "--out", str(tmp_path / "b2"), *_model_args(models_dir)])
    assert exited.value.code == 2
